//! Minimal reproductions (tests/src/bin/trace_scenarios.rs): short
//! sequences made faster than the tracer follows them. Each must end with
//! exact tables, no model correction, no printed failed call that changed
//! nothing, and deltas that only show what their call could have done.
//!
//! Root and a real kernel are needed.

use std::time::Duration;

use pmap_tests::trace_harness::{
    Event, Tracer, Workload, assert_deltas_replay_to_tables, assert_regions_match,
    assert_table_matches, delta_blocks, maps_lines, printed_unchanging_failures, reference_pmap,
    serial,
};

/// Runs a scenario under `pmap trace`, checking every checkpoint; returns
/// the tracer (exited).
fn run(name: &str, checkpoints: usize) -> Tracer {
    run_with(name, checkpoints, &|_, _, _| {})
}

/// Runs scenario `name` under `pmap trace ARGS PID`, calling
/// `check(checkpoint, pid, tracer)` at each checkpoint while it is
/// stopped; returns the tracer (still running, the scenario exited), the
/// scenario's pid and the number of checkpoints.
fn traced(
    name: &str,
    args: &[&str],
    check: &mut dyn FnMut(usize, u32, &mut Tracer),
) -> (Tracer, u32, usize) {
    let mut wl = Workload::spawn_bin("trace_scenarios", &[name]);
    let pid = wl.pid();
    let pid_s = pid.to_string();
    let mut t = Tracer::spawn(&[args, &[pid_s.as_str()]].concat());
    t.wait_tracing(Duration::from_secs(60));
    wl.release();
    let mut seen = 0;
    loop {
        match wl.wait_event(Duration::from_secs(30)) {
            Event::Stopped => {
                check(seen, pid, &mut t);
                seen += 1;
                wl.cont();
            }
            Event::Exited(0) => return (t, pid, seen),
            other => panic!(
                "scenario {name} ended with {other:?}: {}",
                wl.stderr().join("\n")
            ),
        }
    }
}

/// `run`, calling `at(checkpoint, tracer, Before | After)` around each
/// checkpoint's table check.
fn run_with(name: &str, checkpoints: usize, at: &dyn Fn(usize, &Tracer, Phase)) -> Tracer {
    let (mut t, pid, seen) = traced(name, &[], &mut |seen, pid, t| {
        at(seen, t, Phase::Before);
        let table = t.request_table(pid);
        let what = format!("scenario {name}, checkpoint {seen}");
        assert_table_matches(&table, &reference_pmap(pid, &[]), &what, t);
        at(seen, t, Phase::After);
    });
    assert_eq!(seen, checkpoints, "scenario {name}: checkpoints");
    let status = t.wait_exit(Duration::from_secs(30));
    assert!(
        status.success(),
        "{name}: pmap trace exited with {status}\n{}",
        t.context()
    );
    let s = t.summary(pid);
    let ctx = t.context();
    assert_eq!(s.corrections, 0, "{name}: {}\n{ctx}", s.text.join("\n"));
    assert_eq!(s.lost, 0, "{name}: {}", s.text.join("\n"));
    let printed = printed_unchanging_failures(&t.stdout());
    assert!(
        printed.is_empty(),
        "{name}: printed failed calls that changed nothing:\n{}\n{ctx}",
        printed.join("\n")
    );
    t
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Before,
    After,
}

