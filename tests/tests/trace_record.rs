//! `pmap trace --record` and `pmap replay`: a recording rebuilds the map at
//! any moment exactly as `/usr/bin/pmap` printed it then, prints the trace
//! again as the tracer printed it, and a damaged or cut-short recording is
//! read up to the damage, then a clear message, never a panic.
//!
//! Root and a real kernel are needed (the tracer's eBPF backend).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use pmap_tests::{
    recording::{lines, pmap, rec_path, text},
    trace_harness::{Event, REFERENCE_PMAP, Tracer, Workload, diff, serial},
};

/// The recording's start as epoch ns, from `pmap replay --info`.
fn start_epoch_ns(rec: &Path) -> u128 {
    let out = pmap(&["replay", "--info", &rec.to_string_lossy()]);
    assert!(out.status.success(), "replay --info: {}", text(&out.stderr));
    let info = text(&out.stdout);
    let epoch = info
        .lines()
        .find_map(|l| l.strip_prefix("began: "))
        .and_then(|l| l.split("(@").nth(1))
        .and_then(|l| l.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no `began: ... (@EPOCH)` line in --info:\n{info}"));
    let (s, ns) = epoch.split_once('.').expect("epoch with a fraction");
    s.parse::<u128>().expect("epoch seconds") * 1_000_000_000 + ns.parse::<u128>().expect("ns")
}

fn now_epoch_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos()
}

/// Days since 1970-01-01 to (year, month, day) (proleptic Gregorian).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Epoch ns as RFC 3339 in UTC+02:00 (an offset, to test that too).
fn rfc3339_plus2(ns: u128) -> String {
    let local = ns + 2 * 3600 * 1_000_000_000;
    let secs = (local / 1_000_000_000) as i64;
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}+02:00",
        s / 3600,
        s / 60 % 60,
        s % 60,
        local % 1_000_000_000
    )
}

/// One moment the workload was stopped: `/usr/bin/pmap PID` then, and the
/// wall-clock time (epoch ns) while it was still stopped.
struct Moment {
    reference: Vec<u8>,
    at_ns: u128,
}

/// A seeded random workload (threads, anonymous/file/shared mappings,
/// MAP_FIXED overlays, partial munmap, mprotect splits, every kind of
/// mremap, brk, SysV shm, memfd, dlopen/dlclose), stopped every
/// `CHECKPOINT_EVERY` operations and never growing its stack by itself.
/// No table is asked for after the first checkpoint: the replay rebuilds
/// the map from the recorded calls alone.
#[test]
fn replay_at_equals_pmap_of_the_stopped_process_at_every_checkpoint() {
    let _serial = serial();
    for seed in ["13", "29"] {
        replay_at_matches_pmap(seed);
    }
}

fn replay_at_matches_pmap(seed: &str) {
    const OPS: &str = "900";
    const CHECKPOINT_EVERY: &str = "100";
    let rec = rec_path(&format!("workload-{seed}.pmaprec"));
    let rec_s = rec.to_string_lossy().into_owned();
    let mut wl = Workload::spawn_bin(
        "trace_workload",
        &[
            "--seed",
            seed,
            "--ops",
            OPS,
            "--checkpoint-every",
            CHECKPOINT_EVERY,
            "--no-stack-growth",
        ],
    );
    let pid = wl.pid();
    let pid_s = pid.to_string();
    let mut tracer = Tracer::spawn(&["--record", &rec_s, &pid_s]);
    tracer.wait_tracing(Duration::from_secs(60));
    wl.release();
    let mut moments = Vec::new();
    loop {
        match wl.wait_event(Duration::from_secs(120)) {
            Event::Stopped => {
                let out = Command::new(REFERENCE_PMAP)
                    .arg(&pid_s)
                    .output()
                    .expect("running /usr/bin/pmap");
                assert!(out.status.success(), "{REFERENCE_PMAP} {pid} failed");
                if moments.is_empty() {
                    // Setup unlinked a mapped file: a change no call
                    // makes, which the tracer sees only at a table. Later
                    // checkpoints are rebuilt from the calls alone.
                    tracer.request_table(pid);
                }
                // The tracer drains its ring every 2 ms: by now it has the
                // calls made before the stop.
                std::thread::sleep(Duration::from_millis(150));
                moments.push(Moment {
                    reference: out.stdout,
                    at_ns: now_epoch_ns(),
                });
                std::thread::sleep(Duration::from_millis(20));
                wl.cont();
            }
            Event::Exited(0) => break,
            other => panic!(
                "workload ended with {other:?}; its stderr:\n{}",
                wl.stderr().join("\n")
            ),
        }
    }
    let status = tracer.wait_exit(Duration::from_secs(30));
    assert!(
        status.success(),
        "pmap trace: {status}\n{}",
        tracer.context()
    );
    assert!(
        !tracer.stderr().iter().any(|l| l.contains("lost")),
        "the tracer lost events: the recording cannot be exact\n{}",
        tracer.context()
    );
    // Setup, every 100 ops, after cleanup.
    assert_eq!(moments.len(), 2 + 900 / 100, "checkpoints seen");
    let start = start_epoch_ns(&rec);
    for (i, m) in moments.iter().enumerate() {
        let since = m.at_ns - start;
        let forms = [
            format!("+{}.{:09}", since / 1_000_000_000, since % 1_000_000_000),
            format!(
                "@{}.{:09}",
                m.at_ns / 1_000_000_000,
                m.at_ns % 1_000_000_000
            ),
            rfc3339_plus2(m.at_ns),
        ];
        for when in &forms {
            let out = pmap(&["replay", "--at", when, "--pid", &pid_s, &rec_s]);
            assert!(
                out.status.success(),
                "seed {seed}, checkpoint {i}: replay --at {when} failed: {}",
                text(&out.stderr)
            );
            assert!(
                out.stdout == m.reference,
                "seed {seed}, checkpoint {i}: `pmap replay --at {when}` differs from {REFERENCE_PMAP} {pid} \
                 of the stopped process (- pmap, + replay):\n{}",
                diff(&lines(&m.reference), &lines(&out.stdout))
            );
        }
    }
    // And not by chance: the map changed between checkpoints.
    let distinct: std::collections::BTreeSet<&Vec<u8>> =
        moments.iter().map(|m| &m.reference).collect();
    assert!(distinct.len() > moments.len() / 2, "the map barely changed");
}

