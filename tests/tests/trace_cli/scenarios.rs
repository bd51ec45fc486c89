//! Steps several tests share: ending a trace, tracing node's JIT code, refusing arguments.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use pmap_tests::{
    pmap_bin,
    trace_harness::{Tracer, parse_tables},
};

use crate::talker::{Talker, program};
use crate::watch::{gone_within, traced_pid};

/// Reads the tracer's first stdout line through a pipe, waits until it is
/// tracing, closes the pipe, and checks that it exits soon although
/// nothing else is printed.
pub(crate) fn closed_output_ends(args: &[&str]) -> (Tracer, u32) {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    let mut t = Tracer::spawn_with_stdout(args, Stdio::from(writer));
    let mut first = String::new();
    let mut reader = BufReader::new(reader);
    reader
        .read_line(&mut first)
        .expect("reading the first line");
    assert!(first.starts_with("--- table pid "), "{first:?}");
    let tracing = t.wait_tracing(Duration::from_secs(60));
    let pid = traced_pid(&tracing);
    // Everything before the tracing line has been written: from now on an
    // idle target gives the tracer nothing to write.
    drop(reader);
    let closed = Instant::now();
    let status = t.wait_exit(Duration::from_secs(10));
    let took = closed.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "the tracer took {took:?} to notice its output was closed\n{}",
        t.context()
    );
    assert!(status.success(), "{status}\n{}", t.context());
    (t, pid)
}

/// Starts `pmap trace ARGS -- sleep 60`, ends the trace with `end`, and
/// checks that the command is ended too and that stderr says why.
pub(crate) fn launched_sleep_ends(args: &[&str], end: impl FnOnce(&Tracer), why: &str) {
    let mut argv = args.to_vec();
    argv.extend(["--", "sleep", "60"]);
    let mut t = Tracer::spawn(&argv);
    let pid = traced_pid(&t.wait_tracing(Duration::from_secs(60)));
    end(&t);
    let status = t.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}\n{}", t.context());
    assert!(
        gone_within(pid, Duration::from_secs(5)),
        "the launched command {pid} still runs after its trace ended\n{}",
        t.context()
    );
    let said = format!("pmap trace: {why}: ended the command sleep (pid {pid}) with SIGTERM");
    assert!(
        t.stderr().iter().any(|l| l == &said),
        "expected {said:?}\n{}",
        t.context()
    );
    // The trace itself ended normally: the final table and the summary.
    let out = t.stdout();
    assert!(
        parse_tables(&out)
            .iter()
            .any(|tb| tb.pid == pid && tb.reason == "final"),
        "{}",
        t.context()
    );
    t.summary(pid);
}

/// node with a perf map, after it optimised the user's one hot function.
pub(crate) fn node_with_hot_function() -> Talker {
    let node = program("node");
    // --perf-basic-prof also writes an isolate-*-v8.log into the current
    // directory: keep it out of the source tree.
    let t = Talker::spawn(Command::new(node).current_dir(std::env::temp_dir()).args([
        "--perf-basic-prof",
        "-e",
        "function userHotFunction(n) { let s = 0; for (let i = 0; i < n; i++) s += (i * 7) % 13; return s; }\n\
         let t = 0;\n\
         for (let j = 0; j < 20000; j++) t += userHotFunction(1000);\n\
         require('fs').writeSync(1, 'ready ' + t + '\\n');\n\
         setTimeout(() => {}, 60000);\n",
    ]));
    assert!(t.line().starts_with("ready "));
    let map = format!("/tmp/perf-{}.map", t.pid());
    let text = std::fs::read_to_string(&map).unwrap_or_default();
    assert!(
        text.contains("JS:*userHotFunction"),
        "{map} does not name the optimised function"
    );
    t
}

/// The `JIT ...` lines after the first table of a short trace of `pid`.
pub(crate) fn jit_lines(pid: u32, extra: &[&str]) -> Vec<String> {
    let pid_s = pid.to_string();
    let mut args = vec!["--duration", "0.2"];
    args.extend_from_slice(extra);
    args.push(&pid_s);
    let mut t = Tracer::spawn(&args);
    t.wait_tracing(Duration::from_secs(60));
    let status = t.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}\n{}", t.context());
    let lines: Vec<String> = t
        .stdout()
        .iter()
        .map(|l| l.trim_start().to_string())
        // `JIT 00007f..-00007f.. r-xp N JIT functions: ...` after tables
        // (not the summary's `JIT code reservation` structures).
        .filter(|l| l.starts_with("JIT ") && l.contains(" JIT function"))
        .collect();
    assert!(!lines.is_empty(), "no JIT lines\n{}", t.context());
    let _ = std::fs::remove_file(format!("/tmp/perf-{pid}.map"));
    lines
}

/// `pmap trace ARGS PID` on a live process: refused at once, with a
/// message that contains `says`, before anything is traced.
pub(crate) fn refused_at_start(args: &[&str], says: &str) {
    let mut idle = Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("starting sleep");
    // A bound, so that a tracer that accepted the arguments ends.
    let bound: &[&str] = if args.contains(&"--duration") {
        &[]
    } else {
        &["--duration", "1"]
    };
    let out = Command::new(pmap_bin())
        .arg("trace")
        .args(bound)
        .args(args)
        .arg(idle.id().to_string())
        .stdin(Stdio::null())
        .output()
        .expect("running pmap trace");
    let _ = idle.kill();
    let _ = idle.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "pmap trace {args:?} was accepted:\n{err}"
    );
    assert!(
        !err.contains("pmap trace: tracing"),
        "pmap trace {args:?} started tracing before refusing:\n{err}"
    );
    assert!(
        err.contains(says),
        "pmap trace {args:?}: expected {says:?} in:\n{err}"
    );
    assert!(out.stdout.is_empty(), "printed a trace: {args:?}");
}
