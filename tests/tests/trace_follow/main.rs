//! `pmap trace -f`: every process a traced process creates is traced from
//! its first instruction, each with its own deltas, tables and summary; and
//! the focus filters (`--syscall`, `--min-size`, `--tid`, `--name`) narrow
//! the deltas printed, never the tables or the counts.
//!
//! Needs root and the eBPF programs, like every trace test.

mod held;
mod records;
mod workload;

use std::{
    collections::{HashMap, HashSet},
    process::Command,
    time::Duration,
};

use held::trace_a_child_gone_while_held;
use pmap_tests::{
    trace_harness::{Tracer, assert_table_matches, parse_summary, reference_pmap},
    workload_bin,
};
use records::{MIB, joined_by_fork, maps_7_mib, of_type, records, traced_pid, u};
use serde_json::Value;
use workload::{Waiting, cont, python, wait_stopped};

/// `sh -c 'python3 ...; true'`: sh forks the python3 that maps 7 MiB (the
/// `; true` keeps sh from exec'ing it in place), so the mapping is made by
/// a process created after the trace began, a grandchild of the tracer.
/// Python maps at once: the map at its exec is the kernel program's read
/// at the exec, so its first calls are deltas, not part of a table read
/// later.
#[test]
fn a_grandchilds_mmap_is_traced_under_its_own_pid() {
    let script = "import mmap; m = mmap.mmap(-1, 7 << 20); m[0] = 1";
    let cmd = format!("python3 -c '{script}'; true");
    let mut t = Tracer::spawn(&["-f", "--json", "--no-initial-table", "--", "sh", "-c", &cmd]);
    let root = traced_pid(&t.wait_tracing(Duration::from_secs(60)));
    let status = t.wait_exit(Duration::from_secs(120));
    assert!(status.success(), "pmap trace failed: {}", t.context());
    let rs = records(&t);
    let parent: HashMap<u64, u64> = of_type(&rs, "fork")
        .iter()
        .map(|f| (u(&f["pid"]), u(&f["ppid"])))
        .collect();
    let big = of_type(&rs, "delta")
        .into_iter()
        .find(|d| d["syscall"] == "mmap" && d["args"][1] == 7 * MIB && d["exact"] == true)
        .unwrap_or_else(|| panic!("no exact delta of the 7 MiB mmap\n{}", t.context()));
    let pid = u(&big["pid"]);
    assert_ne!(
        pid,
        u64::from(root),
        "the mmap was made by sh's child, not sh"
    );
    assert_eq!(big["ppid"], parent[&pid], "the delta's ppid is its fork's");
    // Its ancestry, through the fork records, reaches the launched sh.
    let mut p = pid;
    let mut hops = 0;
    while p != u64::from(root) {
        p = *parent
            .get(&p)
            .unwrap_or_else(|| panic!("no fork record of pid {p}\n{}", t.context()));
        hops += 1;
        assert!(hops < 50, "a cycle in the fork records");
    }
    let added = big["added"].as_array().expect("added rows");
    assert!(
        added.iter().any(|r| r["size"] == 7 * MIB),
        "the delta adds the 7 MiB region: {big}"
    );
    // Each process has its own summary, and a total closes the trace.
    let summaries: HashSet<u64> = of_type(&rs, "summary")
        .iter()
        .map(|s| u(&s["pid"]))
        .collect();
    assert!(summaries.contains(&pid) && summaries.contains(&u64::from(root)));
    let total = of_type(&rs, "total");
    assert_eq!(total.len(), 1, "one total record");
    assert_eq!(u(&total[0]["processes"]), summaries.len() as u64);
}

