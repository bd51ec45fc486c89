//! How a trace starts and ends: SIGINT, SIGTERM and SIGHUP end it cleanly
//! (exit 0, final table, summary, no eBPF program, link or map left
//! behind); a closed pipe (`| head -3`) ends it quietly; a PID that does not
//! exist is an error; a target that execs is re-seeded and stays exact; two
//! tracers on one target both stay exact.
//!
//! Root and a real kernel are needed, and `bpftool` (Debian package
//! `bpftool`; `cargo xtask deps` installs it).

use std::process::{Command, Stdio};
use std::time::Duration;

use pmap_tests::trace_harness::{
    BpfObjects, Event, Tracer, Workload, assert_table_matches, bpf_objects_of, bpftool_ids,
    non_table_lines, number_after, parse_tables, reference_pmap, serial, unused_pid,
};

/// A workload that sits waiting on stdin: a live target with files, memfds,
/// SysV segments mapped, making no changes.
fn idle_target() -> Workload {
    Workload::spawn_bin(
        "trace_workload",
        &["--seed", "99", "--ops", "10", "--checkpoint-every", "5"],
    )
}

fn signal_ends_cleanly(sig: i32, name: &str) {
    let _serial = serial();
    let before = [bpftool_ids("prog"), bpftool_ids("link"), bpftool_ids("map")];
    let wl = idle_target();
    let pid = wl.pid();
    let mut t = Tracer::spawn(&[&pid.to_string()]);
    t.wait_tracing(Duration::from_secs(60));

    let held = bpf_objects_of(t.pid());
    assert!(
        !held.progs.is_empty(),
        "the tracer holds no eBPF program while tracing: {held:?}\n{}",
        t.context()
    );
    let during = [bpftool_ids("prog"), bpftool_ids("link"), bpftool_ids("map")];
    for (kind, ids) in [
        ("prog", &held.progs),
        ("link", &held.links),
        ("map", &held.maps),
    ] {
        let i = ["prog", "link", "map"]
            .iter()
            .position(|k| *k == kind)
            .expect("kind");
        for id in ids {
            assert!(
                during[i].contains(id),
                "bpftool does not list the tracer's {kind} {id}"
            );
        }
    }

    t.signal(sig);
    let status = t.wait_exit(Duration::from_secs(20));
    assert!(
        status.success(),
        "{name}: pmap trace exited with {status}\n{}",
        t.context()
    );

    // The target still lives: a final table, exact, then the summary.
    let fin = t.next_table(pid, "final", Duration::from_secs(1));
    assert_table_matches(
        &fin,
        &reference_pmap(pid, &[]),
        &format!("final table after {name}"),
        &t,
    );
    let summary = t.summary(pid);
    assert_eq!(summary.corrections, 0, "{}", summary.text.join("\n"));
    let bad: Vec<String> = t
        .stderr()
        .into_iter()
        .filter(|l| l.contains("panicked") || l.to_lowercase().contains("error"))
        .collect();
    assert!(
        bad.is_empty(),
        "{name}: errors on stderr:\n{}",
        bad.join("\n")
    );

    // Nothing the tracer loaded or attached survives it. The kernel frees
    // maps and programs from a work queue after the last descriptor closes,
    // so give it a moment before calling anything a leak.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (after, left) = loop {
        let after = [bpftool_ids("prog"), bpftool_ids("link"), bpftool_ids("map")];
        let still = |ids: &[u64], k: usize| -> Vec<u64> {
            ids.iter()
                .copied()
                .filter(|id| after[k].contains(id))
                .collect()
        };
        let left = BpfObjects {
            progs: still(&held.progs, 0),
            links: still(&held.links, 1),
            maps: still(&held.maps, 2),
        };
        if left.is_empty() || std::time::Instant::now() > deadline {
            break (after, left);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        left.is_empty(),
        "{name}: eBPF objects of the tracer remain 10 s after it exited: {left:?}"
    );
    // Compared with before the trace: whatever is new since then and was
    // already there while it ran belongs to someone else (other tracers on
    // this machine), never to this tracer.
    for (k, kind) in ["prog", "link", "map"].iter().enumerate() {
        let new_since: Vec<u64> = after[k]
            .iter()
            .copied()
            .filter(|id| !before[k].contains(id))
            .collect();
        let ours: Vec<u64> = new_since
            .iter()
            .copied()
            .filter(|id| held_contains(&held, kind, *id))
            .collect();
        assert!(
            ours.is_empty(),
            "{name}: {kind}s of the tracer still loaded: {ours:?}"
        );
    }
    drop(wl);
}

fn held_contains(h: &BpfObjects, kind: &str, id: u64) -> bool {
    match kind {
        "prog" => h.progs.contains(&id),
        "link" => h.links.contains(&id),
        _ => h.maps.contains(&id),
    }
}

