//! Table formats: with `-x`, `-d`, `-q`, `-p`, `-A LOW,HIGH` (and
//! combinations) the table `pmap trace` prints equals `/usr/bin/pmap` with
//! the same flags, byte for byte, on a stopped workload after a few hundred
//! random operations. (`-X` is left out: its Pss column depends on other
//! processes that share the pages, which may change between the two reads.)
//!
//! Root and a real kernel are needed.

use std::time::Duration;

use pmap_tests::trace_harness::{
    Event, Tracer, Workload, assert_table_matches, delta_blocks, reference_pmap, serial,
};

/// A range `-A LOW,HIGH` that cuts through the middle of the map.
fn middle_range(pid: u32) -> String {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps");
    let starts: Vec<u64> = maps
        .lines()
        .filter_map(|l| l.split('-').next())
        .map(|a| u64::from_str_radix(a, 16).expect("hex address"))
        .collect();
    let n = starts.len();
    // New mappings go just below the libraries: start 64 MiB under the
    // region a third of the way in, so the workload maps inside the range.
    format!("{:x},{:x}", starts[n / 3] - (64 << 20), starts[2 * n / 3])
}

/// procps-ng's `pmap -x -A RANGE PID`, with the RSS and Dirty totals made
/// the sums of the rows shown: procps-ng also adds the regions outside the
/// range, a documented correction (README, "Compatibility with procps-ng").
/// Every other byte is procps-ng's.
fn x_range_reference(pid: u32, flags: &[&str]) -> Vec<String> {
    let mut lines = reference_pmap(pid, flags);
    let is_row = |l: &str| {
        l.len() > 17 && l.as_bytes()[16] == b' ' && l[..16].bytes().all(|c| c.is_ascii_hexdigit())
    };
    let sum = |k: usize| -> u64 {
        lines
            .iter()
            .filter(|l| is_row(l))
            .map(|l| {
                l.split_whitespace()
                    .nth(k)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("no number in column {k} of {l:?}"))
            })
            .sum()
    };
    let (rss, dirty) = (sum(2), sum(3));
    let total = lines.last_mut().expect("a totals line");
    assert!(total.starts_with("total kB"), "{total:?}");
    // Each total is right-aligned to where procps-ng's ends (fixed widths).
    let ends: Vec<usize> = total
        .match_indices(|c: char| c != ' ')
        .filter(|(i, _)| total[i + 1..].starts_with(' ') || i + 1 == total.len())
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(ends.len(), 5, "total kB K RSS Dirty: {total:?}");
    let rest = total[ends[4]..].to_string();
    *total = format!(
        "{}{:>w3$}{:>w4$}{rest}",
        &total[..ends[2]],
        rss,
        dirty,
        w3 = ends[3] - ends[2],
        w4 = ends[4] - ends[3]
    );
    lines
}

#[test]
fn format_flags_match_pmap() {
    let _serial = serial();
    let mut wl = Workload::spawn_bin(
        "trace_workload",
        &["--seed", "51", "--ops", "400", "--checkpoint-every", "400"],
    );
    let pid = wl.pid();
    wl.release();
    // First stop: set up; second: after the 400 operations.
    for _ in 0..2 {
        assert_eq!(wl.wait_event(Duration::from_secs(60)), Event::Stopped);
        wl.cont();
    }
    assert_eq!(wl.wait_event(Duration::from_secs(60)), Event::Stopped);

    let range = middle_range(pid);
    let flag_sets: Vec<Vec<&str>> = vec![
        vec!["-x"],
        vec!["-d"],
        vec!["-q"],
        vec!["-p"],
        vec!["-x", "-p"],
        vec!["-d", "-q"],
        vec!["-A", &range],
        vec!["-x", "-A", &range],
    ];
    let pid_s = pid.to_string();
    for flags in &flag_sets {
        let mut args = flags.clone();
        args.push(&pid_s);
        let mut t = Tracer::spawn(&args);
        t.wait_tracing(Duration::from_secs(60));
        // The target is stopped: the initial table and a SIGUSR1 table
        // must both equal pmap with the same flags.
        let reference = if flags.contains(&"-x") && flags.contains(&"-A") {
            x_range_reference(pid, flags)
        } else {
            reference_pmap(pid, flags)
        };
        let initial = t.next_table(pid, "initial", Duration::from_secs(5));
        assert_table_matches(
            &initial,
            &reference,
            &format!("initial table with {flags:?}"),
            &t,
        );
        let table = t.request_table(pid);
        assert_table_matches(
            &table,
            &reference,
            &format!("SIGUSR1 table with {flags:?}"),
            &t,
        );
        t.signal(libc::SIGINT);
        let status = t.wait_exit(Duration::from_secs(15));
        assert!(
            status.success(),
            "{flags:?}: exited with {status}\n{}",
            t.context()
        );
    }
    wl.cont();
}

