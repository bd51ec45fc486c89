//! What the tracer's tables are compared with (`/usr/bin/pmap`,
//! /proc/PID/maps) and readable diffs when they differ.

use std::process::Command;

use super::output::Table;
use super::tracer::Tracer;

/// The reference implementation every table is compared with.
pub const REFERENCE_PMAP: &str = "/usr/bin/pmap";

/// `start-end perms offset dev inode name`, all hex without padding but
/// the device and inode, for comparing the tracer's JSON regions with
/// /proc/PID/maps independently of any table format.
fn normal_line(
    start: u64,
    end: u64,
    perms: &str,
    offset: u64,
    dev: &str,
    inode: u64,
    name: &str,
) -> String {
    format!("{start:x}-{end:x} {perms} {offset:x} {dev} {inode} {name}")
}

fn hex(v: &serde_json::Value) -> u64 {
    v.as_str()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .or_else(|| v.as_u64())
        .unwrap_or_else(|| panic!("not an address: {v}"))
}

/// One JSON region (`{"start":"0x..","end":..,"perms":..,...}`) as a normalised line.
pub fn json_region_line(r: &serde_json::Value) -> String {
    normal_line(
        hex(&r["start"]),
        hex(&r["end"]),
        r["perms"].as_str().unwrap_or("?"),
        r["offset"].as_u64().unwrap_or_else(|| hex(&r["offset"])),
        r["dev"].as_str().unwrap_or("?"),
        r["inode"].as_u64().unwrap_or(u64::MAX),
        r["name"].as_str().unwrap_or("?"),
    )
}

/// /proc/PID/maps as normalised lines.
pub fn maps_lines(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/maps"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/maps: {e}"));
    String::from_utf8_lossy(&raw)
        .lines()
        .map(|l| {
            let mut f = l.splitn(6, ' ');
            let mut next = || f.next().unwrap_or("");
            let (range, perms, off, dev, inode) = (next(), next(), next(), next(), next());
            let name = next().trim_start();
            let (s, e) = range.split_once('-').unwrap_or(("0", "0"));
            let h = |x: &str| u64::from_str_radix(x, 16).unwrap_or(u64::MAX);
            normal_line(
                h(s),
                h(e),
                perms,
                h(off),
                dev,
                inode.parse().unwrap_or(u64::MAX),
                name,
            )
        })
        .collect()
}

/// `pmap [FLAGS] PID` by the reference implementation, as lines.
pub fn reference_pmap(pid: u32, flags: &[&str]) -> Vec<String> {
    let out = Command::new(REFERENCE_PMAP)
        .args(flags)
        .arg(pid.to_string())
        .output()
        .unwrap_or_else(|e| panic!("running {REFERENCE_PMAP}: {e} (procps must be installed)"));
    assert!(
        out.status.success(),
        "{REFERENCE_PMAP} {pid} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// A line diff of `expected` and `actual` (longest common subsequence),
/// showing only changed lines with up to 2 lines of context.
pub fn diff(expected: &[String], actual: &[String]) -> String {
    let (n, m) = (expected.len(), actual.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == actual[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && expected[i] == actual[j] {
            ops.push((' ', &expected[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            ops.push(('+', &actual[j]));
            j += 1;
        } else {
            ops.push(('-', &expected[i]));
            i += 1;
        }
    }
    let near = |k: usize| {
        ops[k.saturating_sub(2)..(k + 3).min(ops.len())]
            .iter()
            .any(|o| o.0 != ' ')
    };
    let mut out = String::new();
    let mut skipped = false;
    for (k, (c, l)) in ops.iter().enumerate() {
        if near(k) {
            if skipped {
                out.push_str("  ...\n");
                skipped = false;
            }
            out.push_str(&format!("{c} {l}\n"));
        } else {
            skipped = true;
        }
    }
    out
}

/// Panics with a diff unless the tracer's JSON regions equal /proc/PID/maps.
pub fn assert_regions_match(regions: &[String], maps: &[String], what: &str, tracer: &Tracer) {
    if regions != maps {
        panic!(
            "{what}: the tracer's regions differ from /proc/PID/maps ('-' maps only, '+' tracer only):\n{}\n{}",
            diff(maps, regions),
            tracer.context()
        );
    }
}

/// Panics with a diff unless the tracer's table equals `pmap`'s output.
pub fn assert_table_matches(table: &Table, reference: &[String], what: &str, tracer: &Tracer) {
    if table.body != reference {
        panic!(
            "{what}: the tracer's table differs from `pmap {}` \
             ('-' pmap only, '+' tracer only):\n{}\n{}",
            table.pid,
            diff(reference, &table.body),
            tracer.context()
        );
    }
}

/// The delta stream is complete: starting from the initial table and
/// applying every delta (its `removed` rows go, its `added` rows come) gives
/// exactly the rows of every later table. A change of the map that no delta
/// shows, or shows twice, breaks it. Returns (tables, deltas) seen.
pub fn assert_deltas_replay_to_tables(lines: &[String], tracer: &Tracer) -> (usize, usize) {
    use std::collections::BTreeMap;
    // Rows by start address; `[vsyscall]` is in tables but not in the VMA
    // tree the deltas describe.
    let row_key = |r: &serde_json::Value| r["start"].as_str().unwrap_or_default().to_string();
    let mut replayed: Option<BTreeMap<String, serde_json::Value>> = None;
    let (mut tables, mut deltas) = (0, 0);
    for (i, line) in lines.iter().enumerate() {
        let v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) => continue,
        };
        let rows = |key: &str| -> Vec<serde_json::Value> {
            v[key]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r["name"] != "[vsyscall]")
                .collect()
        };
        match v["type"].as_str() {
            Some("table") => {
                let table: BTreeMap<String, serde_json::Value> = rows("regions")
                    .into_iter()
                    .map(|r| (row_key(&r), r))
                    .collect();
                if let Some(model) = &replayed {
                    let missing: Vec<&serde_json::Value> = table
                        .values()
                        .filter(|r| model.get(&row_key(r)) != Some(r))
                        .collect();
                    let extra: Vec<&serde_json::Value> = model
                        .values()
                        .filter(|r| table.get(&row_key(r)) != Some(r))
                        .collect();
                    assert!(
                        missing.is_empty() && extra.is_empty(),
                        "line {i}: the deltas since the last table do not add up to this \
                         table ({} reason): rows no delta brought: {missing:?}; rows \
                         the deltas left that the table lacks: {extra:?}\n{}",
                        v["reason"],
                        tracer.context()
                    );
                }
                replayed = Some(table);
                tables += 1;
            }
            Some("delta") => {
                let Some(model) = replayed.as_mut() else {
                    continue;
                };
                for r in rows("removed") {
                    assert_eq!(
                        model.remove(&row_key(&r)).as_ref(),
                        Some(&r),
                        "line {i}: a delta removes a row the map did not have: {line}"
                    );
                }
                for r in rows("added") {
                    let old = model.insert(row_key(&r), r);
                    assert!(old.is_none(), "line {i}: a delta adds a row twice: {line}");
                }
                deltas += 1;
            }
            _ => {}
        }
    }
    (tables, deltas)
}
