//! Driving `pmap trace` in the benchmarks: the tracer, readers for its
//! text and JSON output, a sampler of its peak RSS, and a process's CPU
//! and memory from /proc. The programs run beside it are in `workloads`.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{ChildStdout, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use super::{
    proc::{LineLog, Running, Usage},
    stats::Samples,
};

/// The stderr line `pmap trace` prints once its probes are attached.
pub const TRACING_PREFIX: &str = "pmap trace: tracing";

/// How the tracer's stdout is read.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Output {
    /// Text: count lines, tables, keep the summary block.
    Text,
    /// JSON Lines: per `delta`, the latency from `ktime_ns` to now.
    Json,
}

/// What was read from the tracer's stdout.
#[derive(Default, Debug)]
pub struct OutStats {
    pub lines: u64,
    pub bytes: u64,
    /// Table frames (`--- table ...`) or `table` records.
    pub tables: u64,
    /// Delta records (JSON only).
    pub deltas: u64,
    /// `lost` records (JSON only).
    pub lost_records: u64,
    /// Sum of the counts in `lost` records (JSON only).
    pub lost_in_records: u64,
    /// Seconds from syscall exit (`ktime_ns`) to the line being read.
    pub latency: Samples,
    /// The summary: text block lines, or the JSON `summary` line.
    pub summary: Vec<String>,
}

impl OutStats {
    /// Calls of `name` in the summary, if one was printed.
    pub fn summary_calls(&self, name: &str) -> Option<u64> {
        for l in &self.summary {
            if l.contains("\"type\"") {
                let calls = l.split("\"calls\"").nth(1)?;
                return json_u64(calls, name);
            }
            if let Some(rest) = l.strip_prefix("calls:") {
                for part in rest.split(',') {
                    let mut w = part.split_whitespace();
                    if w.next() == Some(name) {
                        return w.next().and_then(|n| n.parse().ok());
                    }
                }
                return Some(0);
            }
        }
        None
    }

    /// Events lost according to the summary.
    pub fn summary_lost(&self) -> Option<u64> {
        for l in &self.summary {
            if l.contains("\"type\"") {
                return json_u64(l, "lost");
            }
            if let Some(rest) = l.strip_prefix("events lost:") {
                return rest
                    .split(|c: char| !c.is_ascii_digit())
                    .find(|s| !s.is_empty())
                    .and_then(|s| s.parse().ok());
            }
        }
        None
    }

    /// Model corrections according to the summary.
    pub fn summary_corrections(&self) -> Option<u64> {
        for l in &self.summary {
            if l.contains("\"type\"") {
                return json_u64(l, "corrections");
            }
            if let Some((_, rest)) = l.split_once("model corrections:") {
                return rest.trim().parse().ok();
            }
        }
        None
    }
}

/// The number after `"key":` in a JSON text, loosely (no full parser: the
/// records are flat where these keys live).
pub fn json_u64(s: &str, key: &str) -> Option<u64> {
    let pat = format!("\"{key}\"");
    let at = s.find(&pat)? + pat.len();
    let rest = s[at..].trim_start().strip_prefix(':')?.trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The string value of `"key":` in a JSON text, loosely.
pub fn json_str<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\"");
    let at = s.find(&pat)? + pat.len();
    let rest = s[at..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    rest.split('"').next()
}

/// Samples VmHWM (the peak RSS of the process's own address space, so not
/// inflated by the harness that spawned it) until stopped or gone.
pub struct HwmSampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<f64>>,
}

impl HwmSampler {
    pub fn start(pid: u32) -> HwmSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut peak = f64::NAN;
            while !s2.load(Ordering::Relaxed) {
                match vm_kib(pid, "VmHWM:") {
                    Some(k) => peak = if peak.is_nan() { k } else { peak.max(k) },
                    None => break,
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        });
        HwmSampler {
            stop,
            handle: Some(handle),
        }
    }

    /// The highest VmHWM seen, KiB.
    pub fn finish(mut self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or(f64::NAN)
    }
}

/// A `Vm*:` line of /proc/PID/status in KiB.
pub fn vm_kib(pid: u32, key: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = s.lines().find(|l| l.starts_with(key))?;
    l[key.len()..].split_whitespace().next()?.parse().ok()
}

/// user+sys CPU seconds of a live process, from /proc/PID/stat.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

/// A running `pmap trace`.
pub struct Tracer {
    run: Running,
    stderr: LineLog,
    out: JoinHandle<OutStats>,
    hwm: HwmSampler,
    /// Spawn to the `tracing` line.
    pub startup: f64,
    /// CPU spent up to the `tracing` line.
    pub startup_cpu: f64,
    /// VmHWM (KiB) at the `tracing` line: after seeding and the initial table.
    pub startup_hwm_kib: f64,
}

/// What a finished tracer cost and said.
pub struct TracerResult {
    pub usage: Usage,
    pub stderr: Vec<String>,
    pub out: OutStats,
    /// Peak VmHWM seen, KiB.
    pub hwm_kib: f64,
    pub startup: f64,
    pub startup_cpu: f64,
    pub startup_hwm_kib: f64,
    /// Whether it had to be stopped with SIGINT.
    pub interrupted: bool,
}

