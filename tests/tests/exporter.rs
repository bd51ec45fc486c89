//! `pmap exporter` end to end: a real Prometheus server (Debian package
//! `prometheus`, installed by `cargo xtask deps`) scrapes the exporter on
//! 127.0.0.1 every 500 ms, and the tests ask it through its HTTP API what
//! it stored; the targets are real processes.
//!
//! Root and a real kernel are needed (eBPF), and `bpftool` for the check
//! that nothing is left in the kernel after SIGTERM.

use std::{process::Command, time::Duration};

use pmap_tests::exporter_harness::{
    Exporter, NOBODY, Prometheus, Target, TestCgroup, http_get, mapped_bytes, maps_lines,
    vm_rss_kib,
};
use pmap_tests::pmap_bin;
use pmap_tests::trace_harness::serial;

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn prometheus_stores_the_mappings_of_a_stopped_process_exactly() {
    let _serial = serial();
    let target = Target::start(&["maps", "3000"]);
    target.stop();
    let lines = maps_lines(target.pid);
    // `--top` large enough for the target to be exported whatever else
    // runs on the machine (with `--top 5`, five bigger processes left it
    // out: CI failed so once).
    let exporter = Exporter::start(&["--all", "--top", "1000"]);
    assert!(
        exporter.proc.stderr().contains("counting with eBPF"),
        "as root the exporter counts with eBPF:\n{}",
        exporter.proc.stderr()
    );
    // Every process's smaps is read at each scrape (`--all`): with a
    // process of 60,000 regions on the machine, a debug build took 0.6 s,
    // past the default 0.5 s scrape timeout, and no scrape was stored.
    let prom = Prometheus::start_every(exporter.port, Duration::from_secs(3));
    let pid = target.pid;
    let got = prom.wait_value(&format!("pmap_mappings{{pid=\"{pid}\"}}"), WAIT, |_| true);
    assert_eq!(
        got as usize, lines,
        "pmap_mappings vs lines of /proc/{pid}/maps"
    );
    let series = prom.query(&format!("pmap_mappings{{pid=\"{pid}\"}}"));
    assert_eq!(series[0].0["comm"], "exporter_target", "{series:?}");
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    let cgroup = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or("");
    assert_eq!(series[0].0["cgroup"], cgroup, "{series:?}");

    let max: f64 = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .expect("max_map_count")
        .trim()
        .parse()
        .expect("a number");
    prom.wait_value("pmap_max_map_count", WAIT, |v| v == max);
    let ratio = prom.wait_value(
        &format!("pmap_mappings_ratio{{pid=\"{pid}\"}}"),
        WAIT,
        |_| true,
    );
    assert!((ratio - lines as f64 / max).abs() < 1e-9, "ratio {ratio}");
    // The kinds (--summary's categories) cover the whole map.
    let mapped = prom.wait_value(
        &format!("sum(pmap_mapped_bytes{{pid=\"{pid}\"}})"),
        WAIT,
        |_| true,
    );
    assert_eq!(
        mapped as u64,
        mapped_bytes(pid),
        "sum of pmap_mapped_bytes by kind"
    );
    let anon = prom.query(&format!(
        "pmap_mapped_bytes{{pid=\"{pid}\",kind=\"anonymous\"}}"
    ));
    assert!(
        anon.first().is_some_and(|(_, v)| *v >= 1500.0 * 4096.0),
        "its 1,500 read-write pages are anonymous: {anon:?}"
    );
    prom.wait_value(
        &format!("pmap_syscalls_total{{pid=\"{pid}\",syscall=\"mmap\"}}"),
        WAIT,
        |_| true,
    );
    // The exporter times itself.
    prom.wait_value("pmap_exporter_scrape_duration_seconds", WAIT, |v| v > 0.0);
    drop(prom);
    exporter.stop_cleanly(true);
}

