//! Issue 5: "on a terminal, when the user presses Enter", `pmap trace`
//! prints the table. The tracer runs with its stdin on a pseudo-terminal;
//! a newline typed there must bring a full table equal to `/usr/bin/pmap
//! PID` of the (stopped) target.

use std::{
    fs::File,
    io::{BufRead, BufReader, Write},
    os::fd::{FromRawFd, OwnedFd},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use pmap_tests::{
    pmap_bin,
    trace_harness::{diff, parse_tables, reference_pmap, serial},
};

/// A pseudo-terminal: (master, slave).
fn openpty() -> (File, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: both out-pointers are valid; name, termios and winsize may
    // be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // The tracer must not inherit the master (only its stdin, the slave).
    for fd in [master, slave] {
        // SAFETY: setting FD_CLOEXEC on a descriptor we own.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: openpty returned two fresh descriptors that nothing else owns.
    unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// Collects the lines of `r` as they come.
fn collect(r: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines().map_while(Result::ok) {
            sink.lock().expect("lines lock").push(l);
        }
    });
    lines
}

fn wait_for<T>(what: &str, lines: &Mutex<Vec<String>>, f: impl Fn(&[String]) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f(&lines.lock().expect("lines lock")) {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn enter_on_a_terminal_prints_the_table() {
    let _serial = serial();
    // A target with files, memfds and SysV segments, stopped so that its
    // map cannot change between the two tables.
    let mut target = Command::new(pmap_tests::workload_bin("trace_workload"))
        .args(["--seed", "5", "--ops", "10", "--checkpoint-every", "5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("trace_workload starts");
    let pid = target.id();
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);

    let (mut master, slave) = openpty();
    let mut tracer = Command::new(pmap_bin())
        .args(["trace", &pid.to_string()])
        .stdin(Stdio::from(slave))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pmap trace starts");
    let out = collect(tracer.stdout.take().expect("stdout"));
    let err = collect(tracer.stderr.take().expect("stderr"));
    wait_for("the tracing line", &err, |ls| {
        ls.iter()
            .find(|l| l.starts_with("pmap trace: tracing"))
            .cloned()
    });

    master.write_all(b"\n").expect("typing Enter");
    let table = wait_for("a table after Enter", &out, |ls| {
        parse_tables(ls)
            .into_iter()
            .find(|t| t.reason == "enter" && t.pid == pid)
    });
    let reference = reference_pmap(pid, &[]);

    // SAFETY: signalling our own child.
    unsafe { libc::kill(tracer.id() as i32, libc::SIGINT) };
    // Bounded: a tracer stuck reading the terminal would never exit.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = tracer.try_wait().expect("try_wait") {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = tracer.kill();
            let _ = tracer.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let _ = target.wait();
    let status =
        status.expect("pmap trace did not exit within 20 s of SIGINT with a terminal on stdin");
    assert!(
        status.success(),
        "pmap trace: {status}\n{}",
        err.lock().expect("lines lock").join("\n")
    );
    assert!(
        table.body.len() > 10,
        "the table after Enter is too short: {:#?}",
        table.body
    );
    assert!(
        table.body == reference,
        "the table after Enter differs from `pmap {pid}` ('-' pmap only, '+' tracer only):\n{}",
        diff(&reference, &table.body)
    );
}
