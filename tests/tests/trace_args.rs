//! `pmap trace` refuses bad arguments with one line that names the argument
//! and what is wrong, and a non-zero exit, before it touches the kernel.

use std::process::Command;

use pmap_tests::pmap_bin;

/// Runs `pmap trace ARGS` (poll backend, so no privileges are involved)
/// and returns (exit code, stderr).
fn trace(args: &[&str]) -> (i32, String) {
    let out = Command::new(pmap_bin())
        .args(["trace", "--backend", "poll", "--duration", "0.1"])
        .args(args)
        .output()
        .expect("pmap runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn refused(args: &[&str], says: &str) {
    let (code, err) = trace(args);
    assert_ne!(code, 0, "{args:?} was accepted: {err}");
    assert!(err.contains(says), "{args:?}: expected {says:?} in:\n{err}");
    let lines = err.lines().filter(|l| !l.trim().is_empty()).count();
    assert!(lines <= 3, "{args:?}: a short message, not:\n{err}");
}

#[test]
fn ring_size_must_be_a_power_of_two_of_pages() {
    refused(&["--ring-size", "1000", "1"], "must be a power of two");
    refused(&["--ring-size", "12288", "1"], "must be a power of two");
    refused(
        &["--ring-size", "lots", "1"],
        "'lots' is not a number of bytes",
    );
}

#[test]
fn conflicting_formats_are_refused() {
    refused(
        &["-x", "-d", "1"],
        "options -d, -x, -X are mutually exclusive",
    );
    refused(
        &["-X", "-d", "1"],
        "options -d, -x, -X are mutually exclusive",
    );
}

#[test]
fn bad_pids_and_ranges_are_named() {
    refused(&["abc"], "'abc' is not a process id");
    refused(&["0"], "'0' is not a process id");
    refused(&["999999999"], "no process 999999999");
    refused(&["-A", "zz", "1"], "'zz' is not an address range");
    refused(&["1", "--", "true"], "either PIDs or `-- COMMAND`");
    refused(&["--", "/nonexistent/program"], "cannot run");
}