#[test]
fn sigint_ends_cleanly() {
    signal_ends_cleanly(libc::SIGINT, "SIGINT");
}

#[test]
fn sigterm_ends_cleanly() {
    signal_ends_cleanly(libc::SIGTERM, "SIGTERM");
}

#[test]
fn sighup_ends_cleanly() {
    signal_ends_cleanly(libc::SIGHUP, "SIGHUP");
}

/// `pmap trace PID | head -3`: when head exits, the next write fails; the
/// tracer must end without a panic or "Broken pipe" noise.
#[test]
fn closed_pipe_ends_quietly() {
    let _serial = serial();
    let mut wl = Workload::spawn_bin(
        "trace_workload",
        &[
            "--seed",
            "7",
            "--ops",
            "2000000",
            "--checkpoint-every",
            "2000000",
            "--delay-us",
            "200",
        ],
    );
    let pid = wl.pid();
    let mut head = Command::new("head")
        .arg("-3")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start head");
    let head_in = head.stdin.take().expect("head stdin");
    let mut t = Tracer::spawn_with_stdout(&[&pid.to_string()], Stdio::from(head_in));
    t.wait_tracing(Duration::from_secs(60));
    wl.release();
    // The workload stops once right after starting; let it run on.
    assert_eq!(wl.wait_event(Duration::from_secs(30)), Event::Stopped);
    wl.cont();

    let head_out = head.wait_with_output().expect("head output");
    let shown = String::from_utf8_lossy(&head_out.stdout);
    assert_eq!(shown.lines().count(), 3, "head printed:\n{shown}");
    assert!(
        shown.starts_with(&format!("--- table pid {pid} (initial)")),
        "head printed:\n{shown}"
    );

    // The workload keeps changing its map, so the tracer keeps writing;
    // SIGUSR1 makes sure it writes at least one more table.
    std::thread::sleep(Duration::from_millis(200));
    let _ = unsafe_kill(t.pid(), libc::SIGUSR1);
    let status = t.wait_exit(Duration::from_secs(20));
    use std::os::unix::process::ExitStatusExt;
    assert!(
        status.success() || status.signal() == Some(libc::SIGPIPE),
        "pmap trace | head -3: tracer ended with {status}\n{}",
        t.stderr().join("\n")
    );
    let noise: Vec<String> = t
        .stderr()
        .into_iter()
        .filter(|l| {
            l.contains("panicked") || l.contains("Broken pipe") || l.contains("os error 32")
        })
        .collect();
    assert!(
        noise.is_empty(),
        "broken pipe noise on stderr:\n{}",
        noise.join("\n")
    );
}

fn unsafe_kill(pid: u32, sig: i32) -> i32 {
    // SAFETY: signalling a child of this test.
    unsafe { libc::kill(pid as i32, sig) }
}

#[test]
fn missing_pid_is_an_error() {
    let _serial = serial();
    let pid = unused_pid();
    let mut t = Tracer::spawn(&[&pid.to_string()]);
    let status = t.wait_exit(Duration::from_secs(20));
    assert!(
        !status.success(),
        "pmap trace {pid} (no such process) exited with {status}"
    );
    let err = t.stderr().join("\n");
    assert!(
        err.contains(&pid.to_string()),
        "the error does not name pid {pid}: {err:?}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        t.stdout().iter().all(|l| !l.starts_with("--- table")),
        "a table was printed for a missing pid"
    );
}

/// A shell script that stops itself, then execs the workload: the tracer
/// announces the exec, re-seeds, and its tables stay exact.
#[test]
fn exec_reseeds_and_stays_exact() {
    let _serial = serial();
    let workload = pmap_tests::workload_bin("trace_workload");
    let script = r#"read line; kill -STOP $$; exec "$0" --seed 11 --ops 600 --checkpoint-every 200 --start now"#;
    let mut wl = Workload::spawn(Command::new("bash").arg("-c").arg(script).arg(&workload));
    let pid = wl.pid();
    let mut t = Tracer::spawn(&[&pid.to_string()]);
    t.wait_tracing(Duration::from_secs(60));
    wl.release();

    let mut checkpoints = 0;
    let mut exec_table_line = None;
    loop {
        match wl.wait_event(Duration::from_secs(60)) {
            Event::Stopped => {
                let table = t.request_table(pid);
                let reference = reference_pmap(pid, &[]);
                assert_table_matches(
                    &table,
                    &reference,
                    &format!("exec test checkpoint {checkpoints}"),
                    &t,
                );
                if checkpoints == 0 {
                    assert!(
                        table.body[0].contains("bash"),
                        "first checkpoint is the shell: {}",
                        table.body[0]
                    );
                    exec_table_line = Some(table.line);
                } else {
                    assert!(
                        table.body[0].contains("trace_workload"),
                        "after exec: {}",
                        table.body[0]
                    );
                }
                checkpoints += 1;
                wl.cont();
            }
            Event::Exited(0) => break,
            other => panic!(
                "exec target ended with {other:?}: {}",
                wl.stderr().join("\n")
            ),
        }
    }
    assert_eq!(checkpoints, 1 + 5, "the shell's stop, then the workload's");
    let status = t.wait_exit(Duration::from_secs(30));
    assert!(
        status.success(),
        "pmap trace exited with {status}\n{}",
        t.context()
    );
    let out = t.stdout();
    let from = exec_table_line.expect("first table");
    let announced = non_table_lines(&out[from..])
        .into_iter()
        .any(|(_, l)| l.to_lowercase().contains("exec"));
    assert!(
        announced,
        "no exec announced between the shell's table and the workload's\n{}",
        t.context()
    );
    let summary = t.summary(pid);
    assert_eq!(
        summary.corrections,
        0,
        "{}\n{}",
        summary.text.join("\n"),
        t.context()
    );
    assert_eq!(summary.lost, 0, "{}", summary.text.join("\n"));
}

