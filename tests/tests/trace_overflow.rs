//! A forced overflow: with a one-page ring buffer (`--ring-size 4096`) a
//! storm of mmap/mprotect/munmap calls must overflow it. The tracer must say
//! so on its own (`pmap trace: lost N events ...` on stderr), resynchronise,
//! and its next table must still equal `pmap`'s exactly; the summary counts
//! the loss, and the tracer exits 0 when the storm ends.
//!
//! Root and a real kernel are needed.

use std::time::Duration;

use pmap_tests::trace_harness::{
    Event, Tracer, Workload, assert_table_matches, number_after, parse_tables, reference_pmap,
    serial,
};

fn lost_count(line: &str) -> Option<u64> {
    number_after(line.strip_prefix("pmap trace: lost")?, "")
}

#[test]
fn tiny_ring_overflows_reports_loss_and_stays_exact() {
    let _serial = serial();
    let mut wl = Workload::spawn_bin("trace_storm", &["--rounds", "3", "--per-round", "20000"]);
    let pid = wl.pid();
    let mut tracer = Tracer::spawn(&["--ring-size", "4096", &pid.to_string()]);
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
                let table = tracer.request_table(pid);
                let reference = reference_pmap(pid, &[]);
                assert_table_matches(
                    &table,
                    &reference,
                    &format!("storm checkpoint {checkpoints}"),
                    &tracer,
                );
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
    let resyncs = parse_tables(&tracer.stdout())
        .into_iter()
        .filter(|t| t.reason == "resync")
        .count();
    assert!(
        resyncs > 0,
        "loss was reported but no (resync) table followed\n{}",
        tracer.context()
    );
    let summary = tracer.summary(pid);
    let first = first_loss.expect("first loss count");
    assert!(
        summary.lost >= first,
        "summary counts {} lost events, stderr reported {first}\n{}",
        summary.lost,
        summary.text.join("\n")
    );
}
