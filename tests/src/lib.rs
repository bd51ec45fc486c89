//! Helpers shared by the end-to-end tests: finding the built `pmap`,
//! starting and stopping workload processes.

use std::{io::Write, path::PathBuf};

/// The `pmap` binary under test: `$PMAP_BIN` if set, else the one cargo
/// built next to this test executable (`cargo xtask test` builds it first).
pub fn pmap_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PMAP_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/pmap
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("test executable is in target/<profile>/deps");
    let bin = dir.join("pmap");
    assert!(
        bin.exists(),
        "{} does not exist: build it first (`cargo build -p pmap-cli`) or set PMAP_BIN",
        bin.display()
    );
    bin
}

/// A workload binary of this crate (tests/src/bin/NAME.rs), built by cargo
/// next to the test executable.
pub fn workload_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("test executable is in target/<profile>/deps");
    dir.join(name)
}

/// The environment variable naming the file where [`skip`] records checks
/// that could not run; `cargo xtask test` sets it, then lists and counts
/// the lines in its totals.
pub const SKIP_FILE_VAR: &str = "PMAP_TEST_SKIPS";

/// Records that `check` could not run on this machine, and why: a line
/// `pmap-test-skip: <test>: <check>: <reason>` on stderr (shown only with
/// `--nocapture` or on failure) and appended to `$PMAP_TEST_SKIPS`, which
/// xtask reads whatever cargo test captured. Only for what the machine
/// cannot offer (no NUMA, no huge pages), never for a missing program:
/// [`tool`] and [`program`] fail for those.
pub fn skip(check: &str, reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed thread>")
        .to_string();
    let binary = std::env::current_exe()
        .ok()
        .and_then(|e| e.file_name().map(|n| n.to_string_lossy().into_owned()))
        .map(|n| n.rsplit_once('-').map_or(n.clone(), |(b, _)| b.to_string()))
        .unwrap_or_default();
    let line = format!("pmap-test-skip: {binary}::{test}: {check}: {reason}\n");
    eprint!("{line}");
    if let Some(path) = std::env::var_os(SKIP_FILE_VAR) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("opening ${SKIP_FILE_VAR} {path:?}: {e}"));
        // One write with O_APPEND: lines of tests in other binaries do not mix.
        f.write_all(line.as_bytes())
            .unwrap_or_else(|e| panic!("writing ${SKIP_FILE_VAR} {path:?}: {e}"));
    }
}

/// The program `name` a test runs as a target (python3, node...), found as
/// an ELF executable in `/usr/bin` or on `$PATH` (a wrapper script such as
/// a pyenv shim would make the target a shell). Panics, naming the Debian
/// package and the command that installs it, when it is missing: a test
/// that cannot run its program must fail, not pass having checked nothing.
pub fn program(name: &str, package: &str) -> PathBuf {
    trace_harness::find_elf(name).unwrap_or_else(|| missing(name, package))
}

/// A helper program a test runs (gcore, setcap...), script or binary,
/// found in `/usr/bin` or on `$PATH`; panics like [`program`].
pub fn tool(name: &str, package: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::iter::once(PathBuf::from("/usr/bin"))
        .chain(std::env::split_paths(&path))
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| missing(name, package))
}

fn missing(name: &str, package: &str) -> ! {
    panic!(
        "`{name}` is not installed (not in /usr/bin nor on PATH): this test needs it. \
         Install it with `cargo xtask deps` (as root; Debian package {package})"
    )
}

/// A kernel thread's pid: the lowest pid whose `stat` flags have
/// PF_KTHREAD (kthreadd, pid 2, on most systems, but not in every pid
/// namespace or kernel).
pub fn kernel_thread() -> u32 {
    const PF_KTHREAD: u64 = 0x0020_0000;
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .expect("reading /proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.into_iter()
        .find(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // Fields after `(comm)`: state ppid pgrp session tty_nr tpgid flags.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(6)?.parse::<u64>().ok())
                .is_some_and(|flags| flags & PF_KTHREAD != 0)
        })
        .expect("no kernel thread in /proc (a pid namespace without them?)")
}

/// The state letter of process `pid` (`R`, `S`, `T`, `Z`, ...) from
/// `/proc/PID/stat`, where it follows the last `)` (the command name may
/// hold anything); `None` if the process is gone.
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

pub mod browser;
pub mod exporter_harness;
pub mod pmap_table;
pub mod recording;
pub mod rng;
pub mod trace_harness;
pub mod views_util;
