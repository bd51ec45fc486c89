//! A followed child that is gone before the tracer, held by SIGSTOP, reads its exec.

use std::time::{Duration, Instant};

use pmap_tests::trace_harness::Tracer;

use crate::records::traced_pid;

/// Traces `sh -c` with `-f --no-initial-table` and `extra` arguments, and
/// holds the tracer (SIGSTOP) while sh's child execs python3, maps 7 MiB and
/// exits; returns the tracer after its end.
pub(crate) fn trace_a_child_gone_while_held(extra: &[&str]) -> Tracer {
    let marker = std::env::temp_dir().join(format!(
        "pmap-follow-gone-{}-{}",
        std::process::id(),
        extra.len()
    ));
    let _ = std::fs::remove_file(&marker);
    let script = "import mmap; m = mmap.mmap(-1, 7 << 20); m[0] = 1";
    let cmd = format!(
        "sleep 1; /usr/bin/python3 -c '{script}'; touch {}",
        marker.display()
    );
    let mut args = vec!["-f"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--no-initial-table", "--", "sh", "-c", &cmd]);
    let mut t = Tracer::spawn(&args);
    let root = traced_pid(&t.wait_tracing(Duration::from_secs(60)));
    // Launch mode stops sh at its exec with ptrace; held before it lets
    // go, the tracer would hold sh too (its SIGCHLD stops it).
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{root}/status"))
        .is_ok_and(|s| !s.contains("TracerPid:\t0\n"))
    {
        assert!(Instant::now() < deadline, "the tracer did not let go of sh");
        std::thread::sleep(Duration::from_millis(5));
    }
    t.signal(libc::SIGSTOP);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "python3 did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    t.signal(libc::SIGCONT);
    let status = t.wait_exit(Duration::from_secs(60));
    let _ = std::fs::remove_file(&marker);
    assert!(status.success(), "pmap trace failed: {}", t.context());
    t
}
