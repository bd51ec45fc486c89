//! Targets that misbehave under `pmap trace`.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use pmap_tests::pmap_bin;

/// A target that exits and stays a zombie (its parent, this test, does not
/// reap it yet): the tracer must see the process is gone, print the
/// summary and exit 0, not wait for its --duration. With a poll interval
/// longer than that, only the liveness check (a zombie is not alive) can
/// end the trace in time.
#[test]
fn zombie_target_ends_the_trace() {
    for (backend, interval) in [("ebpf", "0.1"), ("poll", "0.1"), ("poll", "30")] {
        let mut child = Command::new("sleep").arg("0.5").spawn().expect("sleep");
        let started = Instant::now();
        let out = Command::new(pmap_bin())
            .args(["trace", "--backend", backend, "--duration", "20"])
            .args(["--poll-interval", interval])
            .arg(child.id().to_string())
            .output()
            .expect("pmap runs");
        let took = started.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Only now reap it.
        let _ = child.wait();
        assert!(out.status.success(), "{backend}: {stderr}");
        assert!(
            took < Duration::from_secs(10),
            "{backend}: the tracer waited {took:?} on a zombie"
        );
        assert!(
            stdout.contains("exited"),
            "{backend}: no exit line:\n{stdout}"
        );
        assert!(
            stdout.contains("--- summary pid"),
            "{backend}: no summary:\n{stdout}"
        );
    }
}