/// Two tracers on one target at once: both see every change.
#[test]
fn two_tracers_both_exact() {
    let _serial = serial();
    let mut wl = Workload::spawn_bin(
        "trace_workload",
        &["--seed", "21", "--ops", "1200", "--checkpoint-every", "300"],
    );
    let pid = wl.pid();
    let mut a = Tracer::spawn(&[&pid.to_string()]);
    let mut b = Tracer::spawn(&[&pid.to_string()]);
    a.wait_tracing(Duration::from_secs(60));
    b.wait_tracing(Duration::from_secs(60));
    wl.release();
    let mut checkpoints = 0;
    loop {
        match wl.wait_event(Duration::from_secs(60)) {
            Event::Stopped => {
                let reference = reference_pmap(pid, &[]);
                for (name, t) in [("first", &mut a), ("second", &mut b)] {
                    let table = t.request_table(pid);
                    assert_table_matches(
                        &table,
                        &reference,
                        &format!("{name} tracer, checkpoint {checkpoints}"),
                        t,
                    );
                }
                checkpoints += 1;
                wl.cont();
            }
            Event::Exited(0) => break,
            other => panic!("workload ended with {other:?}: {}", wl.stderr().join("\n")),
        }
    }
    for t in [&mut a, &mut b] {
        let status = t.wait_exit(Duration::from_secs(30));
        assert!(
            status.success(),
            "pmap trace exited with {status}\n{}",
            t.context()
        );
        let s = t.summary(pid);
        let ctx = t.context();
        assert_eq!(
            (s.lost, s.corrections),
            (0, 0),
            "{}\n{ctx}",
            s.text.join("\n")
        );
    }
}

/// Several PIDs: every table names its pid and equals `pmap` of that pid.
#[test]
fn several_pids_each_exact() {
    let _serial = serial();
    let args = ["--ops", "600", "--checkpoint-every", "200"];
    let mut a = Workload::spawn_bin("trace_workload", &[&["--seed", "41"], &args[..]].concat());
    let mut b = Workload::spawn_bin("trace_workload", &[&["--seed", "42"], &args[..]].concat());
    let (pa, pb) = (a.pid(), b.pid());
    let mut t = Tracer::spawn(&[&pa.to_string(), &pb.to_string()]);
    t.wait_tracing(Duration::from_secs(60));
    t.next_table(pa, "initial", Duration::from_secs(5));
    t.next_table(pb, "initial", Duration::from_secs(5));
    a.release();
    b.release();
    let mut checkpoints = 0;
    loop {
        // Both stop at the same checkpoints; compare when both are stopped.
        let ea = a.wait_event(Duration::from_secs(60));
        let eb = b.wait_event(Duration::from_secs(60));
        match (ea, eb) {
            (Event::Stopped, Event::Stopped) => {
                let tables = t.request_tables(&[pa, pb]);
                for (pid, table) in [pa, pb].into_iter().zip(&tables) {
                    let what = format!("pid {pid}, checkpoint {checkpoints}");
                    assert_table_matches(table, &reference_pmap(pid, &[]), &what, &t);
                }
                checkpoints += 1;
                a.cont();
                b.cont();
            }
            (Event::Exited(0), Event::Exited(0)) => break,
            other => panic!("workloads ended with {other:?}"),
        }
    }
    assert_eq!(checkpoints, 2 + 600 / 200);
    let status = t.wait_exit(Duration::from_secs(30));
    assert!(
        status.success(),
        "pmap trace exited with {status}\n{}",
        t.context()
    );
    for pid in [pa, pb] {
        let s = t.summary(pid);
        let ctx = t.context();
        assert_eq!(
            (s.lost, s.corrections),
            (0, 0),
            "{}\n{ctx}",
            s.text.join("\n")
        );
    }
    // Every delta line names one of the two pids.
    let out = t.stdout();
    for (_, l) in non_table_lines(&out) {
        if l.starts_with('+') {
            assert!(
                l.contains(&format!(" pid {pa} ")) || l.contains(&format!(" pid {pb} ")),
                "delta line without one of the traced pids: {l}"
            );
        }
    }
}

