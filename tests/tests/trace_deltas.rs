//! Every delta of `pmap trace` is exactly what its call did: compared, call
//! by call, with what the traced program itself recorded of its map just
//! before and just after each call (`exact_workload`, which reads its map
//! with PROCMAP_QUERY into buffers made before the calls).
//!
//! Needs root and the eBPF programs, like every trace test.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    time::Duration,
};

use pmap_tests::{trace_harness::Tracer, workload_bin};
use serde_json::Value;

/// A row as both sides print it, without the derived size.
fn row(v: &Value) -> String {
    let f = |k: &str| v.get(k).map(|x| x.to_string()).unwrap_or_default();
    format!(
        "{} {} {} {} {} {} {}",
        f("start"),
        f("end"),
        f("perms"),
        f("offset"),
        f("dev"),
        f("inode"),
        f("name")
    )
}

fn rows(v: &Value, key: &str) -> Vec<String> {
    let mut r: Vec<String> = v
        .get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().map(row).collect())
        .unwrap_or_default();
    r.sort();
    r
}

/// (syscall, ret, first two arguments): what ties a delta to a call.
fn key(v: &Value) -> (String, i64, u64, u64) {
    let args = v.get("args").and_then(Value::as_array);
    let arg = |i: usize| {
        args.and_then(|a| a.get(i))
            .and_then(Value::as_u64)
            .unwrap_or(u64::MAX)
    };
    (
        v.get("syscall")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        v.get("ret").and_then(Value::as_i64).unwrap_or(i64::MIN),
        arg(0),
        arg(1),
    )
}

struct Outcome {
    calls: usize,
    shown: usize,
    /// Deltas that are not what the call did, with what went wrong.
    wrong: Vec<String>,
    /// Of `shown`, those that say they are exact.
    exact: usize,
    /// Of `wrong`, those that said they were exact (the rest said why not).
    wrong_exact: usize,
    summary: Value,
}

/// The workload's record of each call against the trace's deltas of the
/// same thread, in order.
fn compare(recorded: &[Value], deltas: &[&Value], tracer: &Tracer, o: &mut Outcome) {
    // The deltas of the setup (before the first recorded call) are not
    // ours: align on the first call that changed the map, then take back
    // the calls before it that have a delta too (changing nothing, they
    // may have none).
    let changed = |c: &Value| !rows(c, "removed").is_empty() || !rows(c, "added").is_empty();
    let Some(mut i) = recorded.iter().position(changed) else {
        return;
    };
    let mut j = deltas
        .iter()
        .position(|d| key(d) == key(&recorded[i]))
        .unwrap_or_else(|| panic!("no delta for call {i}: {}", tracer.context()));
    while i > 0 && j > 0 && key(deltas[j - 1]) == key(&recorded[i - 1]) {
        (i, j) = (i - 1, j - 1);
    }
    o.calls += recorded.len();
    for c in &recorded[i..] {
        let (removed, added) = (rows(c, "removed"), rows(c, "added"));
        match deltas.get(j) {
            Some(d) if key(d) == key(c) => {
                j += 1;
                o.shown += 1;
                let exact = d["exact"] == true;
                o.exact += usize::from(exact);
                let (r, a) = (rows(d, "removed"), rows(d, "added"));
                if (&r, &a) != (&removed, &added) {
                    o.wrong_exact += usize::from(exact);
                    o.wrong.push(format!(
                        "call {} tid {} {:?}:\n  kernel: -{removed:?}\n          +{added:?}\n  trace:  -{r:?}\n          +{a:?} (exact {}, fallback {})",
                        c["i"], c["tid"], key(c), d["exact"], d["fallback"]
                    ));
                }
            }
            // Not shown: right only if the call changed nothing.
            _ if removed.is_empty() && added.is_empty() => {}
            other => {
                o.wrong_exact += 1;
                o.wrong.push(format!(
                    "call {} tid {} {:?} changed the map but has no delta (next delta: {:?}):\n  -{removed:?}\n  +{added:?}",
                    c["i"],
                    c["tid"],
                    key(c),
                    other.map(|d| key(d))
                ))
            }
        }
    }
}

