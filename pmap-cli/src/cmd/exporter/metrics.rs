//! The metrics of one collection, in the Prometheus text format
//! (prometheus-client's encoder). A fresh registry per collection: series
//! of processes that are gone are simply not in it.

use std::sync::atomic::AtomicU64;

use pmap_common::counters::{ProcCounters, SYSCALLS};
use prometheus_client::{
    encoding::prometheus_text,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};

use super::collect::Collection;

/// The counters only the eBPF backend can serve, named as in /metrics.
pub const KERNEL_ONLY: &[&str] = &[
    "pmap_syscalls_total",
    "pmap_mapping_splits_total",
    "pmap_wx_flips_total",
    "pmap_events_lost_total",
];

pub use prometheus_text::CONTENT_TYPE;

type Labels = Vec<(&'static str, String)>;
type GaugeF = Gauge<f64, AtomicU64>;

/// How the exporter runs, for the metrics about itself.
pub struct Backend<'a> {
    /// "ebpf" or "poll".
    pub name: &'a str,
}

/// Renders `c`; `duration` is how long collecting it took.
pub fn render(c: &Collection, backend: &Backend, duration: f64) -> String {
    let mut reg = Registry::default();
    let mappings = Family::<Labels, Gauge>::default();
    let ratio = Family::<Labels, GaugeF>::default();
    let rwx = Family::<Labels, Gauge>::default();
    let mapped = Family::<Labels, Gauge>::default();
    let rss = Family::<Labels, Gauge>::default();
    let syscalls = Family::<Labels, Counter>::default();
    let splits = Family::<Labels, Counter>::default();
    let flips = Family::<Labels, Counter>::default();
    let max = c.max_map_count.max(1) as f64;

    let series = |labels: Labels, maps: u64, w: u64, counters: Option<&ProcCounters>| {
        mappings.get_or_create(&labels).set(maps as i64);
        // A ratio of a sum over processes would mean nothing: each process
        // has its own limit.
        if labels[0].1 != "other" {
            ratio.get_or_create(&labels).set(maps as f64 / max);
        }
        rwx.get_or_create(&labels).set(w as i64);
        if let Some(k) = counters {
            for (i, (_, name)) in SYSCALLS.iter().enumerate() {
                let mut l = labels.clone();
                l.push(("syscall", (*name).to_string()));
                syscalls.get_or_create(&l).inc_by(k.syscalls[i]);
            }
            splits.get_or_create(&labels).inc_by(k.splits);
            flips.get_or_create(&labels).inc_by(k.wx_flips);
        }
    };
    let kernel = c.lost.is_some();
    for s in &c.shown {
        let labels: Labels = vec![
            ("pid", s.pid.to_string()),
            ("comm", s.comm.clone()),
            ("cgroup", s.cgroup.clone()),
        ];
        // With eBPF, a process that made no counted call yet shows zeros.
        let zero = ProcCounters::default();
        let k = kernel.then(|| s.counters.as_ref().unwrap_or(&zero));
        series(labels.clone(), s.mappings, s.rwx, k);
        for kind in &s.kinds {
            let mut l = labels.clone();
            l.push(("kind", kind.kind.clone()));
            mapped.get_or_create(&l).set(kind.size as i64);
            rss.get_or_create(&l).set(kind.rss as i64);
        }
    }
    let other: Labels = vec![
        ("pid", "other".into()),
        ("comm", "other".into()),
        ("cgroup", String::new()),
    ];
    let o = &c.other;
    series(other, o.mappings, o.rwx, kernel.then_some(&o.counters));

    reg.register(
        "pmap_mappings",
        "Memory regions (lines of /proc/PID/maps)",
        mappings,
    );
    let g = Gauge::<i64>::default();
    g.set(c.max_map_count as i64);
    reg.register(
        "pmap_max_map_count",
        "vm.max_map_count: most regions a process may have",
        g,
    );
    reg.register(
        "pmap_mappings_ratio",
        "pmap_mappings / pmap_max_map_count",
        ratio,
    );
    reg.register_with_unit(
        "pmap_mapped",
        "Mapped size by kind of memory (pmap --summary's categories; top N processes only)",
        Unit::Bytes,
        mapped,
    );
    reg.register_with_unit(
        "pmap_rss",
        "Resident size by kind of memory (pmap --summary's categories; top N processes only)",
        Unit::Bytes,
        rss,
    );
    reg.register(
        "pmap_rwx_mappings",
        "Regions both writable and executable",
        rwx,
    );
    if let Some(lost) = c.lost {
        reg.register(
            "pmap_syscalls",
            "Memory-mapping syscalls made (eBPF)",
            syscalls,
        );
        reg.register(
            "pmap_mapping_splits",
            "Memory-mapping calls after which the process had more regions (eBPF)",
            splits,
        );
        reg.register(
            "pmap_wx_flips",
            "mprotect calls that made writable memory executable or executable memory writable (eBPF)",
            flips,
        );
        let l = Counter::<u64>::default();
        l.inc_by(lost);
        reg.register(
            "pmap_events_lost",
            "Counter updates the kernel could not make (eBPF)",
            l,
        );
        let e = Gauge::<i64>::default();
        e.set(c.kernel_entries.unwrap_or(0) as i64);
        reg.register(
            "pmap_exporter_kernel_processes",
            "Processes with counters in the kernel map (removed when they exit)",
            e,
        );
    } else {
        let unavailable = Family::<Labels, Gauge>::default();
        for m in KERNEL_ONLY {
            unavailable
                .get_or_create(&vec![("metric", (*m).to_string())])
                .set(1);
        }
        reg.register(
            "pmap_exporter_unavailable",
            "Metrics this exporter cannot serve: the poll backend has no syscall counters",
            unavailable,
        );
    }
    let procs = Family::<Labels, Gauge>::default();
    for (state, n) in [
        ("selected", c.selected),
        ("shown", c.shown.len()),
        ("other", c.other.processes),
        ("unreadable", c.unreadable),
    ] {
        procs
            .get_or_create(&vec![("state", state.to_string())])
            .set(n as i64);
    }
    reg.register(
        "pmap_exporter_processes",
        "Processes selected; shown with series of their own; summed into pid=\"other\"; whose maps could not be read",
        procs,
    );
    let info = Family::<Labels, Gauge>::default();
    info.get_or_create(&vec![("backend", backend.name.to_string())])
        .set(1);
    reg.register(
        "pmap_exporter_backend",
        "Where the counters come from (ebpf or poll)",
        info,
    );
    let d = GaugeF::default();
    d.set(duration);
    reg.register_with_unit(
        "pmap_exporter_scrape_duration",
        "Time taken to collect these metrics",
        Unit::Seconds,
        d,
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_text::encode(&mut out, &reg);
    out
}
