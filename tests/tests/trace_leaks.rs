//! `pmap replay --leaks` and `pmap diff`: who mapped what is still mapped
//! at the end of a recording, and what changed between two moments, live
//! processes, core files and `pmap --json` snapshots.
//!
//! Root and a real kernel are needed (the tracer's eBPF backend).

use std::{process::Command, time::Duration};

use pmap_tests::{
    recording::{pmap, rec_path, text},
    trace_harness::serial,
};

/// `leaky` keeps 3 x 256 KiB from `leak_big` and 2 x 64 KiB from
/// `leak_small`, and maps and unmaps 128 KiB in `no_leak`: `--leaks` names
/// exactly those two functions of the program, with those sizes (the
/// dynamic loader's and libc's own mappings are listed too: they were made
/// during the recording as well).
#[test]
fn leaks_name_the_functions_that_leaked() {
    let _serial = serial();
    let rec = rec_path("leaky.pmaprec");
    let rec_s = rec.to_string_lossy().into_owned();
    let leaky = pmap_tests::workload_bin("leaky");
    let out = pmap(&[
        "trace",
        "--stacks",
        "--record",
        &rec_s,
        "-o",
        "/dev/null",
        "--",
        &leaky.to_string_lossy(),
    ]);
    assert!(out.status.success(), "pmap trace: {}", text(&out.stderr));
    let out = pmap(&["replay", "--leaks", &rec_s]);
    assert!(
        out.status.success(),
        "replay --leaks: {}",
        text(&out.stderr)
    );
    let report = text(&out.stdout);
    let ours: Vec<&str> = report.lines().filter(|l| l.contains("leaky::")).collect();
    assert_eq!(
        ours.len(),
        2,
        "two leaking functions of the program:\n{report}"
    );
    assert!(
        ours[0].trim_start().starts_with("768K") && ours[0].contains("leaky::leak_big+"),
        "largest first, leak_big's 768K:\n{report}"
    );
    assert!(
        ours[1].trim_start().starts_with("128K") && ours[1].contains("leaky::leak_small+"),
        "then leak_small's 128K:\n{report}"
    );
    assert!(
        !report.contains("no_leak"),
        "no_leak unmapped what it mapped:\n{report}"
    );

    let out = pmap(&["replay", "--leaks", "--folded", &rec_s]);
    let folded = text(&out.stdout);
    for (function, bytes) in [("leak_big", 786_432), ("leak_small", 131_072)] {
        let line = folded
            .lines()
            .find(|l| l.contains(&format!("leaky::{function}+")))
            .unwrap_or_else(|| panic!("no folded stack through {function}:\n{folded}"));
        assert!(
            line.ends_with(&format!(" {bytes}")) && line.contains(";mmap+"),
            "`outer;...;mmap BYTES` for {function}: {line}"
        );
    }
}

