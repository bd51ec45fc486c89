//! Launch mode on real programs: `pmap trace -- COMMAND` traces from the
//! first instruction. The initial table is the new program before the
//! dynamic loader ran (its binary, `ld-linux-x86-64.so.2`, `[vdso]`,
//! `[stack]`, no libc); the loader's mapping of libc then arrives as deltas;
//! the tracer exits 0 with a summary when the command exits; and the
//! command does not inherit the tracer's eBPF descriptors.
//!
//! Runs as root on a real kernel, with python3 and node installed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pmap_tests::trace_harness::{
    Tracer, assert_table_matches, bpf_objects_of, non_table_lines, reference_pmap, serial,
    wait_stopped_or_gone,
};

const LD_SO: &str = "ld-linux-x86-64.so.2";

fn program(name: &str) -> PathBuf {
    let package = match name {
        "node" => "nodejs",
        other => other,
    };
    pmap_tests::program(name, package)
}

/// The name the kernel shows for the program's own mapping.
fn mapped_path(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|e| panic!("canonicalize {}: {e}", p.display()))
}

fn basename(p: &Path) -> String {
    p.file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned()
}

/// The mapping column of a default-format pmap line.
fn mapping(line: &str) -> &str {
    // "0000555555554000      8K r---- python3.11": address, size, mode, name.
    let mut rest = line.trim_start();
    for _ in 0..3 {
        rest = rest
            .split_once(char::is_whitespace)
            .map_or("", |x| x.1)
            .trim_start();
    }
    rest
}

fn launch_text(prog: &Path, args: &[&str]) {
    let _serial = serial();
    let prog_s = prog.to_string_lossy().into_owned();
    let mut argv = vec!["--", prog_s.as_str()];
    argv.extend_from_slice(args);
    let mut t = Tracer::spawn(&argv);
    t.wait_tracing(Duration::from_secs(60));
    let initial = t.next_table(None, "initial", Duration::from_secs(10));
    let pid = initial.pid;

    // The child must not hold the tracer's eBPF objects (CLOEXEC).
    let held = bpf_objects_of(pid);
    assert!(
        held.is_empty(),
        "the launched command holds eBPF descriptors: {held:?}"
    );

    let body = &initial.body;
    let ctx = || format!("initial table:\n{}\n{}", body.join("\n"), t.context());
    assert!(
        body.first()
            .is_some_and(|h| h.starts_with(&format!("{pid}:"))),
        "header line: {}",
        ctx()
    );
    let names: Vec<&str> = body[1..body.len().saturating_sub(1)]
        .iter()
        .map(|l| mapping(l))
        .collect();
    let bin = basename(&mapped_path(prog));
    assert!(
        names.contains(&bin.as_str()),
        "program binary {bin} not in the initial table:\n{}",
        ctx()
    );
    assert!(
        names.contains(&LD_SO),
        "{LD_SO} not in the initial table:\n{}",
        ctx()
    );
    assert!(
        names.contains(&"[ stack ]"),
        "[ stack ] not in the initial table:\n{}",
        ctx()
    );
    assert!(
        !names.iter().any(|n| n.starts_with("libc.so")),
        "libc is already in the initial table: the program was not caught at its first instruction:\n{}",
        ctx()
    );

    let status = t.wait_exit(Duration::from_secs(60));
    assert!(
        status.success(),
        "pmap trace exited with {status}\n{}",
        t.context()
    );
    let out = t.stdout();
    let libc_delta = non_table_lines(&out[initial.line..])
        .into_iter()
        .any(|(_, l)| l.contains("libc.so.6"));
    assert!(
        libc_delta,
        "no delta mentions libc.so.6 being mapped\n{}",
        t.context()
    );
    let summary = t.summary(pid);
    assert_eq!(summary.lost, 0, "{}", summary.text.join("\n"));
    assert_eq!(
        summary.corrections,
        0,
        "{}\n{}",
        summary.text.join("\n"),
        t.context()
    );
}

#[test]
fn python3_from_first_instruction() {
    launch_text(
        &program("python3"),
        &["-c", "import ctypes, time; time.sleep(1.0)"],
    );
}

