//! Reading the tracer's output, and watching processes end.

use std::time::{Duration, Instant};

use pmap_tests::trace_harness::Tracer;

/// Waits until a line of the tracer's stdout from index `from` satisfies
/// `pred`; returns its index and text.
pub(crate) fn wait_stdout(
    t: &Tracer,
    from: usize,
    timeout: Duration,
    pred: impl Fn(&str) -> bool,
) -> (usize, String) {
    let deadline = Instant::now() + timeout;
    loop {
        let out = t.stdout();
        if let Some((i, l)) = out.iter().enumerate().skip(from).find(|(_, l)| pred(l)) {
            return (i, l.clone());
        }
        assert!(
            Instant::now() < deadline,
            "the expected line did not come within {timeout:?}\n{}",
            t.context()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether process `pid` is gone (or a zombie) within `timeout`.
pub(crate) fn gone_within(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if matches!(pmap_tests::proc_state(pid), None | Some('Z' | 'X')) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The pid in `pmap trace: tracing pid N (...)`.
pub(crate) fn traced_pid(line: &str) -> u32 {
    line.strip_prefix("pmap trace: tracing pid ")
        .and_then(|r| r.split([' ', ',']).next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"))
}

/// `pid` is still running (not a zombie).
pub(crate) fn alive(pid: u32) -> bool {
    !gone_within(pid, Duration::ZERO)
}

/// `madvise 90, brk 11 (2 failed)` -> [("madvise", 90), ("brk", 11)].
pub(crate) fn counts(list: &str, sep: &str) -> Vec<(String, u64)> {
    list.split(sep)
        .filter_map(|c| {
            let mut w = c.split_whitespace();
            let name = w.next()?.to_string();
            let n = w.next()?.trim_end_matches(',').parse().ok()?;
            Some((name, n))
        })
        .collect()
}
