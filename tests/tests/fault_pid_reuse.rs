//! A traced process exits and a new process is given its PID (issue 7:
//! "its PID is reused (detect by start time; never attach a dead process's
//! history to a new one)").
//!
//! Root makes the reuse happen at once: it writes PID-1 to
//! /proc/sys/kernel/ns_last_pid and starts a process, retrying until the
//! new process gets the PID. The tracer also traces a second, idle target,
//! so it keeps running after the first one exits; the new process execs
//! `sleep` and maps its libraries while the kernel filter still holds the
//! PID. The tracer must report the old process's exit and never show the
//! new process's regions as deltas or tables of the old one, with either
//! backend (poll with a long interval, so that the reuse falls between two
//! polls).

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use pmap_tests::trace_harness::{Tracer, parse_tables, serial};

/// An idle target that maps nothing after it starts (and never `sleep`).
fn idle() -> Child {
    Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("cat starts")
}

/// Starts `sleep 30` as process `pid`, which must be free: the kernel
/// gives the next process the id after `ns_last_pid`.
fn take_pid(pid: u32) -> Child {
    for _ in 0..1000 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
            .expect("writing /proc/sys/kernel/ns_last_pid (needs root)");
        let mut child = Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep starts");
        if child.id() == pid {
            return child;
        }
        // Someone else took it first: try again.
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("no new process got pid {pid} in 1000 tries");
}

fn reuse_is_not_attached(backend: &str) {
    let _serial = serial();
    let mut old = idle();
    let mut keeper = idle();
    let (pid, kpid) = (old.id(), keeper.id());
    let mut args = vec!["--backend", backend];
    if backend == "poll" {
        args.extend(["--poll-interval", "4"]);
    }
    let (p, k) = (pid.to_string(), kpid.to_string());
    args.extend([p.as_str(), k.as_str()]);
    let mut t = Tracer::spawn(&args);
    t.wait_tracing(Duration::from_secs(60));
    t.next_table(pid, "initial", Duration::from_secs(30));
    let mark = t.stdout().len();

    let _ = old.kill();
    let _ = old.wait();
    let mut new = take_pid(pid);
    // The new process must make calls the tracer could take for the old
    // one's: wait until it has exec'd and its loader has mapped libc (an
    // mmap for the PID), then ask for tables, and wait past the next poll.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        if maps.contains("/sleep") && maps.contains("libc.so") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{backend}: the new process {pid} never mapped sleep and libc:\n{maps}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    t.request_table(kpid);
    std::thread::sleep(Duration::from_secs(if backend == "poll" { 5 } else { 1 }));
    t.request_table(kpid);
    let new_alive = new.try_wait().expect("try_wait").is_none();
    t.signal(libc::SIGINT);
    let status = t.wait_exit(Duration::from_secs(30));
    let _ = new.kill();
    let _ = new.wait();
    let _ = keeper.kill();
    let _ = keeper.wait();
    assert!(new_alive, "{backend}: the new process ended too early");
    assert!(status.success(), "{backend}: {status}\n{}", t.context());

    let out = t.stdout();
    let after = &out[mark..];
    let exited = format!(" pid {pid} exited");
    assert!(
        after.iter().any(|l| l.ends_with(&exited)),
        "{backend}: the exit of the old process {pid} was not reported\n{}",
        t.context()
    );
    // Nothing else about the PID once the old process was killed: no
    // delta, exec or table (the summary comes last, with counts only).
    let summary = format!("--- summary pid {pid} ");
    let end = after
        .iter()
        .position(|l| l.starts_with(&summary))
        .unwrap_or(after.len());
    let about: Vec<&String> = after[..end]
        .iter()
        .filter(|l| l.contains(&format!(" pid {pid} ")) || l.ends_with(&format!(" pid {pid}")))
        .filter(|l| !l.ends_with(&exited))
        .collect();
    assert!(
        about.is_empty(),
        "{backend}: lines about pid {pid} after it exited (the new process's history?): {about:#?}\n{}",
        t.context()
    );
    let tables: Vec<_> = parse_tables(after)
        .into_iter()
        .filter(|tb| tb.pid == pid)
        .collect();
    assert!(
        tables.is_empty(),
        "{backend}: tables of pid {pid} after it exited: {tables:#?}"
    );
    let sleep_rows: Vec<&String> = out.iter().filter(|l| l.contains("/sleep")).collect();
    assert!(
        sleep_rows.is_empty(),
        "{backend}: the new process's regions were shown: {sleep_rows:#?}\n{}",
        t.context()
    );
}

#[test]
fn reused_pid_is_not_traced_ebpf() {
    reuse_is_not_attached("ebpf");
}

#[test]
fn reused_pid_is_not_traced_poll() {
    reuse_is_not_attached("poll");
}