/// Fifty children in a row, each mapping memory as its very first action
/// and exiting at once, twenty times: every child's call is seen, under
/// the child's pid, exact, and the tracer ends cleanly each time.
#[test]
fn every_short_lived_childs_first_call_is_seen() {
    for run in 0..20 {
        let mut w = Waiting::spawn(Command::new(workload_bin("fork_children")).arg("50"));
        let pid = w.pid.to_string();
        let mut t = Tracer::spawn(&["-f", "--json", "--no-initial-table", &pid]);
        t.wait_tracing(Duration::from_secs(60));
        w.say("go");
        let children: Vec<(u64, u64)> = (0..50)
            .map(|_| {
                let l = w.line();
                let mut f = l.split(' ').skip(1).map(|n| n.parse::<u64>().ok());
                match (f.next().flatten(), f.next().flatten()) {
                    (Some(p), Some(b)) => (p, b),
                    _ => panic!("the workload said {l:?}, not `child PID BYTES`"),
                }
            })
            .collect();
        assert!(w.child.wait().expect("workload").success());
        let status = t.wait_exit(Duration::from_secs(60));
        assert!(
            status.success(),
            "run {run}: pmap trace failed: {}",
            t.context()
        );
        let rs = records(&t);
        let forks: HashMap<u64, u64> = of_type(&rs, "fork")
            .iter()
            .map(|f| (u(&f["pid"]), u(&f["ppid"])))
            .collect();
        let deltas = of_type(&rs, "delta");
        for &(child, bytes) in &children {
            assert_eq!(
                forks.get(&child),
                Some(&u64::from(w.pid)),
                "run {run}: no fork record of child {child}\n{}",
                t.context()
            );
            let seen = deltas.iter().any(|d| {
                u(&d["pid"]) == child
                    && d["syscall"] == "mmap"
                    && u(&d["args"][1]) == bytes
                    && d["exact"] == true
            });
            assert!(
                seen,
                "run {run}: child {child}'s mmap of {bytes} bytes was not traced\n{}",
                t.context()
            );
        }
        assert_eq!(
            u(&of_type(&rs, "total")[0]["processes"]),
            51,
            "run {run}: the parent and its 50 children"
        );
    }
}

/// A forking server (python3 `os.fork` workers that map, unmap and
/// re-protect memory, then stop at checkpoints): at each checkpoint each
/// worker's table equals `pmap WORKER`, and no worker's model needed a
/// correction (its copy of the parent's map and its own deltas were right).
#[test]
fn each_forked_workers_table_is_exact_at_checkpoints() {
    let server = r#"
import mmap, os, signal, sys
print("ready", os.getpid())
sys.stdin.readline()
workers = []
for w in range(3):
    pid = os.fork()
    if pid == 0:
        keep = []
        for rnd in range(2):
            for k in range(24):
                keep.append(mmap.mmap(-1, (k + 1 + w) * 4096))
            for m in keep[::3]:
                m.close()
            keep = [m for m in keep if not m.closed]
            os.kill(os.getpid(), signal.SIGSTOP)
        os._exit(0)
    workers.append(pid)
print(" ".join(map(str, workers)))
sys.stdin.readline()
for pid in workers:
    os.waitpid(pid, 0)
"#;
    let mut w = Waiting::spawn(python().arg(server));
    let pid = w.pid.to_string();
    let mut t = Tracer::spawn(&["-f", "--no-initial-table", &pid]);
    t.wait_tracing(Duration::from_secs(60));
    w.say("go");
    let workers: Vec<u32> = w
        .line()
        .split(' ')
        .map(|p| p.parse().expect("worker pid"))
        .collect();
    assert_eq!(workers.len(), 3);
    for checkpoint in 1..=2 {
        wait_stopped(&workers);
        let tables = t.request_tables(&workers);
        for (table, &worker) in tables.iter().zip(&workers) {
            let what = format!("checkpoint {checkpoint}, worker {worker}");
            assert_table_matches(table, &reference_pmap(worker, &[]), &what, &t);
        }
        cont(&workers);
    }
    w.say("quit");
    assert!(w.child.wait().expect("server").success());
    let status = t.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "pmap trace failed: {}", t.context());
    let lines = t.stdout();
    for &worker in &workers {
        let s = parse_summary(&lines, worker)
            .unwrap_or_else(|| panic!("no summary of worker {worker}\n{}", t.context()));
        assert_eq!(
            s.corrections,
            0,
            "worker {worker}'s model needed corrections:\n{}",
            t.context()
        );
    }
}