/// `-A LOW,HIGH` filters the deltas too: no delta shows a region that lies
/// wholly outside the range, and the tables stay equal to `pmap -A`. The
/// tracer starts at the workload's first checkpoint after 200 operations,
/// with a range through the middle of the map as it is then (mostly the
/// workload's own mappings), so that the filter has work on both sides.
#[test]
fn range_filters_tables_and_deltas() {
    let _serial = serial();
    let mut wl = Workload::spawn_bin(
        "trace_workload",
        &["--seed", "52", "--ops", "800", "--checkpoint-every", "200"],
    );
    let pid = wl.pid();
    wl.release();
    // The stop after setup, then the one after 200 operations.
    assert_eq!(wl.wait_event(Duration::from_secs(60)), Event::Stopped);
    wl.cont();
    assert_eq!(wl.wait_event(Duration::from_secs(60)), Event::Stopped);
    let range = middle_range(pid);
    let (low, high) = range.split_once(',').expect("low,high");
    let hex = |s: &str| u64::from_str_radix(s, 16).expect("hex address");
    let (low, high) = (hex(low), hex(high));
    let mut t = Tracer::spawn(&["-A", &range, &pid.to_string()]);
    t.wait_tracing(Duration::from_secs(60));
    let flags = ["-A", range.as_str()];
    let initial = t.next_table(pid, "initial", Duration::from_secs(5));
    assert_table_matches(
        &initial,
        &reference_pmap(pid, &flags),
        "-A initial table",
        &t,
    );
    wl.cont();
    loop {
        match wl.wait_event(Duration::from_secs(60)) {
            Event::Stopped => {
                let table = t.request_table(pid);
                assert_table_matches(&table, &reference_pmap(pid, &flags), "-A table", &t);
                wl.cont();
            }
            Event::Exited(0) => break,
            other => panic!("workload ended with {other:?}"),
        }
    }
    assert!(t.wait_exit(Duration::from_secs(30)).success());
    // A delta is about the range if one of its regions overlaps it (a move
    // out of the range shows its destination too); none may be wholly outside.
    let overlaps = |l: &str| -> Option<bool> {
        // "  + 00007f0000000000     16K rw-p name" (also '-', '~').
        let mut f = l.split_whitespace().skip(1);
        let start = u64::from_str_radix(f.next()?, 16).ok()?;
        let kb: u64 = f.next()?.strip_suffix('K')?.parse().ok()?;
        Some(start + kb * 1024 > low && start <= high)
    };
    let mut outside = Vec::new();
    let mut inside = 0;
    for (header, body) in delta_blocks(&t.stdout()) {
        let hits: Vec<bool> = body.iter().filter_map(|l| overlaps(l)).collect();
        if hits.is_empty() {
            continue;
        }
        if hits.contains(&true) {
            inside += 1;
        } else {
            outside.push(format!("{header}\n{}", body.join("\n")));
        }
    }
    // The range is chosen where the workload maps, so the filter has work.
    assert!(
        inside > 0,
        "no delta inside -A {range}: the test checked nothing\n{}",
        t.context()
    );
    assert!(
        outside.is_empty(),
        "{} deltas wholly outside -A {range}, e.g.:\n{}",
        outside.len(),
        outside[..outside.len().min(5)].join("\n")
    );
}

/// `--json`: every record carries the keys docs/trace.md lists for its type,
/// and every region the keys of a region.
#[test]
fn json_records_have_the_documented_keys() {
    let _serial = serial();
    let mut wl = Workload::spawn_bin(
        "trace_workload",
        &["--seed", "53", "--ops", "600", "--checkpoint-every", "300"],
    );
    let pid = wl.pid();
    let mut t = Tracer::spawn(&["--json", &pid.to_string()]);
    t.wait_tracing(Duration::from_secs(60));
    wl.release();
    loop {
        match wl.wait_event(Duration::from_secs(60)) {
            Event::Stopped => {
                t.request_json_table(pid);
                wl.cont();
            }
            Event::Exited(0) => break,
            other => panic!("workload ended with {other:?}"),
        }
    }
    assert!(t.wait_exit(Duration::from_secs(30)).success());

    const REGION: &[&str] = &[
        "start", "end", "size", "perms", "offset", "dev", "inode", "name",
    ];
    let keys_of = |kind: &str| -> &[&str] {
        match kind {
            "table" => &["reason", "regions"],
            "delta" => &[
                "tid",
                "ktime_ns",
                "cause",
                "superseded",
                "from_arguments",
                "removed",
                "added",
                "notes",
            ],
            "lost" => &["count", "total"],
            "summary" => &[
                "calls",
                "failed",
                "bytes_mapped",
                "bytes_unmapped",
                "peak_mapped",
                "regions",
                "peak_regions",
                "lost",
                "corrections",
            ],
            _ => &[],
        }
    };
    let mut seen = std::collections::BTreeSet::new();
    for line in t.stdout() {
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let kind = v["type"]
            .as_str()
            .unwrap_or_else(|| panic!("no type: {line}"))
            .to_string();
        assert!(v["t"].is_f64() || v["t"].is_u64(), "no t: {line}");
        if kind != "lost" {
            assert_eq!(v["pid"].as_u64(), Some(u64::from(pid)), "pid: {line}");
        }
        for k in keys_of(&kind) {
            assert!(v.get(*k).is_some(), "{kind} record without `{k}`: {line}");
        }
        if kind == "delta" && v["cause"] == "syscall" {
            for k in ["syscall", "args", "ret"] {
                assert!(v.get(k).is_some(), "syscall delta without `{k}`: {line}");
            }
        }
        for list in ["regions", "removed", "added"] {
            for r in v[list].as_array().into_iter().flatten() {
                for k in REGION {
                    assert!(r.get(*k).is_some(), "region without `{k}` in {kind}: {r}");
                }
            }
        }
        seen.insert(kind);
    }
    for kind in ["table", "delta", "exit", "summary"] {
        assert!(
            seen.contains(kind),
            "no `{kind}` record at all; saw {seen:?}"
        );
    }
}
