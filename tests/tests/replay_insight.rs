//! What a recording keeps of the trace's insight and of its processes:
//! the stacks named as the trace named them (the program may be gone or
//! rebuilt at replay), the notes under deltas and after tables, the
//! processes that joined by `--comm` and their ids in their own PID
//! namespace, and `pmap replay --report`, the trace's HTML report again.
//!
//! Root and a real kernel are needed (the tracer's eBPF backend).

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use pmap_tests::{
    browser::chromium,
    recording::{lines, pmap, rec_path, text},
    trace_harness::{Tracer, diff, serial},
    workload_bin,
};
use serde_json::Value;

/// `pmap trace OPTIONS --record REC -o OUT -- WORKLOAD ARGS`; returns
/// (the recording, what the trace printed).
fn record(name: &str, opts: &[&str], workload: &str, args: &[&str]) -> (PathBuf, Vec<String>) {
    let rec = rec_path(&format!("{name}.pmaprec"));
    let out_file = rec_path(&format!("{name}.out"));
    let (rec_s, out_s) = (rec.to_string_lossy(), out_file.to_string_lossy());
    let bin = workload_bin(workload);
    let bin_s = bin.to_string_lossy();
    let mut all = vec!["trace", "--record", &rec_s, "-o", &out_s];
    all.extend_from_slice(opts);
    all.extend_from_slice(&["--", &bin_s]);
    all.extend_from_slice(args);
    let out = pmap(&all);
    assert!(out.status.success(), "pmap {all:?}: {}", text(&out.stderr));
    let printed = std::fs::read(&out_file).expect("reading the trace's output");
    (rec, lines(&printed))
}

/// `pmap replay ARGS REC`, which must succeed; its lines.
fn replay(args: &[&str], rec: &Path) -> Vec<String> {
    let rec_s = rec.to_string_lossy();
    let mut all = vec!["replay"];
    all.extend_from_slice(args);
    all.push(&rec_s);
    let out = pmap(&all);
    assert!(out.status.success(), "pmap {all:?}: {}", text(&out.stderr));
    lines(&out.stdout)
}

fn same(what: &str, want: &[String], got: &[String]) {
    assert!(
        want == got,
        "{what}: the replay differs from the trace (- trace, + replay):\n{}",
        diff(want, got)
    );
}

/// With `--stacks`, each delta's frames are printed under it by name; with
/// `--provenance`, lines follow each table. The replay prints the same
/// lines: the names were taken when the trace ran, not looked up again.
#[test]
fn replay_prints_the_stacks_by_the_names_the_trace_gave_them() {
    let _serial = serial();
    let opts = ["--stacks", "--provenance", "--interval", "0.2"];
    let (rec, printed) = record("stacks", &opts, "leaky", &[]);
    let frames: Vec<&String> = printed
        .iter()
        .filter(|l| l.starts_with("    at "))
        .collect();
    assert!(
        frames.iter().any(|l| l.contains("leaky::leak_big+")),
        "no frame of leak_big named in the trace:\n{}",
        printed.join("\n")
    );
    assert!(
        printed.iter().any(|l| l.starts_with("    provenance: ")),
        "no --provenance line after a table in the trace"
    );
    same("text with --stacks", &printed, &replay(&[], &rec));
    let info = replay(&["--info"], &rec);
    assert!(
        info.iter().any(|l| l == "format: version 2"),
        "{}",
        info.join("\n")
    );

    // W^X notes under the deltas, with their call sites (a tiny JIT).
    let (rec, printed) = record("jit", &["--stacks"], "tiny_jit", &["10", "0"]);
    assert!(
        printed
            .iter()
            .any(|l| l.contains("W^X: W->X flip of") && l.contains("by tiny_jit::")),
        "no W^X note with its call site in the trace"
    );
    same("W^X notes", &printed, &replay(&[], &rec));

    // JSON: `frames`, `call_site` and the rest, record for record.
    let (rec, printed) = record("stacks_json", &["--stacks", "--json"], "leaky", &[]);
    let sites: Vec<Value> = printed
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
        .filter(|v| {
            v["call_site"]
                .as_str()
                .is_some_and(|s| s.contains("leaky::"))
        })
        .collect();
    assert!(!sites.is_empty(), "no call site of the program in the JSON");
    same("JSON with --stacks", &printed, &replay(&["--json"], &rec));

    // The names stay when the program is gone: a recording of a copy,
    // then the copy removed (its frames can no longer be looked up).
    // (Beside the workloads: a temporary directory may forbid running.)
    let copy = workload_bin("leaky").with_file_name(format!("leaky-gone-{}", std::process::id()));
    std::fs::copy(workload_bin("leaky"), &copy).expect("copying leaky");
    let out_file = rec_path("gone.out");
    let rec = rec_path("gone.pmaprec");
    let (r, o, c) = (
        rec.to_string_lossy().into_owned(),
        out_file.to_string_lossy().into_owned(),
        copy.to_string_lossy().into_owned(),
    );
    let out = pmap(&["trace", "--stacks", "--record", &r, "-o", &o, "--", &c]);
    assert!(out.status.success(), "pmap trace: {}", text(&out.stderr));
    let printed = lines(&std::fs::read(&out_file).expect("the trace's output"));
    std::fs::remove_file(&copy).expect("removing the copy");
    assert!(
        printed.iter().any(|l| l.contains("leaky::leak_big+")),
        "the copy's frames were named in the trace"
    );
    same("the program removed", &printed, &replay(&[], &rec));
    // --leaks takes its call sites from the recording too.
    let leaks = replay(&["--leaks"], &rec);
    assert!(
        leaks
            .iter()
            .any(|l| l.trim_start().starts_with("768K") && l.contains("leaky::leak_big+")),
        "leak_big's 768K by name, the program removed:\n{}",
        leaks.join("\n")
    );
}

