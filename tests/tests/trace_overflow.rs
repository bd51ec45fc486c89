//! A forced overflow: with a one-page ring buffer (`--ring-size 4096`) a
//! storm of mmap/mprotect/munmap calls must overflow it. The tracer must say
//! so on its own (`pmap trace: lost N events ...` on stderr), resynchronise
//! (a `resync` table or delta), and its next table must still equal `pmap`'s
//! exactly; the summary counts the loss, and the tracer exits 0 when the
//! storm ends.
//!
//! Root and a real kernel are needed.

use std::time::Duration;

use pmap_tests::trace_harness::{
    Event, Tracer, Workload, assert_regions_match, assert_table_matches, maps_lines,
    non_table_lines, number_after, parse_tables, reference_pmap, serial,
};

fn lost_count(line: &str) -> Option<u64> {
    number_after(line.strip_prefix("pmap trace: lost")?, "")
}

/// Runs the storm under a tracer with a tiny ring; checks every checkpoint
/// (the default table against pmap, or with `json` the regions against
/// /proc/PID/maps). Returns the tracer after it exited.
fn storm(json: bool) -> (Tracer, u32, u64) {
    let mut wl = Workload::spawn_bin("trace_storm", &["--rounds", "3", "--per-round", "20000"]);
    let pid = wl.pid();
    let pid_s = pid.to_string();
    let mut args = vec!["--ring-size", "4096"];
    if json {
        args.push("--json");
    }
    args.push(&pid_s);
    let mut tracer = Tracer::spawn(&args);
    tracer.wait_tracing(Duration::from_secs(60));
    wl.release();

    let mut checkpoints = 0;
    let mut first_loss = None;
    loop {
        match wl.wait_event(Duration::from_secs(120)) {
            Event::Stopped => {
                if checkpoints == 0 {
                    // Reported on its own, before anyone asks for a table.
                    let line = tracer.wait_stderr(Duration::from_secs(10), |l| {
                        lost_count(l).is_some_and(|n| n > 0)
                    });
                    let line = line.unwrap_or_else(|| {
                        panic!(
                            "a storm into a 4096-byte ring reported no loss on stderr\n{}",
                            tracer.context()
                        )
                    });
                    first_loss = lost_count(&line);
                }
                let what = format!("storm checkpoint {checkpoints}");
                if json {
                    let regions = tracer.request_json_table(pid);
                    assert_regions_match(&regions, &maps_lines(pid), &what, &tracer);
                } else {
                    let table = tracer.request_table(pid);
                    assert_table_matches(&table, &reference_pmap(pid, &[]), &what, &tracer);
                }
                checkpoints += 1;
                wl.cont();
            }
            Event::Exited(0) => break,
            other => panic!("storm ended with {other:?}: {}", wl.stderr().join("\n")),
        }
    }
    assert_eq!(checkpoints, 4, "three rounds and the end");

    let status = tracer.wait_exit(Duration::from_secs(30));
    assert!(
        status.success(),
        "pmap trace exited with {status}\n{}",
        tracer.context()
    );
    (tracer, pid, first_loss.expect("first loss count"))
}

#[test]
fn tiny_ring_overflows_reports_loss_and_stays_exact() {
    let _serial = serial();
    let (tracer, pid, first) = storm(false);
    let out = tracer.stdout();
    let resync_table = parse_tables(&out).iter().any(|t| t.reason == "resync");
    let resync_delta = non_table_lines(&out)
        .iter()
        .any(|(_, l)| l.starts_with('+') && l.contains(" resync"));
    assert!(
        resync_table || resync_delta,
        "loss was reported but no resync (table or delta) followed\n{}",
        tracer.context()
    );
    let summary = tracer.summary(pid);
    assert!(
        summary.lost >= first,
        "summary counts {} lost events, stderr reported {first}\n{}",
        summary.lost,
        summary.text.join("\n")
    );
}

/// The same with `--json`: every field of every region is checked against
/// the kernel, and the loss shows up as `lost` records and in the summary.
#[test]
fn tiny_ring_json_regions_stay_exact() {
    let _serial = serial();
    let (tracer, _pid, first) = storm(true);
    let records: Vec<serde_json::Value> = tracer
        .stdout()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let lost_records: u64 = records
        .iter()
        .filter(|r| r["type"] == "lost")
        .filter_map(|r| r["count"].as_u64())
        .sum();
    assert!(
        lost_records >= first,
        "`lost` records count {lost_records}, stderr reported {first}\n{}",
        tracer.context()
    );
    let summary = records
        .iter()
        .rev()
        .find(|r| r["type"] == "summary")
        .unwrap_or_else(|| panic!("no summary record\n{}", tracer.context()));
    assert!(
        summary["lost"].as_u64().is_some_and(|n| n >= first),
        "summary: {summary}"
    );
}
