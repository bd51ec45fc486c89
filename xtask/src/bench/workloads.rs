//! The programs the tracer benchmarks run beside `pmap trace`: bench_loop
//! (the traced mapping loop), many_maps (a process with many regions) and
//! bpftrace (the reference of a minimal eBPF tracer).

use std::{
    io::{BufRead, BufReader, Write},
    process::{ChildStdin, ChildStdout, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};

use super::{
    Bins,
    proc::{LineLog, Running, Usage, find_program},
};

/// bench_loop started with `--wait`: ready, waiting for the go line.
pub struct Loop {
    run: Running,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// What one bench_loop run did.
#[derive(Clone, Copy, Debug)]
pub struct LoopResult {
    pub iters: u64,
    /// Wall time of the loop alone, seconds.
    pub elapsed: f64,
    /// Involuntary context switches (preemptions) of the loop process.
    pub nivcsw: u64,
    pub usage: Usage,
}

impl LoopResult {
    /// Map-changing syscalls made per second (three per iteration).
    pub fn syscall_rate(&self) -> f64 {
        3.0 * self.iters as f64 / self.elapsed
    }
}

impl Loop {
    pub fn start(bins: &Bins, args: &[String]) -> Result<Loop> {
        let mut cmd = Command::new(&bins.bench_loop);
        cmd.args(args)
            .arg("--wait")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut run = Running::spawn(&mut cmd, "bench_loop")?;
        let stdin = run.child.stdin.take().context("bench_loop stdin")?;
        let mut stdout = BufReader::new(run.child.stdout.take().context("bench_loop stdout")?);
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .context("reading bench_loop's ready line")?;
        if !line.starts_with("ready ") {
            bail!("bench_loop did not get ready (it said {line:?})");
        }
        Ok(Loop { run, stdin, stdout })
    }

    pub fn pid(&self) -> u32 {
        self.run.pid()
    }

    /// Starts the loop and waits for it to finish.
    pub fn go(mut self) -> Result<LoopResult> {
        self.stdin
            .write_all(b"go\n")
            .context("telling bench_loop to go")?;
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .context("reading bench_loop's result")?;
        let usage = self.run.wait()?;
        parse_loop_line(&line, usage)
    }
}

pub fn parse_loop_line(line: &str, usage: Usage) -> Result<LoopResult> {
    let w: Vec<&str> = line.split_whitespace().collect();
    let field = |k: &str| -> Option<u64> {
        w.iter()
            .position(|x| *x == k)
            .and_then(|i| w.get(i + 1))
            .and_then(|v| v.parse().ok())
    };
    match (field("iters"), field("elapsed_ns")) {
        (Some(iters), Some(ns)) => Ok(LoopResult {
            iters,
            elapsed: ns as f64 * 1e-9,
            nivcsw: field("nivcsw").unwrap_or(0),
            usage,
        }),
        _ => bail!(
            "bench_loop's result line is not `bench_loop iters N elapsed_ns T ...`: {line:?} ({})",
            usage.describe_status()
        ),
    }
}

/// Runs bench_loop without `--wait` (optionally under a wrapper such as
/// strace) and returns its own measurement of the loop.
pub fn run_loop_plain(bins: &Bins, wrapper: &[&str], args: &[String]) -> Result<LoopResult> {
    let mut cmd = if let Some((w, wargs)) = wrapper.split_first() {
        let mut c = Command::new(w);
        c.args(wargs).arg(&bins.bench_loop);
        c
    } else {
        Command::new(&bins.bench_loop)
    };
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut run = Running::spawn(&mut cmd, "bench_loop")?;
    let mut out = String::new();
    let mut so = run.child.stdout.take().context("bench_loop stdout")?;
    std::io::Read::read_to_string(&mut so, &mut out).context("reading bench_loop output")?;
    let mut err = String::new();
    if let Some(mut se) = run.child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut se, &mut err);
    }
    let usage = run.wait()?;
    let line = out
        .lines()
        .find(|l| l.starts_with("bench_loop "))
        .unwrap_or("");
    parse_loop_line(line, usage).with_context(|| format!("stderr: {}", err.trim()))
}

/// bpftrace counting the six tracepoints of bench_loop's syscalls
/// (enter/exit of mmap, mprotect, munmap) for one PID: the reference
/// for what a minimal eBPF tracer costs.
pub struct Bpftrace {
    run: Running,
    out: LineLog,
    err: LineLog,
}