#[test]
fn a_w_x_flip_shows_in_wx_flips_total() {
    let _serial = serial();
    // Counting starts when the exporter has attached: start it first.
    let exporter = Exporter::start(&["--comm", "exporter_target"]);
    let prom = Prometheus::start(exporter.port);
    let flipper = Target::start(&["wx", "5"]);
    let plain = Target::start(&["maps", "10"]);
    let flips = prom.wait_value(
        &format!("pmap_wx_flips_total{{pid=\"{}\"}}", flipper.pid),
        WAIT,
        |_| true,
    );
    assert_eq!(flips, 10.0, "5 rounds of rw- -> r-x -> rw- are 10 flips");
    let mprotects = prom.wait_value(
        &format!(
            "pmap_syscalls_total{{pid=\"{}\",syscall=\"mprotect\"}}",
            flipper.pid
        ),
        WAIT,
        |_| true,
    );
    assert!(mprotects >= 10.0, "mprotect calls: {mprotects}");
    let none = prom.wait_value(
        &format!("pmap_wx_flips_total{{pid=\"{}\"}}", plain.pid),
        WAIT,
        |_| true,
    );
    assert_eq!(none, 0.0, "a process that never flipped");
    // Its mmaps of 10 regions raised its region count.
    let splits = prom.wait_value(
        &format!("pmap_mapping_splits_total{{pid=\"{}\"}}", plain.pid),
        WAIT,
        |_| true,
    );
    assert!(splits >= 9.0, "pmap_mapping_splits_total {splits}");
    // --comm: nothing else is shown, not even the test itself.
    let comms = prom.query("count by (comm) (pmap_mappings{pid!=\"other\"})");
    assert!(
        comms.iter().all(|(m, _)| m["comm"] == "exporter_target"),
        "--comm exporter_target shows others: {comms:?}"
    );
    drop(prom);
    exporter.stop_cleanly(true);
}

#[test]
fn a_thousand_short_lived_processes_leave_no_series_and_no_growth() {
    let _serial = serial();
    // Only the test's own processes: with --all, the exporter also reads
    // every other process's smaps at each scrape, and its memory then
    // follows the largest map on the machine (a compiler starting between
    // two waves grew it by 2.5 MiB), which says nothing about processes
    // that came and went. --top 2000: all 250 of a wave are series.
    let exporter = Exporter::start(&["--comm", "exporter_target", "--top", "2000"]);
    // Reading 250 smaps in a debug build on a loaded machine can take
    // over a second, past the default 500 ms scrape timeout.
    let prom = Prometheus::start_every(exporter.port, Duration::from_secs(3));
    let mine = "pmap_mappings{comm=\"exporter_target\"}";
    let mut rss = Vec::new();
    let mut entries = Vec::new();
    // Four waves of 250: each lives until Prometheus has scraped all of
    // it, then is killed, and must leave /metrics at the next scrape.
    for wave in 0..4 {
        let targets: Vec<Target> = (0..250).map(|_| Target::start(&["hold"])).collect();
        prom.wait_value(&format!("count({mine})"), WAIT, |v| v == 250.0);
        let counted = prom.wait_value(
            "count(pmap_syscalls_total{comm=\"exporter_target\",syscall=\"mmap\"} > 0)",
            WAIT,
            |_| true,
        );
        assert_eq!(
            counted, 250.0,
            "wave {wave}: every process's mmap calls counted"
        );
        let pids: Vec<u32> = targets.iter().map(|t| t.pid).collect();
        drop(targets);
        prom.wait_empty(mine, WAIT);
        // The exporter's own view: no series, and no kernel entry, of a
        // dead process.
        let text = exporter.metrics();
        for pid in &pids {
            assert!(
                !text.contains(&format!("pid=\"{pid}\"")),
                "wave {wave}: exited process {pid} still in /metrics"
            );
        }
        entries.push(kernel_entries(&text));
        rss.push(vm_rss_kib(exporter.proc.child.id()));
    }
    eprintln!("exporter RSS after each wave: {rss:?} KiB; kernel entries: {entries:?}");
    // The first wave warms the allocator up; after it, a leak of even 2 KiB
    // per process that came and went would add 1 MiB over the last 500.
    assert!(
        rss[3] <= rss[1] + 1024,
        "exporter RSS grows with processes that came and went: {rss:?} KiB"
    );
    assert!(
        entries[3] <= entries[0] + 50,
        "kernel entries of exited processes are not removed: {entries:?}"
    );
    drop(prom);
    exporter.stop_cleanly(true);
}