#[test]
fn node_from_first_instruction() {
    launch_text(&program("node"), &["-e", "setTimeout(() => {}, 1000)"]);
}

/// JSON names regions exactly (the default text format shows `[vdso]` as
/// `[ anon ]`), so `[vdso]` is checked here; also the `exit` record.
fn launch_json(prog: &Path, args: &[&str]) {
    let _serial = serial();
    let prog_s = prog.to_string_lossy().into_owned();
    let mut argv = vec!["--json", "--", prog_s.as_str()];
    argv.extend_from_slice(args);
    let mut t = Tracer::spawn(&argv);
    t.wait_tracing(Duration::from_secs(60));
    let status = t.wait_exit(Duration::from_secs(60));
    assert!(
        status.success(),
        "pmap trace --json exited with {status}\n{}",
        t.context()
    );

    let records: Vec<serde_json::Value> = t
        .stdout()
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    for r in &records {
        assert!(
            r.get("pid").and_then(|p| p.as_u64()).is_some(),
            "record without a pid: {r}"
        );
        assert!(
            r.get("t").and_then(|p| p.as_f64()).is_some(),
            "record without t: {r}"
        );
    }
    let kind = |r: &serde_json::Value| {
        r.get("type")
            .and_then(|t| t.as_str())
            .unwrap_or("")
            .to_string()
    };
    let name = |r: &serde_json::Value| {
        r.get("name")
            .and_then(|n| n.as_str())
            .unwrap_or("")
            .to_string()
    };

    let first = records.first().expect("some output");
    assert_eq!(kind(first), "table", "first record: {first}");
    assert_eq!(
        first.get("reason").and_then(|r| r.as_str()),
        Some("initial"),
        "{first}"
    );
    let regions = first
        .get("regions")
        .and_then(|r| r.as_array())
        .expect("table has regions");
    let names: Vec<String> = regions.iter().map(name).collect();
    let bin = mapped_path(prog).to_string_lossy().into_owned();
    let show = names.join("\n");
    assert!(
        names.contains(&bin),
        "{bin} not in the initial table:\n{show}"
    );
    assert!(
        names.iter().any(|n| n.ends_with(&format!("/{LD_SO}"))),
        "{LD_SO} not in the initial table:\n{show}"
    );
    assert!(
        names.iter().any(|n| n == "[vdso]"),
        "[vdso] not in the initial table:\n{show}"
    );
    assert!(
        names.iter().any(|n| n == "[stack]"),
        "[stack] not in the initial table:\n{show}"
    );
    assert!(
        !names.iter().any(|n| n.contains("/libc.so")),
        "libc already in the initial table:\n{show}"
    );

    let libc_added = records.iter().filter(|r| kind(r) == "delta").any(|r| {
        r.get("added")
            .and_then(|a| a.as_array())
            .is_some_and(|a| a.iter().any(|x| name(x).ends_with("/libc.so.6")))
    });
    assert!(libc_added, "no delta adds libc.so.6\n{}", t.context());
    assert!(
        records.iter().any(|r| kind(r) == "exit"),
        "no exit record\n{}",
        t.context()
    );
    let last = records.last().expect("some output");
    assert_eq!(kind(last), "summary", "last record: {last}");
    assert_eq!(last.get("lost").and_then(|v| v.as_u64()), Some(0), "{last}");
    assert_eq!(
        last.get("corrections").and_then(|v| v.as_u64()),
        Some(0),
        "{last}"
    );
}

#[test]
fn python3_json_initial_map() {
    launch_json(&program("python3"), &["-c", "import time; time.sleep(0.2)"]);
}

#[test]
fn node_json_initial_map() {
    launch_json(&program("node"), &["-e", "setTimeout(() => {}, 200)"]);
}