pub const BPFTRACE: &str = "bpftrace";

impl Bpftrace {
    pub fn start(pid: u32) -> Result<Bpftrace> {
        let probes = ["mmap", "mprotect", "munmap"]
            .iter()
            .flat_map(|s| {
                [
                    format!("tracepoint:syscalls:sys_enter_{s}"),
                    format!("tracepoint:syscalls:sys_exit_{s}"),
                ]
            })
            .collect::<Vec<_>>()
            .join(",");
        let script = format!(
            "BEGIN {{ printf(\"attached\\n\"); }} {probes} /pid == {pid}/ {{ @[probe] = count(); }}"
        );
        let mut cmd = Command::new(BPFTRACE);
        cmd.args(["-e", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut run = Running::spawn(&mut cmd, "bpftrace")?;
        let mut out = LineLog::new(run.child.stdout.take().context("bpftrace stdout")?);
        let err = LineLog::new(run.child.stderr.take().context("bpftrace stderr")?);
        out.wait_for(Duration::from_secs(60), "bpftrace to attach", |l| {
            l.trim() == "attached"
        })?;
        Ok(Bpftrace { run, out, err })
    }

    /// Stops it and returns the total count over the six probes and its usage.
    pub fn finish(mut self) -> Result<(u64, Usage)> {
        let usage = self.run.stop(Duration::from_secs(20))?;
        let lines = self.out.finish();
        let _ = self.err.finish();
        if std::env::var_os("BENCH_DEBUG").is_some() {
            eprintln!("bpftrace said: {lines:?}");
        }
        let total = lines
            .iter()
            .filter(|l| l.starts_with("@["))
            .filter_map(|l| l.rsplit(':').next()?.trim().parse::<u64>().ok())
            .sum();
        Ok((total, usage))
    }
}

/// Whether `prog` is on PATH.
pub fn on_path(prog: &str) -> bool {
    find_program(prog.as_ref()).is_some()
}

/// How many_maps lays out its regions (see its usage).
#[derive(Clone, Copy, Debug)]
pub enum Layout {
    /// Anonymous pages of alternating protections.
    Anonymous,
    /// Pages of a file at non-contiguous offsets: every line has a path.
    File,
    /// Anonymous, and after `go` one page's protection toggled this many
    /// times a second.
    Churn(f64),
}

/// many_maps with N regions; churning, it waits for go first.
pub struct ManyMaps {
    pub run: Running,
    stdin: Option<ChildStdin>,
    pub regions: usize,
}

impl ManyMaps {
    /// Starts many_maps and waits for its `ready N` line.
    pub fn start(bins: &Bins, n: usize, layout: Layout) -> Result<ManyMaps> {
        let mut cmd = Command::new(&bins.many_maps);
        cmd.arg(n.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        match layout {
            Layout::Anonymous => {}
            Layout::File => {
                cmd.arg("--file");
            }
            Layout::Churn(rate) => {
                cmd.args(["--churn", &rate.to_string()]);
            }
        }
        let mut run = Running::spawn(&mut cmd, "many_maps")?;
        let stdin = run.child.stdin.take();
        let mut line = String::new();
        BufReader::new(run.child.stdout.take().context("many_maps stdout")?)
            .read_line(&mut line)
            .context("reading many_maps's ready line")?;
        let regions = line
            .strip_prefix("ready ")
            .and_then(|s| s.trim().parse().ok())
            .with_context(|| format!("many_maps {n} did not get ready (it said {line:?})"))?;
        Ok(ManyMaps {
            run,
            stdin,
            regions,
        })
    }

    pub fn pid(&self) -> u32 {
        self.run.pid()
    }

    /// Starts the churn (many_maps --churn waits for a line).
    pub fn go(&mut self) -> Result<()> {
        if let Some(s) = self.stdin.as_mut() {
            s.write_all(b"go\n").context("telling many_maps to churn")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_line() {
        let u = Usage {
            wall: 0.0,
            user: 0.0,
            sys: 0.0,
            nvcsw: 0,
            status: 0,
        };
        let r = parse_loop_line(
            "bench_loop iters 1000 elapsed_ns 2000000000 start_ns 1 end_ns 2\n",
            u,
        )
        .expect("parses");
        assert_eq!(r.iters, 1000);
        assert!((r.syscall_rate() - 1500.0).abs() < 1e-9);
    }
}
