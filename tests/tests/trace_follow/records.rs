//! Reading the tracer's JSON records, and its `tracing pid` line.

use pmap_tests::trace_harness::Tracer;
use serde_json::Value;

pub(crate) const MIB: u64 = 1 << 20;

/// The JSON records the tracer printed.
pub(crate) fn records(t: &Tracer) -> Vec<Value> {
    t.stdout()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

pub(crate) fn of_type<'a>(rs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    rs.iter().filter(|r| r["type"] == kind).collect()
}

pub(crate) fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(u64::MAX)
}

/// The process id in the tracer's `tracing pid N` line.
pub(crate) fn traced_pid(line: &str) -> u32 {
    line.split("tracing pid ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"))
}

/// The processes a poll found as children (`joined` records by `fork`).
pub(crate) fn joined_by_fork(rs: &[Value]) -> Vec<u64> {
    rs.iter()
        .filter(|r| r["type"] == "joined" && r["by"] == "fork")
        .map(|r| u(&r["pid"]))
        .collect()
}

/// Whether a delta of one of `pids` adds a 7 MiB region.
pub(crate) fn maps_7_mib(rs: &[Value], pids: &[u64]) -> bool {
    rs.iter().any(|d| {
        d["type"] == "delta"
            && pids.contains(&u(&d["pid"]))
            && d["added"]
                .as_array()
                .is_some_and(|a| a.iter().any(|r| u(&r["size"]) == 7 * MIB))
    })
}