/// A process that joins by `--comm`, in a PID namespace of its own: the
/// replay prints its `joined` record, and its records give its own id
/// (`ns_pid`) as the trace's did.
#[test]
fn replay_prints_joined_processes_and_their_own_ids() {
    let _serial = serial();
    let name = format!("pmaprj{}", std::process::id() % 100_000);
    let copy = workload_bin("fork_children").with_file_name(&name);
    std::fs::copy(workload_bin("fork_children"), &copy).expect("copying the workload");
    let rec = rec_path("joined.pmaprec");
    let rec_s = rec.to_string_lossy().into_owned();
    let mut t = Tracer::spawn(&["--comm", &name, "--json", "--record", &rec_s]);
    t.wait_tracing(Duration::from_secs(60));
    let mut c = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(&copy)
        .arg("1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting unshare (Debian package util-linux)");
    let mut out = BufReader::new(c.stdout.take().expect("stdout"));
    let mut l = String::new();
    out.read_line(&mut l).expect("the ready line");
    assert_eq!(l.trim(), "ready 1", "the first process of its namespace");
    writeln!(c.stdin.as_mut().expect("stdin"), "go").expect("go");
    for _ in out.lines().map_while(Result::ok) {}
    assert!(c.wait().expect("the workload").success());
    std::thread::sleep(Duration::from_millis(300));
    t.signal(libc::SIGINT);
    let status = t.wait_exit(Duration::from_secs(60));
    let _ = std::fs::remove_file(&copy);
    assert!(status.success(), "pmap trace failed: {}", t.context());
    let printed = t.stdout();
    let records: Vec<Value> = printed
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let joined = records
        .iter()
        .find(|r| r["type"] == "joined" && r["by"] == "comm")
        .unwrap_or_else(|| panic!("the process did not join: {printed:?}"));
    let pid = joined["pid"].clone();
    assert!(
        records
            .iter()
            .any(|r| r["type"] == "delta" && r["pid"] == pid && r["ns_pid"] == 1),
        "no delta of pid {pid} with its own id 1: {printed:?}"
    );
    same(
        "--comm in a PID namespace",
        &printed,
        &replay(&["--json"], &rec),
    );
    // The text form names the join too.
    let shown = replay(&[], &rec);
    assert!(
        shown.iter().any(|l| l.contains(&format!(
            "pid {pid} joined the trace: its command name matches --comm"
        ))),
        "{}",
        shown.join("\n")
    );
}

/// The part of a report from heading `h3` to the next heading.
fn section<'a>(html: &'a str, h3: &str) -> &'a str {
    let at = html
        .find(&format!("<h3>{h3}"))
        .unwrap_or_else(|| panic!("no {h3} section in the report"));
    let end = html[at + 4..].find("<h").map_or(html.len(), |e| at + 4 + e);
    &html[at..end]
}

/// `pmap replay --report` writes the report `pmap trace --report` wrote:
/// the same call sites (the functions of `leaky` that map, with their
/// bytes), W^X and churn findings; it renders in a real browser without
/// errors. A path that cannot be written is refused before anything.
#[test]
fn replay_report_is_the_trace_report_from_a_recording() {
    let _serial = serial();
    let live = rec_path("live.html");
    let live_s = live.to_string_lossy().into_owned();
    let (rec, _) = record("report", &["--stacks", "--report", &live_s], "leaky", &[]);
    let page = rec_path("replayed.html");
    let page_s = page.to_string_lossy().into_owned();
    let out = pmap(&["replay", "--report", &page_s, &rec.to_string_lossy()]);
    assert!(
        out.status.success(),
        "replay --report: {}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "the report goes to its file only");
    let (want, got) = (
        std::fs::read_to_string(&live).expect("the trace's report"),
        std::fs::read_to_string(&page).expect("the replayed report"),
    );
    let sites = section(&got, "Biggest call sites");
    for (function, bytes) in [("leak_big", "768K"), ("leak_small", "128K")] {
        assert!(
            sites.contains(&format!("<tr><td>{bytes}</td>"))
                && sites.contains(&format!("leaky::{function}+")),
            "{function}'s {bytes} not among the call sites:\n{sites}"
        );
    }
    for h3 in ["Biggest call sites", "W^X", "Churn"] {
        assert_eq!(section(&want, h3), section(&got, h3), "the {h3} section");
    }
    let (console, dom) = chromium(&page, &["--dump-dom"]);
    assert!(console.is_empty(), "console messages:\n{console}");
    assert!(
        dom.contains("<svg") && dom.contains("leaky::leak_small+"),
        "the page as the browser built it:\n{dom}"
    );

    let out = pmap(&[
        "replay",
        "--report",
        "/nonexistent-dir/r.html",
        "/nonexistent-recording",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "--report /nonexistent-dir/r.html: the directory /nonexistent-dir does not exist"
        ),
        "the path is checked first: {err}"
    );
}
