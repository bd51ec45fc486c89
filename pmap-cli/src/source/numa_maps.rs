//! `/proc/PID/numa_maps`: each region's NUMA policy and the pages it has
//! on each node (`pmap -L`).

use std::collections::BTreeMap;

use super::pid_dir::PidDir;

/// NUMA residency of one region: its policy and KiB per node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Numa {
    pub policy: String,
    pub nodes: BTreeMap<u32, u64>,
}

/// The residency of each region of the process of `dir`, by start address;
/// empty if the file cannot be read (a kernel without NUMA).
pub fn read(dir: &PidDir) -> BTreeMap<u64, Numa> {
    dir.read("numa_maps")
        .map(|raw| parse(&raw))
        .unwrap_or_default()
}

/// Lines `START POLICY [key=value...]`: `N<node>=<pages>` counts pages of
/// `kernelpagesize_kB=` KiB (4 unless given). Lines that do not start so
/// are skipped.
pub fn parse(raw: &[u8]) -> BTreeMap<u64, Numa> {
    let mut out = BTreeMap::new();
    let text = String::from_utf8_lossy(raw);
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(addr), Some(policy)) = (it.next(), it.next()) else {
            continue;
        };
        let Ok(addr) = u64::from_str_radix(addr, 16) else {
            continue;
        };
        let mut page_kb = 4;
        let mut pages = Vec::new();
        for tok in it {
            if let Some(v) = tok.strip_prefix("kernelpagesize_kB=") {
                page_kb = v.parse().unwrap_or(4);
            } else if let Some((n, v)) = tok.strip_prefix('N').and_then(|t| t.split_once('='))
                && let (Ok(n), Ok(v)) = (n.parse::<u32>(), v.parse::<u64>())
            {
                pages.push((n, v));
            }
        }
        let nodes = pages.into_iter().map(|(n, p)| (n, p * page_kb)).collect();
        out.insert(
            addr,
            Numa {
                policy: policy.to_string(),
                nodes,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_per_node_in_kib() {
        let m = parse(
            b"7f0000000000 default anon=3 dirty=3 N0=2 N1=1 kernelpagesize_kB=4\n\
              7f0000200000 bind:1 file=/x huge N1=1 kernelpagesize_kB=2048\n\
              garbage\n",
        );
        let a = &m[&0x7f00_0000_0000];
        assert_eq!(a.policy, "default");
        assert_eq!(a.nodes, BTreeMap::from([(0, 8), (1, 4)]));
        assert_eq!(m[&0x7f00_0020_0000].nodes, BTreeMap::from([(1, 2048)]));
        assert_eq!(m.len(), 2);
    }
}