/// Records a short traced command; returns (recording, the trace's output).
fn record_churn(name: &str, extra: &[&str]) -> (PathBuf, Vec<u8>) {
    let rec = rec_path(&format!("{name}.pmaprec"));
    let out_file = rec_path(&format!("{name}.out"));
    let churn = pmap_tests::workload_bin("churn");
    let (rec_s, out_s) = (rec.to_string_lossy(), out_file.to_string_lossy());
    let mut args = vec![
        "trace",
        "--record",
        &rec_s,
        "-o",
        &out_s,
        "--interval",
        "0.2",
    ];
    args.extend_from_slice(extra);
    let churn_s = churn.to_string_lossy();
    args.extend_from_slice(&["--", &churn_s, "60"]);
    let out = pmap(&args);
    assert!(out.status.success(), "pmap {args:?}: {}", text(&out.stderr));
    let printed = std::fs::read(&out_file).expect("reading the trace's output");
    (rec, printed)
}

#[test]
fn replay_prints_what_the_trace_printed() {
    let _serial = serial();
    let (rec, printed) = record_churn("text", &[]);
    let out = pmap(&["replay", &rec.to_string_lossy()]);
    assert!(out.status.success(), "replay: {}", text(&out.stderr));
    // Every line, the insight's included (the notes under deltas, the
    // section after each summary): recorded as printed.
    let (want, got) = (lines(&printed), lines(&out.stdout));
    assert!(
        want == got,
        "replay differs from the trace (- trace, + replay):\n{}",
        diff(&want, &got)
    );
    assert!(
        want.iter().any(|l| l.contains(" mmap("))
            && want.iter().any(|l| l.starts_with("--- insight")),
        "no deltas or no insight section traced"
    );

    // JSON: the same records, byte for byte (the notes and insight keys
    // included).
    let (rec, printed) = record_churn("json", &["--json"]);
    let out = pmap(&["replay", "--json", &rec.to_string_lossy()]);
    assert!(out.status.success(), "replay --json: {}", text(&out.stderr));
    let (want, got) = (lines(&printed), lines(&out.stdout));
    assert!(
        want == got,
        "replayed JSON differs (- trace, + replay):\n{}",
        diff(&want, &got)
    );
    assert!(
        want.iter()
            .any(|l| l.contains("\"type\":\"summary\"") && l.contains("\"insight\":{")),
        "no summary with its insight traced"
    );

    // A process tree (-f): the fork line, each process's summary, the total.
    let rec_f = rec_path("tree.pmaprec");
    let out_f = rec_path("tree.out");
    let (rec_fs, out_fs) = (rec_f.to_string_lossy(), out_f.to_string_lossy());
    let out = pmap(&[
        "trace",
        "-f",
        "--record",
        &rec_fs,
        "-o",
        &out_fs,
        "--",
        "sh",
        "-c",
        "sleep 0.3 & wait",
    ]);
    assert!(out.status.success(), "pmap trace -f: {}", text(&out.stderr));
    let printed = std::fs::read(&out_f).expect("reading the trace's output");
    let replayed = pmap(&["replay", &rec_fs]);
    let (want, got) = (lines(&printed), lines(&replayed.stdout));
    assert!(
        want.iter().any(|l| l.contains("forked process"))
            && want.iter().any(|l| l.starts_with("--- total")),
        "the tree was not followed:\n{}",
        want.join("\n")
    );
    assert!(
        want == got,
        "replay of -f differs (- trace, + replay):\n{}",
        diff(&want, &got)
    );

    // A focus filter applies as in the trace: only munmap deltas.
    let out = pmap(&["replay", "--syscall", "munmap", &rec.to_string_lossy()]);
    let ls = lines(&out.stdout);
    let deltas: Vec<&String> = ls
        .iter()
        .filter(|l| l.starts_with('+') && l.contains(") = "))
        .collect();
    assert!(!deltas.is_empty(), "no munmap delta replayed");
    assert!(
        deltas.iter().all(|l| l.contains(" munmap(")),
        "--syscall munmap let other deltas through: {deltas:?}"
    );
    // -x needs data a recording does not have: said, not faked.
    let out = pmap(&["replay", "-x", &rec.to_string_lossy()]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("smaps"), "{}", text(&out.stderr));
}