fn run(seed: u64, calls: u64, threads: u64, extra: &[&str]) -> Outcome {
    let mut w = Command::new(workload_bin("exact_workload"))
        .args(["--seed", &seed.to_string(), "--calls", &calls.to_string()])
        .args(["--threads", &threads.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting exact_workload");
    let mut out = BufReader::new(w.stdout.take().expect("stdout piped"));
    let mut ready = String::new();
    out.read_line(&mut ready).expect("reading the workload");
    assert_eq!(ready.trim(), "ready", "the workload did not start");
    let pid = w.id().to_string();
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    args.push(&pid);
    let mut tracer = Tracer::spawn(&args);
    tracer.wait_tracing(Duration::from_secs(60));
    w.stdin
        .take()
        .expect("stdin piped")
        .write_all(b"go\n")
        .expect("starting the calls");
    let recorded: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(&l.expect("workload output")).expect("workload JSON"))
        .collect();
    assert!(w.wait().expect("workload").success(), "the workload failed");
    let status = tracer.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "pmap trace failed: {}", tracer.context());
    let lines: Vec<Value> = tracer
        .stdout()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let summary = lines
        .iter()
        .find(|v| v["type"] == "summary")
        .cloned()
        .unwrap_or_else(|| panic!("no summary: {}", tracer.context()));
    let mut o = Outcome {
        calls: 0,
        shown: 0,
        wrong: Vec::new(),
        exact: 0,
        wrong_exact: 0,
        summary,
    };
    let mut tids: Vec<&Value> = recorded.iter().map(|c| &c["tid"]).collect();
    tids.dedup();
    assert_eq!(tids.len() as u64, threads, "one run of calls per thread");
    for tid in tids {
        let mine: Vec<Value> = recorded
            .iter()
            .filter(|c| &c["tid"] == tid)
            .cloned()
            .collect();
        let deltas: Vec<&Value> = lines
            .iter()
            .filter(|v| v["type"] == "delta" && v["cause"] == "syscall" && &v["tid"] == tid)
            .collect();
        compare(&mine, &deltas, &tracer, &mut o);
    }
    o
}

fn report(what: &str, o: &Outcome) {
    eprintln!(
        "{what}: {} calls, {} deltas shown, {} exact, {} wrong ({} of them marked exact); \
         summary: exact {} fallbacks {}",
        o.calls,
        o.shown,
        o.exact,
        o.wrong.len(),
        o.wrong_exact,
        o.summary["exact_deltas"],
        o.summary["fallback_deltas"]
    );
}

fn check(seed: u64, calls: u64, extra: &[&str]) {
    let o = run(seed, calls, 1, extra);
    report(&format!("seed {seed}"), &o);
    assert_eq!(o.calls as u64, calls);
    // Most calls change the map; a run that showed few checked little.
    assert!(
        o.shown * 2 > o.calls,
        "only {} of {} calls had a delta",
        o.shown,
        o.calls
    );
    assert!(
        o.wrong.is_empty(),
        "seed {seed}: {} of {} deltas are not what the call did:\n{}",
        o.wrong.len(),
        o.calls,
        o.wrong[..o.wrong.len().min(8)].join("\n")
    );
}

#[test]
fn every_delta_is_what_its_call_did() {
    for seed in [1, 2, 3] {
        check(seed, 2000, &[]);
    }
}

#[test]
fn every_delta_is_exact_with_stacks_too() {
    check(4, 1000, &["--stacks"]);
}

/// Four threads, each making its calls in a window of its own (and reading
/// the whole map after each one, which contends for the map lock far more
/// than real programs do): a delta that says it is exact shows only its
/// own call's change; one the tracer could not capture (the lock held by
/// another thread at the call's exit) says why. How often each happens is
/// printed; the tables' exactness under threads is trace_exact's.
#[test]
fn with_threads_exact_deltas_show_only_their_call() {
    let o = run(5, 1000, 4, &[]);
    report("4 threads", &o);
    assert_eq!(o.calls, 4000);
    assert!(
        o.shown * 2 > o.calls,
        "only {} of {} calls had a delta",
        o.shown,
        o.calls
    );
    // Known gap: a fallback's rows (read from the kernel later than its
    // call) can disagree with the model beyond the ranges the tracer marks
    // uncertain, and a later exact delta there is then off. Measured at
    // 0-0.1% of exact deltas here since the kernel program waits out a
    // busy map lock; more than 1% is a regression.
    assert!(
        o.wrong_exact * 100 <= o.exact,
        "{} of {} deltas marked exact are not what the call did:\n{}",
        o.wrong_exact,
        o.exact,
        o.wrong[..o.wrong.len().min(8)].join("\n")
    );
    // Every delta says whether it is exact. Here, with every thread
    // reading the whole map after each call, the map lock is often taken
    // at a call's exit; the kernel program waits up to 100 us for it, and
    // past that the call falls back (1-8% of calls on this 2-core machine,
    // more when it is loaded and lock holders are preempted), and each
    // fallback makes the next calls on the same addresses uncertain for as
    // long as the tracer lags behind: 36-90% of deltas were exact in the
    // runs measured (25-50% before the wait, under the same load). Under
    // 20% is a regression.
    assert!(
        o.exact * 10 >= o.shown * 2,
        "only {} of {} deltas are exact",
        o.exact,
        o.shown
    );
}