/// `--duration` ends the trace by itself: exit 0, final table, summary.
#[test]
fn duration_ends_cleanly() {
    let _serial = serial();
    let wl = idle_target();
    let pid = wl.pid();
    let mut t = Tracer::spawn(&["--duration", "1", &pid.to_string()]);
    t.wait_tracing(Duration::from_secs(60));
    let status = t.wait_exit(Duration::from_secs(15));
    assert!(
        status.success(),
        "--duration 1: exited with {status}\n{}",
        t.context()
    );
    let fin = t.next_table(pid, "final", Duration::from_secs(1));
    assert_table_matches(
        &fin,
        &reference_pmap(pid, &[]),
        "final table after --duration",
        &t,
    );
    t.summary(pid);
}

/// `--interval` prints the table periodically, each one exact.
#[test]
fn interval_prints_exact_tables() {
    let _serial = serial();
    let wl = idle_target();
    let pid = wl.pid();
    let mut t = Tracer::spawn(&["--interval", "0.2", &pid.to_string()]);
    t.wait_tracing(Duration::from_secs(60));
    let reference = reference_pmap(pid, &[]);
    for i in 0..3 {
        let table = t.next_table(pid, "interval", Duration::from_secs(5));
        assert_table_matches(&table, &reference, &format!("interval table {i}"), &t);
    }
    t.signal(libc::SIGINT);
    assert!(t.wait_exit(Duration::from_secs(15)).success());
}

/// `--no-initial-table`: the ready line comes, no table before it.
#[test]
fn no_initial_table() {
    let _serial = serial();
    let wl = idle_target();
    let pid = wl.pid();
    let mut t = Tracer::spawn(&["--no-initial-table", &pid.to_string()]);
    t.wait_tracing(Duration::from_secs(60));
    let table = t.request_table(pid);
    assert_table_matches(&table, &reference_pmap(pid, &[]), "SIGUSR1 table", &t);
    let initial = parse_tables(&t.stdout())
        .into_iter()
        .filter(|t| t.reason == "initial")
        .count();
    assert_eq!(initial, 0, "an initial table was printed\n{}", t.context());
    t.signal(libc::SIGTERM);
    assert!(t.wait_exit(Duration::from_secs(15)).success());
}

/// `--show-failed` prints failed calls too; the summary counts them either way.
#[test]
fn show_failed_prints_failed_calls() {
    let _serial = serial();
    let mut wl = Workload::spawn_bin(
        "trace_workload",
        &[
            "--seed",
            "2",
            "--ops",
            "800",
            "--checkpoint-every",
            "100000",
        ],
    );
    let pid = wl.pid();
    let mut t = Tracer::spawn(&["--show-failed", &pid.to_string()]);
    t.wait_tracing(Duration::from_secs(60));
    wl.release();
    loop {
        match wl.wait_event(Duration::from_secs(60)) {
            Event::Stopped => wl.cont(),
            Event::Exited(0) => break,
            other => panic!("workload ended with {other:?}"),
        }
    }
    // The workload's own count of failed calls it made (mmap probes that
    // find the room taken, mremaps across regions, refused advice...).
    let failed_ops: u64 = wl.op_counts().iter().map(|(_, _, f)| f).sum();
    assert!(
        failed_ops > 0,
        "the workload made no failing call: {:?}",
        wl.op_counts()
    );
    assert!(t.wait_exit(Duration::from_secs(30)).success());
    let out = t.stdout();
    let shown = non_table_lines(&out)
        .into_iter()
        .filter(|(_, l)| l.starts_with('+') && l.contains(" = -1 E"))
        .count();
    assert!(
        shown > 0,
        "--show-failed printed no failed call\n{}",
        t.context()
    );
    let s = t.summary(pid);
    let counted: u64 = s
        .text
        .iter()
        .filter(|l| l.starts_with("calls:"))
        .flat_map(|l| l.split('(').skip(1))
        .filter_map(|p| number_after(p, ""))
        .sum();
    assert!(
        counted >= shown as u64,
        "summary counts {counted} failed calls, {shown} were printed\n{}",
        s.text.join("\n")
    );
}