/// The exporter's `pmap_exporter_kernel_processes`.
fn kernel_entries(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("pmap_exporter_kernel_processes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pmap_exporter_kernel_processes in:\n{text}"))
}

#[test]
fn unprivileged_it_polls_serves_gauges_and_names_what_it_cannot_count() {
    let _serial = serial();
    let target = Target::start_as(Some(&NOBODY), &["maps", "200"]);
    target.stop();
    let lines = maps_lines(target.pid);
    let exporter = Exporter::start_as(Some(&NOBODY), &["--all", "--top", "1000"]);
    let err = exporter.proc.stderr();
    for m in [
        "pmap_syscalls_total",
        "pmap_mapping_splits_total",
        "pmap_wx_flips_total",
        "pmap_events_lost_total",
    ] {
        assert!(err.contains(m), "stderr does not name {m}:\n{err}");
    }
    assert!(err.contains("CAP_BPF"), "stderr does not say why:\n{err}");
    let prom = Prometheus::start(exporter.port);
    let got = prom.wait_value(
        &format!("pmap_mappings{{pid=\"{}\"}}", target.pid),
        WAIT,
        |_| true,
    );
    assert_eq!(got as usize, lines, "pmap_mappings of nobody's process");
    let unavailable = prom.query("pmap_exporter_unavailable");
    assert_eq!(unavailable.len(), 4, "{unavailable:?}");
    assert!(
        prom.query("pmap_syscalls_total").is_empty(),
        "poll serves no counters"
    );
    prom.wait_value("pmap_exporter_backend{backend=\"poll\"}", WAIT, |v| {
        v == 1.0
    });
    // Root's processes cannot be read by nobody: counted, not shown.
    let unreadable = prom.wait_value(
        "pmap_exporter_processes{state=\"unreadable\"}",
        WAIT,
        |_| true,
    );
    assert!(
        unreadable >= 1.0,
        "this test runs as root: unreadable to nobody"
    );
    drop(prom);
    exporter.stop_cleanly(false);
}

#[test]
fn refuses_addresses_beyond_loopback() {
    let out = Command::new(pmap_bin())
        .args(["exporter", "--listen", "0.0.0.0:9256"])
        .output()
        .expect("pmap runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("loopback"), "{err}");
}

#[test]
fn only_get_metrics_is_served() {
    let _serial = serial();
    let exporter = Exporter::start(&["--backend", "poll"]);
    let (code, _) = http_get(exporter.port, "/nothing").expect("answers");
    assert_eq!(code, 404);
    let text = exporter.metrics();
    assert!(text.contains("# TYPE pmap_mappings gauge"), "{text}");
    exporter.stop_cleanly(false);
}

#[test]
fn cgroup_selects_the_processes_in_it_and_below_it() {
    let _serial = serial();
    // Declared first, dropped last: after its processes are gone.
    let cg = TestCgroup::new();
    let inside = Target::start(&["maps", "30"]);
    cg.adopt(inside.pid, false);
    let below = Target::start(&["maps", "40"]);
    cg.adopt(below.pid, true);
    let outside = Target::start(&["maps", "50"]);
    // The form under the mount point, as an operator copies it.
    let exporter = Exporter::start(&["--cgroup", &cg.dir.to_string_lossy()]);
    let text = exporter.metrics();
    let mappings: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("pmap_mappings{"))
        .collect();
    for (t, cgroup) in [
        (&inside, cg.path.clone()),
        (&below, format!("{}/inner", cg.path)),
    ] {
        let line = mappings
            .iter()
            .find(|l| l.contains(&format!("pid=\"{}\"", t.pid)))
            .unwrap_or_else(|| panic!("{} in {cgroup} not shown: {mappings:?}", t.pid));
        assert!(line.contains(&format!("cgroup=\"{cgroup}\"")), "{line}");
    }
    let others: Vec<&&str> = mappings
        .iter()
        .filter(|l| !l.contains("pid=\"other\""))
        .filter(|l| !l.contains(&format!("cgroup=\"{}", cg.path)))
        .collect();
    assert!(others.is_empty(), "outside the cgroup: {others:?}");
    assert!(!text.contains(&format!("pid=\"{}\"", outside.pid)));
    exporter.stop_cleanly(true);
}
