//! An execve in attach mode: the table printed after it is the map the
//! new program starts with, read by the kernel program at the exec; the
//! loader's calls follow it as deltas, and they add up. No delta after it
//! is of a call that ended before the table was read (the new program's
//! loader calls used to be printed after a table that already held their
//! effect, with earlier times; then they were only counted, in the table).
//!
//! Needs root and the eBPF programs, like every trace test.

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    time::Duration,
};

use pmap_tests::{program, trace_harness::Tracer};
use serde_json::Value;

fn key(r: &Value) -> String {
    ["start", "end", "perms", "offset", "dev", "inode", "name"]
        .iter()
        .map(|k| r[*k].to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn deltas_after_an_exec_table_apply_to_it() {
    let python = program("python3", "python3");
    let script = format!(
        "read line; exec {} -c 'import mmap, time\nprint(\"started\", flush=True)\ntime.sleep(0.5)\nm = [mmap.mmap(-1, 1 << 20) for _ in range(8)]\ntime.sleep(0.3)'",
        python.display()
    );
    let mut sh = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting sh");
    let pid = sh.id().to_string();
    let mut tracer = Tracer::spawn(&["--json", &pid]);
    tracer.wait_tracing(Duration::from_secs(60));
    // The tracer is held while the new program starts, so that its exec
    // record and the loader's calls reach it together and the table after
    // the exec is read when the loader is done (as on a busy machine).
    tracer.signal(libc::SIGSTOP);
    sh.stdin
        .take()
        .expect("stdin piped")
        .write_all(b"go\n")
        .expect("letting sh exec");
    // Started: the loader is done.
    let mut started = String::new();
    BufReader::new(sh.stdout.take().expect("stdout piped"))
        .read_line(&mut started)
        .expect("reading python3");
    assert_eq!(started.trim(), "started");
    tracer.signal(libc::SIGCONT);
    assert!(
        sh.wait().expect("sh").success(),
        "the traced program failed"
    );
    let status = tracer.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "pmap trace failed: {}", tracer.context());
    let lines: Vec<Value> = tracer
        .stdout()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let at = lines
        .iter()
        .position(|v| v["type"] == "table" && v["reason"] == "exec")
        .unwrap_or_else(|| panic!("no table after the exec: {}", tracer.context()));
    let mut model: BTreeSet<String> = lines[at]["regions"]
        .as_array()
        .expect("regions")
        .iter()
        .map(key)
        .collect();
    let libc = |r: &Value| {
        r["name"]
            .as_str()
            .is_some_and(|n| n.ends_with("/libc.so.6"))
    };
    assert!(
        !lines[at]["regions"]
            .as_array()
            .expect("regions")
            .iter()
            .any(libc),
        "the exec table already holds libc, which the loader maps after the exec: {}",
        tracer.context()
    );
    let exec_delta = lines[..at]
        .iter()
        .rev()
        .find(|v| v["type"] == "delta" && v["cause"] == "exec")
        .unwrap_or_else(|| panic!("no exec delta: {}", tracer.context()));
    assert_eq!(
        exec_delta["exact"],
        true,
        "the exec's map was not read at the exec: {exec_delta}\n{}",
        tracer.context()
    );
    let table_t = lines[at]["t"].as_f64().expect("t");
    let mut checked = 0;
    for (i, d) in lines[at + 1..].iter().enumerate() {
        if d["type"] != "delta" {
            continue;
        }
        // A call that ended before the table's read is in the table.
        assert!(
            d["t"].as_f64().expect("t") >= table_t,
            "delta {} after the exec table (read at {table_t}) is of a call that ended before it:\n{d}\n{}",
            i + 1,
            tracer.context()
        );
        for r in d["removed"].as_array().expect("removed") {
            assert!(
                model.remove(&key(r)),
                "delta {} after the exec table removes a row that is not in it: {}\n{d}\n{}",
                i + 1,
                key(r),
                tracer.context()
            );
        }
        for r in d["added"].as_array().expect("added") {
            assert!(
                model.insert(key(r)),
                "delta {} after the exec table adds a row it already has: {}\n{d}\n{}",
                i + 1,
                key(r),
                tracer.context()
            );
        }
        checked += 1;
    }
    assert!(
        lines[at + 1..]
            .iter()
            .filter(|d| d["type"] == "delta")
            .any(|d| d["added"].as_array().is_some_and(|a| a.iter().any(libc))),
        "no delta after the exec table maps libc: {}",
        tracer.context()
    );
    let summary = lines
        .iter()
        .find(|v| v["type"] == "summary")
        .expect("summary");
    assert_eq!(
        summary["before_table"], 0,
        "calls left in the exec table: {summary}"
    );
    // python3's own eight 1 MiB maps come after its start-up, so some
    // deltas follow the table; a run with none checked nothing.
    assert!(
        checked >= 8,
        "only {checked} deltas after the exec table: {}",
        tracer.context()
    );
}
