//! Targets that misbehave under `pmap trace`.

use std::{
    io::{BufRead, BufReader, Read, Write},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use pmap_tests::pmap_bin;

/// A target that exits and stays a zombie (its parent, this test, does not
/// reap it yet): the tracer must see the process is gone, print the
/// summary and exit 0, not wait for its --duration. With a poll interval
/// longer than that, only the liveness check (a zombie is not alive) can
/// end the trace in time. The target exits once the tracer says it is
/// tracing (a line read), whatever the time loading the programs takes.
#[test]
fn zombie_target_ends_the_trace() {
    for (backend, interval) in [("ebpf", "0.1"), ("poll", "0.1"), ("poll", "30")] {
        // `read` returns, and sh exits, when the test closes its stdin.
        let mut child = Command::new("sh")
            .args(["-c", "read line"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("sh");
        let mut tracer = Command::new(pmap_bin())
            .args(["trace", "--backend", backend, "--duration", "20"])
            .args(["--poll-interval", interval])
            .arg(child.id().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pmap runs");
        let mut err = BufReader::new(tracer.stderr.take().expect("piped stderr"));
        let mut stderr = String::new();
        while !stderr.contains("pmap trace: tracing") {
            let n = err.read_line(&mut stderr).expect("tracer's stderr");
            assert!(
                n > 0,
                "{backend}: the tracer ended before tracing: {stderr}"
            );
        }
        let mut go = child.stdin.take().expect("piped stdin");
        writeln!(go).expect("let the target exit");
        drop(go);
        let exited = Instant::now();
        let out = tracer.wait_with_output().expect("pmap ends");
        let took = exited.elapsed();
        err.read_to_string(&mut stderr).expect("tracer's stderr");
        let stdout = String::from_utf8_lossy(&out.stdout);
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