impl TracerResult {
    /// Sum of the N in `pmap trace: lost N events` lines.
    pub fn lost_on_stderr(&self) -> u64 {
        self.stderr
            .iter()
            .filter_map(|l| l.strip_prefix("pmap trace: lost "))
            .filter_map(|r| r.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    pub fn stderr_count(&self, needle: &str) -> usize {
        self.stderr.iter().filter(|l| l.contains(needle)).count()
    }
}

impl Tracer {
    /// Starts `pmap trace ARGS PIDS` and waits until it says it is tracing.
    pub fn start(pmap: &Path, args: &[&str], pids: &[u32], mode: Output) -> Result<Tracer> {
        let mut cmd = Command::new(pmap);
        // Explicitly eBPF: never measure the polling fallback by accident.
        cmd.args(["trace", "--backend", "ebpf"]).args(args);
        if mode == Output::Json {
            cmd.arg("--json");
        }
        cmd.args(pids.iter().map(u32::to_string))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let t0 = Instant::now();
        let mut run = Running::spawn(&mut cmd, "pmap trace")?;
        let pid = run.pid();
        let hwm = HwmSampler::start(pid);
        let out = run.child.stdout.take().context("tracer stdout")?;
        let err = run.child.stderr.take().context("tracer stderr")?;
        let out = spawn_reader(out, mode);
        let mut stderr = LineLog::new(err);
        stderr
            .wait_for(
                Duration::from_secs(60),
                "pmap trace to start tracing",
                |l| l.starts_with(TRACING_PREFIX),
            )
            .with_context(|| format!("`pmap trace {}` did not start", args.join(" ")))?;
        let startup = t0.elapsed().as_secs_f64();
        let startup_cpu = cpu_secs(pid).unwrap_or(f64::NAN);
        let startup_hwm_kib = vm_kib(pid, "VmHWM:").unwrap_or(f64::NAN);
        Ok(Tracer {
            run,
            stderr,
            out,
            hwm,
            startup,
            startup_cpu,
            startup_hwm_kib,
        })
    }

    pub fn signal(&self, sig: libc::c_int) {
        self.run.signal(sig);
    }

    /// Waits up to `grace` for it to exit by itself (its target ended),
    /// then interrupts it as a user would with Ctrl-C.
    pub fn finish(mut self, grace: Duration) -> Result<TracerResult> {
        let mut interrupted = false;
        let usage = match self.run.wait_timeout(grace)? {
            Some(u) => u,
            None => {
                interrupted = true;
                self.run.stop(Duration::from_secs(20))?
            }
        };
        let hwm_kib = self.hwm.finish();
        let out = self
            .out
            .join()
            .map_err(|_| anyhow::anyhow!("the tracer output reader panicked"))?;
        Ok(TracerResult {
            usage,
            stderr: self.stderr.finish(),
            out,
            hwm_kib,
            startup: self.startup,
            startup_cpu: self.startup_cpu,
            startup_hwm_kib: self.startup_hwm_kib,
            interrupted,
        })
    }
}

fn spawn_reader(out: ChildStdout, mode: Output) -> JoinHandle<OutStats> {
    let mut st = OutStats::default();
    let mut in_summary = false;
    std::thread::spawn(move || {
        let mut br = BufReader::with_capacity(1 << 20, out);
        let mut line = Vec::with_capacity(4096);
        loop {
            line.clear();
            match br.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let now_ns = super::proc::monotonic_ns();
            st.lines += 1;
            st.bytes += line.len() as u64;
            match mode {
                Output::Text => {
                    if line.starts_with(b"--- table") {
                        st.tables += 1;
                    } else if line.starts_with(b"--- summary") {
                        in_summary = true;
                    } else if line.starts_with(b"--- end summary") {
                        in_summary = false;
                    } else if in_summary {
                        st.summary
                            .push(String::from_utf8_lossy(&line).trim_end().to_string());
                    }
                }
                Output::Json => {
                    let l = String::from_utf8_lossy(&line);
                    match json_str(&l, "type") {
                        Some("delta") => {
                            st.deltas += 1;
                            // Resync and observed deltas carry no syscall time.
                            if json_str(&l, "cause").is_none_or(|c| c == "syscall")
                                && let Some(k) = json_u64(&l, "ktime_ns").filter(|&k| k > 0)
                            {
                                st.latency.push(now_ns.saturating_sub(k) as f64 * 1e-9);
                            }
                        }
                        Some("table") => st.tables += 1,
                        Some("lost") => {
                            st.lost_records += 1;
                            st.lost_in_records += ["count", "lost", "events"]
                                .iter()
                                .find_map(|k| json_u64(&l, k))
                                .unwrap_or(0);
                        }
                        Some("summary") => st.summary.push(l.trim_end().to_string()),
                        _ => {}
                    }
                }
            }
        }
        st
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_fields() {
        let l = r#"{"type": "delta","pid":12,"ktime_ns":123456789,"args":[1,2],"added":[{"name":"x"}]}"#;
        assert_eq!(json_str(l, "type"), Some("delta"));
        assert_eq!(json_u64(l, "ktime_ns"), Some(123456789));
        assert_eq!(json_u64(l, "pid"), Some(12));
        assert_eq!(json_u64(l, "nothing"), None);
    }

    #[test]
    fn text_summary() {
        let st = OutStats {
            summary: vec![
                "calls: mmap 120 (3 failed), munmap 118, mprotect 40, brk 4".into(),
                "events lost: 7, model corrections: 0".into(),
            ],
            ..OutStats::default()
        };
        assert_eq!(st.summary_calls("mmap"), Some(120));
        assert_eq!(st.summary_calls("mprotect"), Some(40));
        assert_eq!(st.summary_calls("shmat"), Some(0));
        assert_eq!(st.summary_lost(), Some(7));
        assert_eq!(st.summary_corrections(), Some(0));
    }

    #[test]
    fn json_summary() {
        let st = OutStats {
            summary: vec![
                r#"{"type":"summary","pid":1,"t":1.5,"calls":{"mmap":10,"munmap":9},"lost":3,"corrections":0}"#.into(),
            ],
            ..OutStats::default()
        };
        assert_eq!(st.summary_calls("munmap"), Some(9));
        assert_eq!(st.summary_lost(), Some(3));
        assert_eq!(st.summary_corrections(), Some(0));
    }
}
