//! The poll backend and a target that execs (issue 7: "execs mid-trace").
//! Polling sees no exec event: the open maps file of the old program just
//! stops answering. The tracer must tell this from an exit (same process,
//! same start time), re-read the new program's map, and keep tracing with
//! exact tables.

use std::{
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

use pmap_tests::trace_harness::{Tracer, assert_table_matches, reference_pmap, serial};

#[test]
fn poll_backend_follows_an_exec() {
    let _serial = serial();
    let mut target = Command::new("bash")
        .args(["-c", "read line; exec sleep 30"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("bash starts");
    let pid = target.id();
    let mut t = Tracer::spawn(&[
        "--backend",
        "poll",
        "--poll-interval",
        "0.1",
        &pid.to_string(),
    ]);
    t.wait_tracing(Duration::from_secs(60));
    let first = t.next_table(pid, "initial", Duration::from_secs(30));
    assert!(first.body[0].contains("bash"), "{:?}", first.body[0]);

    let mut go = target.stdin.take().expect("piped stdin");
    writeln!(go).expect("let bash exec");
    drop(go);
    // The table is asked for once the tracer has reported the exec (a line
    // read), not after a guess at how long that takes.
    let exec_line = format!(" pid {pid} execve: new program");
    t.wait_stdout(Duration::from_secs(30), |l| l.contains(&exec_line))
        .unwrap_or_else(|| panic!("the exec was not reported\n{}", t.context()));
    // The reference must be the settled program, not a loader halfway
    // through: wait until sleep sits in clock_nanosleep (syscall 230).
    let settled = (0..300).any(|_| {
        let busy = std::fs::read_to_string(format!("/proc/{pid}/syscall"))
            .map_or(true, |s| !s.starts_with("230 "));
        if busy {
            std::thread::sleep(Duration::from_millis(10));
        }
        !busy
    });
    assert!(
        settled,
        "sleep never reached its nanosleep\n{}",
        t.context()
    );
    let table = t.request_table(pid);
    assert!(table.body[0].contains("sleep"), "{:?}", table.body[0]);
    assert_table_matches(&table, &reference_pmap(pid, &[]), "after exec (poll)", &t);

    t.signal(libc::SIGINT);
    let status = t.wait_exit(Duration::from_secs(20));
    let _ = target.kill();
    let _ = target.wait();
    assert!(status.success(), "{status}\n{}", t.context());
    let out = t.stdout();
    assert!(
        out.iter()
            .any(|l| l.contains(&format!(" pid {pid} execve: new program"))),
        "the exec was not reported\n{}",
        t.context()
    );
    assert!(
        !out.iter()
            .any(|l| l.ends_with(&format!(" pid {pid} exited"))),
        "an exec was reported as an exit\n{}",
        t.context()
    );
}
