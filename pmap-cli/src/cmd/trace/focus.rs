//! Focus filters (`--syscall`, `--min-size`, `--tid`, `--name`): which
//! deltas are printed. Tables stay whole, and the summary and insight
//! still count every call: a filter narrows what is shown, not what is
//! known.

use std::collections::BTreeSet;

use super::{
    delta::{Cause, Delta},
    syscalls::Call,
};

/// The filters given; an empty one lets everything through.
#[derive(Clone, Debug, Default)]
pub struct Focus {
    /// Only deltas of these calls (and so no delta without a call).
    pub syscalls: Option<BTreeSet<Call>>,
    /// Only deltas whose rows cover at least this many bytes.
    pub min_size: u64,
    /// Only deltas of calls made by these threads.
    pub tids: Option<BTreeSet<u32>>,
    /// Only deltas with a row whose name contains this text.
    pub name: Option<Vec<u8>>,
}

impl Focus {
    /// Whether `d` is shown.
    pub fn admits(&self, d: &Delta) -> bool {
        if let Some(calls) = &self.syscalls {
            match &d.cause {
                Cause::Syscall(call, _) if calls.contains(call) => {}
                _ => return false,
            }
        }
        if let Some(tids) = &self.tids
            && !tids.contains(&d.tid)
        {
            return false;
        }
        if self.min_size > 0 && size(d) < self.min_size {
            return false;
        }
        if let Some(text) = &self.name {
            let rows = d.change.removed.iter().chain(&d.change.added);
            if !rows.into_iter().any(|r| contains(&r.name, text)) {
                return false;
            }
        }
        true
    }
}

/// The bytes a delta's rows cover: the larger of what it removes and what
/// it adds (a split of a 1 MiB region shows 1 MiB of rows).
fn size(d: &Delta) -> u64 {
    let sum = |rs: &[crate::map::region::Region]| rs.iter().map(|r| r.size()).sum::<u64>();
    sum(&d.change.removed).max(sum(&d.change.added))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// `--syscall mmap,munmap`: names of traced calls.
pub fn parse_syscalls(list: &[String]) -> Result<BTreeSet<Call>, String> {
    list.iter()
        .map(|n| {
            Call::from_name(n.trim()).ok_or_else(|| {
                let known: Vec<&str> = Call::ALL.iter().map(|c| c.name()).collect();
                format!(
                    "--syscall: '{n}' is not a traced call; give names from: {}",
                    known.join(", ")
                )
            })
        })
        .collect()
}

/// `--min-size`: bytes, or a number with a binary unit (`64K`, `1M`,
/// `2G`, `1T`; `KiB` and `KB` mean the same as `K`, as in pmap's tables).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let bad = || {
        format!(
            "--min-size: '{s}' is not a size; give bytes or a number with K, M, G or T (e.g. 64K)"
        )
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(bad()),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("--min-size: '{s}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::{model::Change, region::test_region as r};

    fn delta(
        tid: u32,
        removed: Vec<crate::map::region::Region>,
        added: Vec<crate::map::region::Region>,
    ) -> Delta {
        Delta {
            pid: 1,
            ppid: 0,
            ns_pid: 0,
            tid,
            ktime_ns: 0,
            cause: Cause::Observed,
            change: Change { removed, added },
            superseded: false,
            from_arguments: false,
            fallback: None,
        }
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert!(parse_size("1.5M").is_err());
        assert!(parse_size("K").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn syscall_names_are_checked() {
        let set = parse_syscalls(&["mmap".into(), "munmap".into()]).expect("known names");
        assert!(set.contains(&Call::Mmap) && set.contains(&Call::Munmap));
        let e = parse_syscalls(&["mmap2".into()]).expect_err("unknown name");
        assert!(e.contains("'mmap2'") && e.contains("mprotect"), "{e}");
    }

    #[test]
    fn each_filter_narrows_and_they_combine() {
        let big = delta(7, vec![], vec![r(0x1000, 0x101000, b"rw-p")]);
        let small = delta(8, vec![r(0x1000, 0x2000, b"rw-p")], vec![]);
        let all = Focus::default();
        assert!(all.admits(&big) && all.admits(&small));
        let min = Focus {
            min_size: 64 << 10,
            ..Focus::default()
        };
        assert!(min.admits(&big) && !min.admits(&small));
        let tid = Focus {
            tids: Some([8].into()),
            ..Focus::default()
        };
        assert!(!tid.admits(&big) && tid.admits(&small));
        let both = Focus {
            min_size: 64 << 10,
            tids: Some([8].into()),
            ..Focus::default()
        };
        assert!(!both.admits(&big) && !both.admits(&small));
        // No call behind an observed delta: a syscall filter hides it.
        let calls = Focus {
            syscalls: Some([Call::Mmap].into()),
            ..Focus::default()
        };
        assert!(!calls.admits(&big));
    }

    #[test]
    fn names_match_by_containing_the_text() {
        let mut lib = r(0x1000, 0x2000, b"r--p");
        lib.name = b"/usr/lib/x86_64-linux-gnu/libc.so.6".to_vec();
        let d = delta(1, vec![], vec![lib]);
        let f = |t: &str| Focus {
            name: Some(t.as_bytes().to_vec()),
            ..Focus::default()
        };
        assert!(f("libc.so").admits(&d));
        assert!(!f("[heap]").admits(&d));
    }
}
