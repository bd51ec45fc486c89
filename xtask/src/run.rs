//! `cargo xtask run [-- ARGS]`: builds the release `pmap` (with its kernel
//! programs) and runs it with ARGS; with none, the README's demo: a live
//! trace of a short Python program that maps and unmaps memory.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, ExitStatus, Stdio},
    thread,
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::{
    deps,
    util::{self, cargo, run},
};

/// The demo's workload: a few anonymous and file mappings made and removed,
/// slowly enough to watch each delta arrive.
const DEMO_SCRIPT: &str = "\
import mmap, sys, time
time.sleep(0.5)
for i in range(1, 4):
    anon = mmap.mmap(-1, i * 1024 * 1024)
    anon[0] = 1
    time.sleep(0.4)
    with open(sys.executable, 'rb') as f:
        exe = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    time.sleep(0.4)
    exe.close()
    anon.close()
    time.sleep(0.4)
";

pub fn main(args: &[String]) -> Result<()> {
    // `cargo xtask run -- ARGS` hands us `-- ARGS`.
    let args = match args.first().map(String::as_str) {
        Some("--") => &args[1..],
        _ => args,
    };
    deps::ensure(deps::Needs::BUILD)?;
    util::note_no_ebpf_ignored();
    build_release()?;
    let pmap = util::root().join("target/release/pmap");
    if !args.is_empty() {
        let status = Command::new(&pmap)
            .args(args)
            .status()
            .with_context(|| format!("could not run {}", pmap.display()))?;
        return exit_like(status);
    }
    demo(&pmap)
}

/// `cargo build --release -p pmap-cli`, with the kernel programs.
pub fn build_release() -> Result<()> {
    run(cargo([
        "build",
        "--release",
        "--package",
        "pmap-cli",
        "--bin",
        "pmap",
    ])
    .env_remove("PMAP_NO_EBPF"))
}

fn demo(pmap: &std::path::Path) -> Result<()> {
    let mut trace = Command::new(pmap);
    trace.args(["trace", "--", "python3", "-c", DEMO_SCRIPT]);
    eprintln!(
        "xtask: demo: {}",
        util::show(&trace).replace(DEMO_SCRIPT, "<script that maps and unmaps memory>")
    );
    let mut child = trace
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not run {}", pmap.display()))?;
    // Pass stderr through as it comes, watching for "not built yet".
    let stderr = child.stderr.take().context("no stderr pipe")?;
    let watcher = thread::spawn(move || {
        let mut not_built = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            not_built |= line.contains("not built yet");
            eprintln!("{line}");
        }
        not_built
    });
    let status = child.wait()?;
    let not_built = watcher.join().unwrap_or(false);
    if status.success() || !not_built {
        return exit_like(status);
    }
    eprintln!(
        "xtask: `pmap trace` is not built yet in this version; falling back to a \
         snapshot of a running python3"
    );
    snapshot_demo(pmap)
}

/// `pmap PID` of a python3 that is alive for the duration.
fn snapshot_demo(pmap: &std::path::Path) -> Result<()> {
    let mut py = Command::new("python3")
        .args(["-c", "import time; time.sleep(30)"])
        .stdin(Stdio::null())
        .spawn()
        .context("could not start python3 for the demo")?;
    // Let it finish loading its libraries.
    thread::sleep(Duration::from_millis(300));
    let pid = py.id().to_string();
    eprintln!("xtask: demo: {} {pid}", pmap.display());
    let status = Command::new(pmap).arg(&pid).status();
    let _ = py.kill();
    let _ = py.wait();
    std::io::stdout().flush()?;
    exit_like(status.with_context(|| format!("could not run {}", pmap.display()))?)
}

/// Ends like pmap did: its exit code becomes ours.
fn exit_like(status: ExitStatus) -> Result<()> {
    if status.success() {
        return Ok(());
    }
    match status.code() {
        Some(code) => std::process::exit(code),
        None => bail!("pmap was killed ({status})"),
    }
}