/// Launch mode stays exact too: the seeded workload started by the tracer
/// (so not our child: its stops are seen in /proc/PID/stat) is checked at
/// every checkpoint against `pmap`.
#[test]
fn launched_workload_stays_exact() {
    let _serial = serial();
    let bin = pmap_tests::workload_bin("trace_workload");
    let bin_s = bin.to_string_lossy().into_owned();
    let args = [
        "--",
        &bin_s,
        "--seed",
        "8",
        "--ops",
        "1000",
        "--checkpoint-every",
        "250",
        "--start",
        "now",
    ];
    let mut t = Tracer::spawn(&args);
    t.wait_tracing(Duration::from_secs(60));
    let pid = t.next_table(None, "initial", Duration::from_secs(10)).pid;
    let mut checkpoints = 0;
    while wait_stopped_or_gone(pid, Duration::from_secs(60)) {
        let table = t.request_table(pid);
        let what = format!("launched workload, checkpoint {checkpoints}");
        assert_table_matches(&table, &reference_pmap(pid, &[]), &what, &t);
        checkpoints += 1;
        // SAFETY: continuing the stopped workload the tracer launched.
        unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    }
    assert_eq!(checkpoints, 2 + 1000 / 250, "checkpoints seen");
    let status = t.wait_exit(Duration::from_secs(30));
    assert!(
        status.success(),
        "pmap trace exited with {status}\n{}",
        t.context()
    );
    let s = t.summary(pid);
    assert_eq!(
        (s.lost, s.corrections),
        (0, 0),
        "{}\n{}",
        s.text.join("\n"),
        t.context()
    );
}

/// A program that maps its libraries and exits before the tracer has read
/// a single event (`/bin/true`): its loader's file mappings are still
/// deltas, named, and none is left out as an unnamed file (they used to
/// be: the tracer named file rows by asking the process, which was gone).
#[test]
fn a_program_gone_before_the_tracer_looks_still_gets_its_loader_deltas() {
    let _serial = serial();
    let prog = pmap_tests::program("true", "coreutils");
    let prog_s = prog.to_string_lossy().into_owned();
    let mut t = Tracer::spawn(&["--json", "--", prog_s.as_str()]);
    t.wait_tracing(Duration::from_secs(60));
    let status = t.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "pmap trace failed: {}", t.context());
    let records: Vec<serde_json::Value> = t
        .stdout()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let deltas: Vec<&serde_json::Value> = records.iter().filter(|r| r["type"] == "delta").collect();
    let added_names: Vec<&str> = deltas
        .iter()
        .flat_map(|d| d["added"].as_array().expect("added").iter())
        .filter(|r| r["inode"].as_u64() != Some(0))
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert!(
        added_names.iter().any(|n| n.ends_with("/libc.so.6")),
        "no delta maps libc.so.6: {added_names:?}\n{}",
        t.context()
    );
    assert!(
        added_names.iter().all(|n| !n.is_empty()),
        "a file row without a name: {added_names:?}\n{}",
        t.context()
    );
    // Every successful mapping call is shown: a file the tracer does not
    // map itself (the locale archive, ld.so.cache) that can no longer be
    // named once the process is gone is shown with its descriptor for a
    // name, counted as `name_unknown`.
    let summary = records
        .iter()
        .find(|r| r["type"] == "summary")
        .unwrap_or_else(|| panic!("no summary: {}", t.context()));
    let shown = deltas.iter().filter(|d| d["syscall"] == "mmap").count() as u64;
    let calls = summary["calls"]["mmap"].as_u64().expect("mmap calls");
    let failed = summary["failed"]["mmap"]
        .as_u64()
        .expect("failed mmap calls");
    assert!(
        shown + failed == calls && calls > 0,
        "{calls} mmap calls ({failed} failed), {shown} shown: some left out\n{}",
        t.context()
    );
    // And so the munmap of such a file shows it go (not `map unchanged
    // now`, as when its mmap was left out).
    let empty_munmaps: Vec<&&serde_json::Value> = deltas
        .iter()
        .filter(|d| d["syscall"] == "munmap" && d["ret"] == 0)
        .filter(|d| d["removed"].as_array().is_none_or(|r| r.is_empty()))
        .collect();
    assert!(
        empty_munmaps.is_empty(),
        "munmaps that removed nothing: {empty_munmaps:?}\n{}",
        t.context()
    );
}