/// SIGSTOPs `pid` and waits until the kernel reports it stopped.
fn stop_and_wait(pid: u32) {
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if pmap_tests::proc_state(pid) == Some('T') {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{pid} did not stop");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn sysv_attach_split_then_detached() {
    let _serial = serial();
    run("sysv-split", 2);
}

#[test]
fn sysv_attach_split_and_detached_at_once() {
    let _serial = serial();
    run("sysv-split-gone", 1);
}

#[test]
fn sysv_attach_seen_then_split_and_detached_at_once() {
    let _serial = serial();
    run("sysv-known-split-gone", 2);
}

#[test]
fn file_unlinked_while_mapped() {
    let _serial = serial();
    run("unlink-mapped", 2);
}

#[test]
fn failed_noreplace_then_replaced() {
    let _serial = serial();
    run("failed-noreplace", 2);
}

/// `--json` run of a scenario with one checkpoint: its JSON records, after
/// checking the table against /proc, that the tracer corrected nothing
/// and that the deltas add up to the tables.
fn run_json(name: &str) -> (Tracer, Vec<serde_json::Value>) {
    let (mut t, _, seen) = traced(name, &["--json"], &mut |_, pid, t| {
        assert_regions_match(&t.request_json_table(pid), &maps_lines(pid), name, t);
    });
    assert_eq!(seen, 1, "checkpoints");
    let status = t.wait_exit(Duration::from_secs(30));
    assert!(
        status.success(),
        "pmap trace exited with {status}\n{}",
        t.context()
    );
    let records: Vec<serde_json::Value> = t
        .stdout()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let summary = records
        .iter()
        .find(|r| r["type"] == "summary")
        .unwrap_or_else(|| panic!("no summary\n{}", t.context()));
    assert_eq!(summary["corrections"], 0, "{summary}\n{}", t.context());
    assert_deltas_replay_to_tables(&t.stdout(), &t);
    (t, records)
}

/// A file mapped, its descriptor closed and the mapping unmapped before
/// the tracer looks: the mmap's delta still adds the mapping (its rows
/// from the capture, named by the descriptor, marked `name_unknown`), and
/// the munmap's removes it, instead of a mmap with no rows and a munmap
/// that changed nothing.
#[test]
fn a_file_mapping_gone_before_the_tracer_looks_is_still_shown() {
    let _serial = serial();
    let (t, records) = run_json("mapped-and-gone");
    let deltas = |call: &str| -> Vec<&serde_json::Value> {
        records
            .iter()
            .filter(|r| r["type"] == "delta" && r["syscall"] == call && r["args"][1] == 8192)
            .collect()
    };
    let rows = |d: &serde_json::Value, key: &str| d[key].as_array().map_or(0, Vec::len);
    let (maps, unmaps) = (deltas("mmap"), deltas("munmap"));
    assert_eq!((maps.len(), unmaps.len()), (20, 20), "{}", t.context());
    for d in maps {
        assert_eq!(rows(d, "added"), 1, "{d}");
    }
    for d in unmaps {
        assert_eq!(rows(d, "removed"), 1, "{d}");
    }
}

/// Two shared anonymous mappings, the second over the start of the first
/// before the tracer looked: each delta names its own object (inode), so
/// the `--json` deltas add up to the kernel's table. The tracer once took
/// the identity of whatever the kernel held at the address when it looked,
/// giving the first mapping the second's inode.
#[test]
fn shared_anon_overlay_keeps_each_objects_inode() {
    let _serial = serial();
    let (t, records) = run_json("shared-anon-overlay");
    let deltas = records.iter().filter(|r| r["type"] == "delta").count();
    assert!(deltas >= 120, "{deltas} deltas\n{}", t.context());
}

/// The anonymous mmap's delta must not pass off the file page that the
/// next call put there as its own: the tracer reads the kernel's state when
/// it processes the event, so when the MAP_FIXED came first the rows show
/// it, and the delta must say so (README, Trace mode, Limits).
#[test]
fn anon_mmap_then_file_overlay() {
    let _serial = serial();
    let t = run("anon-then-file", 1);
    let blocks = delta_blocks(&t.stdout());
    let anon = blocks
        .iter()
        .filter(|(h, _)| h.contains(" mmap(NULL, 4096, ---, PRIVATE|ANONYMOUS"))
        .collect::<Vec<_>>();
    // The loop below checks these deltas: there must be some.
    assert!(
        !anon.is_empty(),
        "no delta of the anonymous mmap\n{}",
        t.context()
    );
    for (header, body) in anon {
        let file_lines: Vec<&String> = body
            .iter()
            .filter(|l| l.contains("pmap-scenario-"))
            .collect();
        assert!(
            file_lines.is_empty() || header.contains("(changed again by a later call"),
            "the anonymous mmap is shown adding the file mapping of a later call, unmarked:\n{header}\n{}\n{}",
            body.join("\n"),
            t.context()
        );
    }
}

/// Calls derived from their arguments (which name no file) still show the
/// file the kernel mapped, as a dynamic loader's burst of calls does: a
/// stack through libc is named from these rows before the batch settles.
#[test]
fn file_mappings_in_a_burst_are_named() {
    let _serial = serial();
    let t = run("loader", 1);
    let blocks = delta_blocks(&t.stdout());
    let ours: Vec<_> = blocks
        .iter()
        .filter(|(_, body)| body.iter().any(|l| l.contains("pmap-scenario-")))
        .collect();
    // 20 x (mmap, mmap fixed, mprotect), some perhaps superseded.
    assert!(ours.len() >= 40, "{} deltas\n{}", ours.len(), t.context());
    for (header, body) in blocks {
        assert!(
            !body.iter().any(|l| l.contains("(fd ")),
            "a row named by its descriptor:\n{header}\n{}\n{}",
            body.join("\n"),
            t.context()
        );
    }
}

/// Stack growth has no syscall: the table after it is exact and the change
/// is printed as `observed`.
#[test]
fn stack_growth_is_observed() {
    let _serial = serial();
    let t = run("stack-growth", 2);
    let observed = delta_blocks(&t.stdout())
        .into_iter()
        .any(|(h, body)| h.contains("observed") && body.iter().any(|l| l.contains("[stack]")));
    assert!(
        observed,
        "no `observed` delta for the [stack] growth\n{}",
        t.context()
    );
}

/// One delta per call, showing that call's own effect, even when the calls
/// come faster than the tracer can ask the kernel about each (README, Trace
/// mode: a delta derived from the call's arguments says so). The tracer is
/// stopped during the burst, so that all 300 calls wait in the ring and
/// reach it together, whatever the machine's load (its 2 ms drains would
/// otherwise fall anywhere among them).
#[test]
fn burst_gives_each_call_its_own_delta() {
    let _serial = serial();
    let t = run_with(
        "burst",
        2,
        &|checkpoint, t, phase| match (checkpoint, phase) {
            (0, Phase::After) => stop_and_wait(t.pid()),
            // SAFETY: a signal to our own child.
            (1, Phase::Before) => unsafe {
                libc::kill(t.pid() as i32, libc::SIGCONT);
            },
            _ => {}
        },
    );
    let out = t.stdout();
    let blocks = delta_blocks(&out);
    let burst: Vec<&(String, Vec<String>)> = blocks
        .iter()
        .filter(|(h, _)| {
            h.contains(" mmap(0x") && h.contains(", 16384, rw-")
                || h.contains(" mprotect(0x") && h.contains(", 4096, r--)")
                || h.contains(" munmap(0x") && h.contains(", 16384)")
        })
        .collect();
    assert_eq!(burst.len(), 300, "one delta per call\n{}", t.context());
    let mut superseded = 0;
    let mut derived = 0;
    for (header, body) in &burst {
        // Where a drain of the ring fell between two calls, the first one's
        // delta may show the second's effect (marked), and the second then
        // shows nothing.
        if header.contains("(changed again by a later call")
            || header.contains("(map unchanged now)")
        {
            superseded += 1;
            continue;
        }
        if header.contains("(from the call's arguments") {
            derived += 1;
        }
        // The address the calls work on, from the header: `(0x7f..,`.
        let at = header
            .split("(0x")
            .nth(1)
            .and_then(|r| r.split([',', ')']).next())
            .expect("an address in the header");
        let at = format!("{:0>16}", at);
        let has = |mark: &str, what: &str| {
            body.iter()
                .any(|l| l.contains(&format!("{mark} {at}")) && l.contains(what))
        };
        let own = if header.contains(" mmap(") {
            has("+", "16K rw-p")
        } else if header.contains(" mprotect(") {
            has("~", "16K rw-p") && body.iter().any(|l| l.contains("4K r--p"))
        } else {
            has("-", "4K r--p")
        };
        assert!(
            own,
            "the delta does not show its own call's effect:\n{header}\n{}\n{}",
            body.join("\n"),
            t.context()
        );
    }
    // One batch, and still each delta is the call's own, from its
    // capture: none shows a later call's change, none needs deriving from
    // arguments.
    assert!(
        superseded == 0 && derived == 0,
        "{superseded} deltas superseded, {derived} derived from arguments, of 300\n{}",
        t.context()
    );
}
