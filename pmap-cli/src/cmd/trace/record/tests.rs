//! Records survive the trip through bytes, the world they add up to is
//! the tracer's, every cut of a recording reads up to the cut, and a
//! recording of the previous format version is still read.

use std::rc::Rc;

use pmap_common::Event;
use serde_json::json;

use super::{
    codec::Encoder,
    format::{Header, ProcState, Record, SummaryInsight},
    reader::{Recording, Stop},
    wire::{MAGIC, VERSION, put_frame},
};
use crate::{
    cmd::trace::{
        delta::{Cause, Delta, Stats},
        insight::{DeltaNotes, Note, StackNote},
        syscalls::Call,
    },
    map::{
        model::Change,
        process::ProcessInfo,
        region::{Perms, Region},
    },
};

fn row(start: u64, end: u64, perms: &[u8; 4], name: &str) -> Region {
    Region {
        start,
        end,
        perms: Perms(*perms),
        offset: if name.is_empty() { 0 } else { 0x2000 },
        dev_major: if name.is_empty() { 0 } else { 8 },
        dev_minor: if name.is_empty() { 0 } else { 1 },
        inode: if name.is_empty() { 0 } else { 1234 },
        name: name.as_bytes().to_vec(),
    }
}

fn call(t: u64, call: Call, args: &[u64], ret: i64, change: Change) -> Record {
    let mut ev = Event {
        exit_ns: t,
        ret,
        tgid: 42,
        tid: 43,
        ..Event::default()
    };
    ev.args[..args.len()].copy_from_slice(args);
    Record::Delta {
        t,
        delta: Delta {
            pid: 42,
            ppid: 1,
            ns_pid: 0,
            tid: 43,
            ktime_ns: t,
            cause: Cause::Syscall(call, Box::new(ev)),
            change,
            superseded: false,
            from_arguments: false,
            fallback: None,
        },
        notes: DeltaNotes::default(),
    }
}

/// A named stack as insight makes it: `app::grow+0x10 [app]` under a
/// libc frame, `depth` frames shown.
fn named_stack(depth: usize) -> Rc<StackNote> {
    let frames: Vec<(u64, Rc<str>)> = vec![
        (0x7f00_0000_1234, "mmap+0x24 [libc.so.6]".into()),
        (0x5555_0000_1010, "app::grow+0x10 [app]".into()),
        (0x5555_0000_2020, "main+0x20 [app]".into()),
    ];
    Rc::new(StackNote {
        hidden: frames.len().saturating_sub(depth),
        frames: frames.into_iter().take(depth).collect(),
        truncated: true,
        site: Some("app::grow+0x10 [app]".into()),
        // Both cut marks (1: frame pointers, 2: after an unwind).
        unwound: depth.is_multiple_of(2),
    })
}

/// `r` (a delta) with these notes and namespace pid.
fn noted(mut r: Record, stack: Option<Rc<StackNote>>, notes: Vec<Note>, ns: u32) -> Record {
    if let Record::Delta {
        delta, notes: n, ..
    } = &mut r
    {
        delta.ns_pid = ns;
        *n = DeltaNotes { stack, notes };
    }
    r
}