/// Every cut of a recording (a tracer killed mid-write, a full disk) and
/// damaged bytes inside it are read up to the damage: what comes before is
/// printed as from the whole recording, then one clear line on stderr;
/// never a panic.
#[test]
fn damaged_and_cut_recordings_are_read_up_to_the_damage() {
    let _serial = serial();
    let (rec, _) = record_churn("damage", &[]);
    let whole = std::fs::read(&rec).expect("reading the recording");
    let full = pmap(&["replay", &rec.to_string_lossy()]);
    assert!(full.status.success());
    let broken = rec_path("broken.pmaprec");
    let broken_s = broken.to_string_lossy().into_owned();
    let check = |bytes: &[u8], what: &str| {
        std::fs::write(&broken, bytes).expect("writing the damaged copy");
        let out = pmap(&["replay", &broken_s]);
        let err = text(&out.stderr);
        assert!(
            !err.contains("panicked") && out.status.code().is_some_and(|c| c <= 1),
            "{what}: replay crashed ({:?}): {err}",
            out.status
        );
        assert!(
            full.stdout.starts_with(&out.stdout),
            "{what}: what was replayed is not the start of the whole replay"
        );
        let said = err.contains("ends in the middle of a record")
            || err.contains("has no end record")
            || err.contains("is damaged at byte")
            || err.contains("not a pmap recording")
            || err.contains("header");
        assert!(said, "{what}: no clear message on stderr: {err:?}");
        out
    };
    let step = (whole.len() / 60).max(1);
    for cut in (0..whole.len())
        .step_by(step)
        .chain(whole.len() - 8..whole.len())
    {
        let out = check(&whole[..cut], &format!("cut at {cut} of {}", whole.len()));
        if !text(&out.stderr).contains("header") {
            assert!(
                out.status.success(),
                "cut at {cut}: a cut recording is not an error"
            );
        }
    }
    for at in (12..whole.len()).step_by(step) {
        let mut b = whole.clone();
        b[at] ^= 0x5a;
        check(&b, &format!("byte {at} changed"));
    }
    // --at past the end of a cut recording: not known, and said so.
    std::fs::write(&broken, &whole[..whole.len() / 2]).expect("writing");
    let out = pmap(&["replay", "--at", "+1000", &broken_s]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not known"),
        "{}",
        text(&out.stderr)
    );
}

/// A tracer killed outright (SIGKILL) leaves a recording that replays up
/// to its last complete record, says it was cut short, and answers `--at`
/// for any moment it holds.
#[test]
fn a_recording_of_a_killed_tracer_is_readable() {
    let _serial = serial();
    let rec = rec_path("killed.pmaprec");
    let rec_s = rec.to_string_lossy().into_owned();
    let churn = pmap_tests::workload_bin("churn");
    let churn_s = churn.to_string_lossy().into_owned();
    let mut tracer = Tracer::spawn(&[
        "--record",
        &rec_s,
        "-o",
        "/dev/null",
        "--",
        &churn_s,
        "3000",
    ]);
    tracer.wait_tracing(Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(800));
    tracer.signal(libc::SIGKILL);
    tracer.wait_exit(Duration::from_secs(10));

    let out = pmap(&["replay", &rec_s]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "a cut recording replays: {err}");
    assert!(
        err.contains("no end record") || err.contains("ends in the middle of a record"),
        "stderr says it was cut short: {err:?}"
    );
    let calls = lines(&out.stdout)
        .iter()
        .filter(|l| l.contains(" mmap(") || l.contains(" munmap("))
        .count();
    assert!(
        calls > 50,
        "the calls before the kill were replayed: {calls}"
    );
    let info = text(&pmap(&["replay", "--info", &rec_s]).stdout);
    assert!(info.contains("complete: no (cut short)"), "{info}");
    let secs = |key: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_suffix('s')?.parse().ok())
            .unwrap_or_else(|| panic!("no `{key}` in --info:\n{info}"))
    };
    let when = format!(
        "+{:.6}",
        (secs("first map: +") + secs("last record: +")) / 2.0
    );
    let out = pmap(&["replay", "--at", &when, &rec_s]);
    assert!(out.status.success(), "--at {when}: {}", text(&out.stderr));
    assert!(
        lines(&out.stdout)
            .last()
            .is_some_and(|l| l.starts_with(" total ")),
        "a whole table at {when}:\n{}",
        text(&out.stdout)
    );
}