/// Sums what the `+` rows of a `pmap diff` say `function` mapped (KiB):
/// `(mapped by SITE NK, SITE NK)`.
fn added_kb(diff: &str, function: &str) -> u64 {
    diff.lines()
        .filter(|l| l.starts_with("  + "))
        .filter_map(|l| l.split("(mapped by ").nth(1))
        .flat_map(|list| list.trim_end_matches(')').split(", "))
        .filter(|site| site.contains(function))
        .filter_map(|site| {
            site.rsplit(' ')
                .next()?
                .strip_suffix('K')?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// `pmap diff` between two moments of a recording (who mapped each added
/// region, from its stacks), and between a live process, a saved `pmap
/// --json -x` snapshot of it and a core file of it.
#[test]
fn diff_compares_recording_moments_pids_cores_and_snapshots() {
    let _serial = serial();
    let rec = rec_path("diff.pmaprec");
    let rec_s = rec.to_string_lossy().into_owned();
    let leaky = pmap_tests::workload_bin("leaky");
    let out = pmap(&[
        "trace",
        "--stacks",
        "--record",
        &rec_s,
        "-o",
        "/dev/null",
        "--",
        &leaky.to_string_lossy(),
    ]);
    assert!(out.status.success(), "pmap trace: {}", text(&out.stderr));
    // From the first map (the program not started yet) to 100 ms before
    // the last record (leaky lives 300 ms after its last call).
    let info = text(&pmap(&["replay", "--info", &rec_s]).stdout);
    let secs = |key: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_suffix('s')?.parse().ok())
            .unwrap_or_else(|| panic!("no `{key}` in --info:\n{info}"))
    };
    let (first, last) = (secs("first map: +"), secs("last record: +"));
    let a = format!("{rec_s}@+{:.6}", first + 0.000_001);
    let b = format!("{rec_s}@+{:.6}", last - 0.1);
    let out = pmap(&["diff", &a, &b]);
    assert!(out.status.success(), "diff {a} {b}: {}", text(&out.stderr));
    let d = text(&out.stdout);
    assert_eq!(
        added_kb(&d, "leaky::leak_big+"),
        768,
        "leak_big's 3 x 256K:\n{d}"
    );
    assert_eq!(
        added_kb(&d, "leaky::leak_small+"),
        128,
        "leak_small's 2 x 64K:\n{d}"
    );
    assert!(
        !d.contains("no_leak"),
        "no_leak's mappings are gone at the end:\n{d}"
    );
    assert!(
        d.contains("regions: ") && d.contains("size "),
        "totals:\n{d}"
    );

    // A live process, its snapshot, its core.
    let mut sleeper = Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("starting sleep");
    let pid = sleeper.id().to_string();
    std::thread::sleep(Duration::from_millis(200));
    let snap = rec_path("sleep.json");
    let out = pmap(&["--json", "-x", &pid]);
    assert!(
        out.status.success(),
        "pmap --json -x: {}",
        text(&out.stderr)
    );
    std::fs::write(&snap, &out.stdout).expect("writing the snapshot");
    let core_prefix = rec_path("sleep-core");
    let gcore = pmap_tests::tool("gcore", "gdb");
    let st = Command::new(gcore)
        .arg("-o")
        .arg(&core_prefix)
        .arg(&pid)
        .output()
        .expect("running gcore");
    assert!(st.status.success(), "gcore: {}", text(&st.stderr));
    let core = format!("{}.{pid}", core_prefix.to_string_lossy());
    let snap_s = snap.to_string_lossy().into_owned();

    let out = pmap(&["diff", &snap_s, &pid]);
    let d = text(&out.stdout);
    assert!(
        out.status.success(),
        "diff snapshot pid: {}",
        text(&out.stderr)
    );
    assert!(
        d.contains("(0 removed, 0 added,"),
        "a sleeping process did not change:\n{d}"
    );
    // The snapshot's RSS total on the left (gcore, which read the process
    // since, may have faulted pages in: the right one is read now).
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&snap).expect("snapshot")).expect("JSON");
    let rss = v["totals"]["fields"]["Rss"]
        .as_u64()
        .expect("totals.fields.Rss");
    assert!(
        d.lines()
            .any(|l| l.starts_with(&format!("rss: {rss}K -> "))),
        "the snapshot's RSS, {rss}K, on the left:\n{d}"
    );

    let out = pmap(&["diff", &core, &pid]);
    let d = text(&out.stdout);
    assert!(out.status.success(), "diff core pid: {}", text(&out.stderr));
    assert!(d.contains("a core file records no device or inode"), "{d}");
    assert!(d.contains("rss: not known for core"), "{d}");
    // What a core leaves out ([vvar]) shows as added: said, not hidden.
    assert!(d.lines().any(|l| l.starts_with("regions: ")), "{d}");

    let out = pmap(&["diff", &snap_s, &core]);
    assert!(
        out.status.success(),
        "diff snapshot core: {}",
        text(&out.stderr)
    );

    // A recording without its moment, and nonsense: one clear line.
    let out = pmap(&["diff", &rec_s, &pid]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("say which moment"),
        "{}",
        text(&out.stderr)
    );
    let out = pmap(&["diff", "/nonexistent/x", &pid]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot read it"),
        "{}",
        text(&out.stderr)
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}