fn sample() -> Vec<Record> {
    let lib = row(
        0x7f00_0000_0000,
        0x7f00_0000_4000,
        b"r-xp",
        "/usr/lib/libc.so.6",
    );
    let anon = row(0x7f00_0001_0000, 0x7f00_0001_4000, b"rw-p", "");
    let info = ProcessInfo {
        pid: 42,
        tgid: 42,
        cmdline: b"./app --flag".to_vec(),
        start_stack: 0x7ffd_0000_1000,
    };
    let new = row(0x7f00_0002_0000, 0x7f00_0002_4000, b"rw-p", "");
    let (ro, rw) = (
        row(0x7f00_0002_0000, 0x7f00_0002_1000, b"r--p", ""),
        row(0x7f00_0002_1000, 0x7f00_0002_4000, b"rw-p", ""),
    );
    let mut stats = Stats::default();
    stats.calls.insert(Call::Mmap, (3, 1));
    stats.bytes_mapped = 0x4000;
    vec![
        Record::Header(Header {
            start_ns: 1_000,
            start_real_ns: 1_765_046_400_000_000_000,
            polled: false,
            stacks: true,
            command: "pmap trace --record x 42".into(),
        }),
        Record::Checkpoint {
            t: 2_000,
            procs: vec![ProcState {
                pid: 42,
                ppid: 1,
                ns_pid: 0,
                info: Some(info.clone()),
                regions: vec![lib.clone(), anon.clone()],
            }],
        },
        noted(
            call(
                3_000,
                Call::Mmap,
                &[0, 0x4000, 3, 0x22, u64::MAX, 0],
                new.start as i64,
                Change {
                    removed: vec![],
                    added: vec![new.clone()],
                },
            ),
            Some(named_stack(2)),
            vec![Note::churn(0x4000, 8, 1, Some("a hint".into()))],
            7,
        ),
        // The same stack again (another shared note): written as its
        // number; then the same names in another stack.
        noted(
            call(
                2_500, // earlier than the previous record: times are signed
                Call::Mprotect,
                &[new.start, 0x1000, 1],
                0,
                Change {
                    removed: vec![new.clone()],
                    added: vec![ro.clone(), rw.clone()],
                },
            ),
            Some(named_stack(2)),
            vec![],
            7,
        ),
        Record::Table {
            t: 3_200,
            reason: "SIGUSR1".into(),
            proc: ProcState {
                pid: 42,
                ppid: 1,
                ns_pid: 7,
                info: Some(info),
                regions: vec![lib.clone(), anon.clone(), ro.clone(), rw.clone()],
            },
            notes: vec!["JIT 00007f0000020000-00007f0000021000 r-x f, g".into()],
        },
        Record::Joined {
            t: 3_300,
            pid: 60,
            ppid: 1,
            by: "comm".into(),
        },
        // A row the world does not have exactly: written whole.
        noted(
            call(
                4_050,
                Call::Munmap,
                &[0x7f00_0002_0000, 0x1000],
                0,
                Change::default(),
            ),
            Some(named_stack(3)),
            vec![],
            0,
        ),
        call(
            4_000,
            Call::Munmap,
            &[0x7f00_0003_0000, 0x1000],
            0,
            Change {
                removed: vec![row(0x7f00_0003_0000, 0x7f00_0003_1000, b"rw-s", "/x")],
                added: vec![],
            },
        ),
        call(
            4_100,
            Call::Mmap,
            &[0, 1 << 40, 3, 0x22, u64::MAX, 0],
            -12,
            Change::default(),
        ),
        Record::Fork {
            t: 5_000,
            ppid: 42,
            tid: 43,
            child: 50,
            regions: 4,
        },
        Record::Exit {
            t: 6_000,
            pid: 50,
            ppid: 42,
        },
        Record::Summary {
            t: 7_000,
            pid: 42,
            ppid: 1,
            lost: 0,
            regions: 4,
            stats: Box::new(stats),
            insight: Box::new(SummaryInsight {
                ns_pid: 7,
                json: Some(json!({"allocator": {"calls": 3}})),
                text: b"--- insight pid 42 ---\n--- end insight ---\n".to_vec(),
            }),
        },
        Record::Total {
            t: 7_500,
            pids: vec![42, 50],
            lost: 3,
        },
        Record::End { t: 8_000 },
    ]
}

fn bytes(records: &[Record]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&VERSION.to_le_bytes());
    let mut enc = Encoder::default();
    for r in records {
        let mut payload = Vec::new();
        enc.encode(r, &mut payload);
        put_frame(&mut out, &payload);
    }
    out
}

#[test]
fn records_round_trip() {
    let recs = sample();
    let rec = Recording::from_bytes(bytes(&recs)).expect("a valid recording");
    let back: Vec<Record> = rec.records().map(|r| r.expect("no damage")).collect();
    assert_eq!(back.len(), recs.len() - 1, "every record but the header");
    for (a, b) in recs[1..].iter().zip(&back) {
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }
}

#[test]
fn the_world_is_the_rows_after_each_record() {
    let rec = Recording::from_bytes(bytes(&sample())).expect("valid");
    let w = crate::cmd::replay::at::world_at(&rec, 3_500).expect("known at 3500");
    let rows: Vec<u64> = w.procs[&42].regions.keys().copied().collect();
    // The mmap (3000) and the mprotect (2500, handled after it) applied.
    assert_eq!(
        rows,
        [
            0x7f00_0000_0000,
            0x7f00_0001_0000,
            0x7f00_0002_0000,
            0x7f00_0002_1000
        ]
    );
    let w = crate::cmd::replay::at::world_at(&rec, 5_500).expect("known at 5500");
    assert!(!w.procs[&50].exited && w.procs[&50].regions.len() == 4);
    assert!(
        crate::cmd::replay::at::world_at(&rec, 1_500).is_err(),
        "before the first checkpoint"
    );
    assert!(
        crate::cmd::replay::at::world_at(&rec, 9_000).is_err(),
        "after the end"
    );
}