/// The focus filters, alone and combined. One workload: a thread of its
/// own maps 4 KiB and 2 MiB anonymous regions and a 64 KiB file region
/// (named `pmap-focus-...`), then unmaps them all; the main thread does the
/// same. Each filter's deltas all pass it, the ones expected are there, and
/// the summary counts every call whatever the filter.
#[test]
fn focus_filters_narrow_the_deltas_not_the_counts() {
    let file = std::env::temp_dir()
        .join(format!("pmap-focus-{}", std::process::id()))
        .display()
        .to_string();
    std::fs::write(&file, vec![0u8; 65536]).expect("writing the scratch file");
    let script = format!(
        r#"
import mmap, os, sys, threading, time
go = threading.Event()
def work():
    go.wait()
    a = mmap.mmap(-1, 4096)
    b = mmap.mmap(-1, 2 << 20)
    with open({file:?}, "r+b") as f:
        c = mmap.mmap(f.fileno(), 65536)
    # Mapped long enough for the tracer to name it: a file mapping made
    # and unmapped within its batch, with the descriptor closed, has no
    # name the tracer can find (a known gap of issue 11).
    time.sleep(0.2)
    for m in (a, b, c):
        m.close()
t = threading.Thread(target=work)
t.start()
print("ready", os.getpid())
print(t.native_id)
sys.stdin.readline()
go.set()
t.join()
work()
"#
    );
    let run = |filters: &[&str]| -> (Vec<Value>, u64) {
        let mut w = Waiting::spawn(python().arg(&script));
        let tid: u64 = w.line().parse().expect("the worker thread's id");
        let pid = w.pid.to_string();
        let tid_s = tid.to_string();
        let mut args: Vec<&str> = vec!["--json", "--no-initial-table"];
        for f in filters {
            args.push(if *f == "TID" { &tid_s } else { f });
        }
        args.push(&pid);
        let mut t = Tracer::spawn(&args);
        t.wait_tracing(Duration::from_secs(60));
        w.say("go");
        assert!(w.child.wait().expect("workload").success());
        let status = t.wait_exit(Duration::from_secs(60));
        assert!(
            status.success(),
            "pmap trace {filters:?} failed: {}",
            t.context()
        );
        (records(&t), tid)
    };
    let deltas = |rs: &[Value]| -> Vec<Value> {
        of_type(rs, "delta")
            .into_iter()
            .filter(|d| d["cause"] == "syscall" || d["cause"] == "observed")
            .cloned()
            .collect()
    };
    let calls = |rs: &[Value]| of_type(rs, "summary")[0]["calls"].clone();
    let size = |d: &Value| {
        let sum = |k: &str| -> u64 {
            d[k].as_array()
                .map(|a| a.iter().map(|r| u(&r["size"])).sum())
                .unwrap_or(0)
        };
        sum("removed").max(sum("added"))
    };
    let names = |d: &Value| -> Vec<String> {
        ["removed", "added"]
            .iter()
            .flat_map(|k| d[*k].as_array().cloned().unwrap_or_default())
            .map(|r| r["name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let big_mmaps = |ds: &[Value], tid: Option<u64>| {
        ds.iter()
            .filter(|d| d["syscall"] == "mmap" && u(&d["args"][1]) == 2 * MIB)
            .filter(|d| tid.is_none_or(|t| u(&d["tid"]) == t))
            .count()
    };

    // Each run makes these calls, and maybe more of Python's own.
    let counts_ours = |rs: &[Value]| {
        let c = calls(rs);
        assert!(
            u(&c["mmap"]) >= 6 && u(&c["munmap"]) >= 6,
            "the summary counts every call: {c}"
        );
    };
    let (all, _) = run(&[]);
    counts_ours(&all);
    assert_eq!(
        big_mmaps(&deltas(&all), None),
        2,
        "both 2 MiB mmaps unfiltered: {:?}",
        of_type(&all, "delta")
            .iter()
            .map(|d| (d["syscall"].clone(), d["args"].clone()))
            .collect::<Vec<_>>()
    );

    let (rs, _) = run(&["--syscall", "munmap"]);
    let ds = deltas(&rs);
    assert!(
        !ds.is_empty() && ds.iter().all(|d| d["syscall"] == "munmap"),
        "{ds:?}"
    );
    counts_ours(&rs);

    let (rs, _) = run(&["--min-size", "1M"]);
    let ds = deltas(&rs);
    assert!(ds.iter().all(|d| size(d) >= MIB), "{ds:?}");
    assert_eq!(big_mmaps(&ds, None), 2);

    let (rs, tid) = run(&["--tid", "TID"]);
    let ds = deltas(&rs);
    assert!(ds.iter().all(|d| u(&d["tid"]) == tid), "{ds:?}");
    assert_eq!(big_mmaps(&ds, Some(tid)), 1, "the thread's own 2 MiB mmap");

    let (rs, _) = run(&["--name", "pmap-focus-"]);
    let ds = deltas(&rs);
    assert!(!ds.is_empty(), "the file mapping's deltas");
    assert!(
        ds.iter()
            .all(|d| names(d).iter().any(|n| n.contains("pmap-focus-"))),
        "{ds:?}"
    );

    let (rs, tid) = run(&["--syscall", "mmap", "--min-size", "1M", "--tid", "TID"]);
    let ds = deltas(&rs);
    assert_eq!(ds.len(), 1, "only the thread's 2 MiB mmap: {ds:?}");
    assert_eq!(big_mmaps(&ds, Some(tid)), 1);
    counts_ours(&rs);
    let _ = std::fs::remove_file(&file);
}

/// Regions marked `MADV_DONTFORK` (one before the trace began, one during
/// it) are not in a followed child's map: its table, at a checkpoint where
/// it is stopped, equals `pmap CHILD`, with no model correction.
#[test]
fn a_childs_map_leaves_out_what_fork_does_not_copy() {
    let script = r#"
import mmap, os, signal, sys
a = mmap.mmap(-1, 1 << 20)
a.madvise(mmap.MADV_DONTFORK)
print("ready", os.getpid())
sys.stdin.readline()
b = mmap.mmap(-1, 2 << 20)
b.madvise(mmap.MADV_DONTFORK)
c = mmap.mmap(-1, 3 << 20)
pid = os.fork()
if pid == 0:
    os.kill(os.getpid(), signal.SIGSTOP)
    os._exit(0)
print(pid)
sys.stdin.readline()
os.kill(pid, signal.SIGCONT)
os.waitpid(pid, 0)
"#;
    let mut w = Waiting::spawn(python().arg(script));
    let pid = w.pid.to_string();
    let mut t = Tracer::spawn(&["-f", "--no-initial-table", &pid]);
    t.wait_tracing(Duration::from_secs(60));
    w.say("go");
    let child: u32 = w.line().parse().expect("the child's pid");
    wait_stopped(&[child]);
    let tables = t.request_tables(&[child]);
    assert_table_matches(
        &tables[0],
        &reference_pmap(child, &[]),
        "the forked child",
        &t,
    );
    w.say("quit");
    assert!(w.child.wait().expect("python3").success());
    let status = t.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "pmap trace failed: {}", t.context());
    let s = parse_summary(&t.stdout(), child)
        .unwrap_or_else(|| panic!("no summary of the child\n{}", t.context()));
    assert_eq!(
        s.corrections,
        0,
        "the child's model needed corrections (regions fork does not copy were in it?):\n{}",
        t.context()
    );
}

/// With polling, `-f` finds the children of traced processes at each look
/// (said on stderr), reads each one's table then, and shows what changes
/// after: a child that lives long enough is followed.
#[test]
fn polling_follows_children_it_finds_at_each_look() {
    let script = "import mmap, time; time.sleep(1); m = mmap.mmap(-1, 7 << 20); time.sleep(1)";
    let cmd = format!("python3 -c '{script}'; true");
    let (t, rs, joined) = follow_by_polling(&["sh", "-c", &cmd]);
    assert!(
        t.stderr()
            .iter()
            .any(|l| l.contains("-f with polling: children are found at each look")),
        "polling says what -f can do: {}",
        t.context()
    );
    assert!(!joined.is_empty(), "no child was followed: {}", t.context());
    assert!(
        maps_7_mib(&rs, &joined),
        "the child's 7 MiB mapping was not seen: {}",
        t.context()
    );
}

/// Runs `command` under `pmap trace -f --backend poll --json` to its end
/// (asserting the tracer succeeded): the tracer, its records, and the
/// children it joined by fork.
fn follow_by_polling(command: &[&str]) -> (Tracer, Vec<Value>, Vec<u64>) {
    let mut args = vec![
        "-f",
        "--backend",
        "poll",
        "--json",
        "--no-initial-table",
        "--",
    ];
    args.extend_from_slice(command);
    let mut t = Tracer::spawn(&args);
    t.wait_tracing(Duration::from_secs(60));
    let status = t.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "pmap trace failed: {}", t.context());
    let rs = records(&t);
    let joined = joined_by_fork(&rs);
    (t, rs, joined)
}

