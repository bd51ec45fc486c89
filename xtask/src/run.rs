//! `cargo xtask run [-- ARGS]`: builds the release `pmap` (with its kernel
//! programs; static, see [`release::build_pmap`]) and runs it with ARGS; with
//! none, the README's demo: a live trace of a short Python program that maps
//! and unmaps memory (`xtask/demo.py`).

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, ExitStatus, Stdio},
    thread,
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::{deps, release, util};

/// The demo's workload (relative to the workspace root): a few anonymous
/// and file mappings made and removed.
const DEMO_SCRIPT: &str = "xtask/demo.py";

pub fn main(args: &[String]) -> Result<()> {
    // `cargo xtask run -- ARGS` hands us `-- ARGS`.
    let args = match args.first().map(String::as_str) {
        Some("--") => &args[1..],
        _ => args,
    };
    deps::ensure(deps::Needs::BUILD)?;
    util::note_no_ebpf_ignored();
    let pmap = release::build_pmap(true)?;
    if !args.is_empty() {
        let status = Command::new(&pmap)
            .args(args)
            .status()
            .with_context(|| format!("could not run {}", pmap.display()))?;
        return exit_like(status);
    }
    demo(&pmap)
}

fn demo(pmap: &std::path::Path) -> Result<()> {
    let python = python()?;
    let mut trace = Command::new(pmap);
    trace
        .args(["trace", "--"])
        .arg(&python)
        .args(["-S", DEMO_SCRIPT])
        .current_dir(util::root());
    eprintln!("xtask: demo: {}", util::show(&trace));
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

/// The real python3 interpreter: `python3` on PATH may be a wrapper script
/// (pyenv's shims exec several programs first, which would fill the demo).
fn python() -> Result<String> {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .stdin(Stdio::null())
        .output()
        .context("the demo runs python3, which could not be started; install it (apt-get install python3)")?;
    let exe = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || exe.is_empty() {
        bail!("python3 could not tell where its interpreter is (sys.executable is empty)");
    }
    Ok(exe)
}

/// `pmap PID` of a python3 that is alive for the duration.
fn snapshot_demo(pmap: &std::path::Path) -> Result<()> {
    let mut py = Command::new(python()?)
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