#[test]
fn every_cut_reads_up_to_the_cut() {
    let whole = bytes(&sample());
    let all = Recording::from_bytes(whole.clone())
        .expect("valid")
        .records()
        .count();
    for n in 0..whole.len() {
        let Ok(rec) = Recording::from_bytes(whole[..n].to_vec()) else {
            continue;
        };
        let got: Vec<_> = rec.records().collect();
        let last = got.last().expect("at least the reason it stopped");
        assert!(
            matches!(last, Err(Stop::Cut { .. } | Stop::NoEnd)),
            "cut at {n}: {last:?}"
        );
        assert!(got.len() <= all);
        assert!(got[..got.len() - 1].iter().all(Result::is_ok));
    }
}

#[test]
fn a_changed_byte_is_damage_or_a_cut_never_a_wrong_record() {
    let whole = bytes(&sample());
    let good: Vec<String> = Recording::from_bytes(whole.clone())
        .expect("valid")
        .records()
        .map(|r| format!("{r:?}"))
        .collect();
    for at in 10..whole.len() {
        let mut b = whole.clone();
        b[at] ^= 0x10;
        let Ok(rec) = Recording::from_bytes(b) else {
            continue;
        };
        let got: Vec<String> = rec.records().map(|r| format!("{r:?}")).collect();
        // Records before the damage are the same; then it stops.
        let same = got.iter().zip(&good).take_while(|(a, b)| a == b).count();
        assert!(same + 1 >= got.len(), "byte {at}: a wrong record was read");
    }
}

#[test]
fn short_files_are_refused_not_a_panic() {
    // Found by the fuzzer: shorter than the magic, and not its start.
    for data in [
        &b""[..],
        b"P",
        b"PMAP/PC",
        b"PMAPREC\0\x01",
        b"ELF\x7f and more bytes",
    ] {
        assert!(Recording::from_bytes(data.to_vec()).is_err(), "{data:?}");
    }
}

/// A recording written by the pmap of format version 1 (this file's
/// `sample()` as it was then: no insight, `ns_pid` or joins) reads as the
/// same records, with nothing where version 1 had nothing.
#[test]
fn a_version_1_recording_is_still_read() {
    let v1 = include_bytes!("v1_sample.pmaprec");
    assert_eq!(&v1[8..10], &1u16.to_le_bytes(), "the fixture is version 1");
    let rec = Recording::from_bytes(v1.to_vec()).expect("version 1 is read");
    let got: Vec<Record> = rec.records().map(|r| r.expect("no damage")).collect();
    // What the version 2 sample holds, less what version 1 did not write.
    let want: Vec<Record> = sample()
        .into_iter()
        .skip(1)
        .filter(|r| !matches!(r, Record::Table { .. } | Record::Joined { .. }))
        .filter(|r| !matches!(r, Record::Delta { t: 4_050, .. }))
        .map(|mut r| {
            match &mut r {
                Record::Delta { delta, notes, .. } => {
                    delta.ns_pid = 0;
                    *notes = DeltaNotes::default();
                }
                Record::Summary { insight, .. } => **insight = SummaryInsight::default(),
                _ => {}
            }
            r
        })
        .collect();
    assert_eq!(format!("{got:?}"), format!("{want:?}"));
    let w = crate::cmd::replay::at::world_at(&rec, 3_500).expect("known at 3500");
    assert_eq!(w.procs[&42].regions.len(), 4);
}

/// A named stack seen again costs its number only, whether the insight
/// hands out the same shared note or an equal one.
#[test]
fn named_stacks_are_written_once() {
    let first = bytes(&sample()[..3]).len();
    let again = |stack: Rc<StackNote>| {
        let mut recs = sample()[..3].to_vec();
        recs.push(noted(
            call(
                3_100,
                Call::Munmap,
                &[0x7f00_0002_0000, 0x1000],
                0,
                Change::default(),
            ),
            Some(stack),
            vec![],
            0,
        ));
        bytes(&recs).len() - first
    };
    let bare = {
        let mut recs = sample()[..3].to_vec();
        recs.push(call(
            3_100,
            Call::Munmap,
            &[0x7f00_0002_0000, 0x1000],
            0,
            Change::default(),
        ));
        bytes(&recs).len() - first
    };
    // Its number, and the flags' second byte (a delta with a captured
    // stack has it anyway).
    assert_eq!(
        again(named_stack(2)),
        bare + 2,
        "an equal stack: its number"
    );
    assert!(
        again(named_stack(3)) > bare + 10,
        "a new stack is written out"
    );
}