/// With polling, a child found between its vfork and its exec shares its
/// parent's address space: its table is the parent's map then. Its exec
/// leaves that address space alive (the parent still has it), so the next
/// look must notice the exec another way, and follow the new program: dash
/// starts every command so, and such a child was once never seen to exec.
#[test]
fn polling_follows_a_vfork_child_through_its_exec() {
    let vfork = workload_bin("vfork_exec");
    let script = "import mmap, time; m = mmap.mmap(-1, 7 << 20); time.sleep(1)";
    let (t, rs, joined) = follow_by_polling(&[
        vfork.to_str().expect("a UTF-8 path"),
        "1000",
        "python3",
        "-c",
        script,
    ]);
    assert_eq!(joined.len(), 1, "the child joins once: {}", t.context());
    let child = joined[0];
    assert!(
        rs.iter()
            .any(|r| r["type"] == "exec" && u(&r["pid"]) == child),
        "the child's exec was not noticed: {}",
        t.context()
    );
    assert!(
        maps_7_mib(&rs, &joined),
        "the child's 7 MiB mapping was not seen: {}",
        t.context()
    );
}

/// A child that execs, maps and exits while the tracer is held (SIGSTOP),
/// as a short program does on a busy machine: when the tracer gets to its
/// exec record, nothing of it can be read any more. The map the kernel
/// program read at the exec is all there is, and is enough: the exec's
/// table and every call after it are shown, the calls exact.
#[test]
fn a_child_gone_before_the_tracer_reads_its_exec_is_still_shown() {
    let t = trace_a_child_gone_while_held(&["--json"]);
    let rs = records(&t);
    let big = of_type(&rs, "delta")
        .into_iter()
        .find(|d| d["syscall"] == "mmap" && d["args"][1] == 7 * MIB)
        .unwrap_or_else(|| panic!("no delta of the 7 MiB mmap\n{}", t.context()));
    assert_eq!(big["exact"], true, "{big}");
    let pid = u(&big["pid"]);
    assert!(
        of_type(&rs, "table")
            .iter()
            .any(|tb| u(&tb["pid"]) == pid && tb["reason"] == "exec"),
        "no exec table of {pid}\n{}",
        t.context()
    );
    let summary = of_type(&rs, "summary")
        .into_iter()
        .find(|s| u(&s["pid"]) == pid)
        .unwrap_or_else(|| panic!("no summary of {pid}\n{}", t.context()));
    assert_eq!(summary["before_table"], 0, "{summary}");
    assert!(u(&summary["exact_deltas"]) > 5, "{summary}");
}

/// The same in text mode: the table of a process whose command line could
/// not be read is printed too, from the map read at its exec, under a
/// header that says why there is no command line.
#[test]
fn a_child_gone_before_the_tracer_reads_its_exec_gets_a_text_table() {
    let t = trace_a_child_gone_while_held(&[]);
    let out = t.stdout();
    // python3 is the child that made the 7 MiB mmap. It is found by that
    // call, not as the first gone child: `sleep` is gone too when the
    // tracer read its map but was held before printing its table.
    let pid = out
        .iter()
        .find(|l| l.contains(" mmap(NULL, 7340032, "))
        .and_then(|l| {
            l.split(" pid ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u32>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no delta of the 7 MiB mmap\n{}", t.context()));
    let table = format!("--- table pid {pid} (exec) ");
    let start = out
        .iter()
        .position(|l| l.starts_with(&table))
        .unwrap_or_else(|| panic!("no exec table of {pid}\n{}", t.context()));
    let header = start + 1;
    assert_eq!(
        out.get(header).map(String::as_str),
        Some(format!("{pid}:   (exited before its command line could be read)").as_str()),
        "the exec table of {pid} does not say why it has no command line\n{}",
        t.context()
    );
    let rows: Vec<&String> = out[header + 1..]
        .iter()
        .take_while(|l| !l.starts_with(" total "))
        .collect();
    // Its loader is named from the rows its parent had; its own program
    // may be unknown (the JSON says `name_unknown`), and then says so.
    assert!(
        rows.iter().any(|r| r.ends_with(" ld-linux-x86-64.so.2")),
        "no row of the loader in the exec table\n{}",
        t.context()
    );
    assert!(
        rows.iter()
            .any(|r| r.ends_with(" (unknown file)") || r.contains("python3")),
        "no row of the program in the exec table\n{}",
        t.context()
    );
    assert!(
        rows.iter().any(|r| r.ends_with("  [ stack ]")),
        "the stack is not named in the exec table\n{}",
        t.context()
    );
}
