//! `--summary`: one row per kind of memory, in the spirit of macOS `vmmap
//! --summary` and Sysinternals VMMap.
//!
//! Categories: each binary or library (a file with an executable mapping)
//! split into `(code)`, `(rodata)` and `(data)`; `mapped files` (other
//! file-backed private mappings); `shared memory` (SysV, memfd, shared
//! anonymous, any shared mapping of a file without code); `heap` (`[heap]`
//! and glibc malloc arenas); `thread stacks` (`[stack]` and each thread's
//! stack); `guard/reserved` (`PROT_NONE` regions: stack guards, arena
//! tails, allocator and JIT reservations); `special` (`[vdso]`, `[vvar]`,
//! `[vsyscall]`, `[uprobes]`); `anonymous` (the rest). Sizes in KiB.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};

use super::Snapshot;
use super::args::SortKey;
use super::names::Labels;
use crate::region::Region;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row {
    pub category: String,
    pub count: u64,
    pub size: u64,
    pub rss: u64,
    pub pss: u64,
    pub private_dirty: u64,
    pub shared_dirty: u64,
    pub swap: u64,
    /// Lowest start address among the category's regions.
    pub first: u64,
}

impl Row {
    fn add(&mut self, o: &Row) {
        self.count += o.count;
        self.size += o.size;
        self.rss += o.rss;
        self.pss += o.pss;
        self.private_dirty += o.private_dirty;
        self.shared_dirty += o.shared_dirty;
        self.swap += o.swap;
        self.first = self.first.min(o.first);
    }
}

fn base_name(name: &[u8]) -> String {
    let n = name.strip_suffix(b" (deleted)").unwrap_or(name);
    let base = n.rsplit(|&c| c == b'/').next().unwrap_or(n);
    String::from_utf8_lossy(base).into_owned()
}

fn category(r: &Region, label: Option<&[u8]>, code_files: &HashSet<&[u8]>) -> String {
    if let Some(l) = label {
        if l.starts_with(b"[ stack guard") || l == b"[ malloc arena reserve ]" {
            return "guard/reserved".into();
        }
        if l.starts_with(b"[ stack") {
            return "thread stacks".into();
        }
        if l == b"[ malloc arena ]" {
            return "heap".into();
        }
    }
    let name = r.name.as_slice();
    match name {
        b"[heap]" => return "heap".into(),
        b"[stack]" => return "thread stacks".into(),
        b"[vdso]" | b"[vvar]" | b"[vvar_vclock]" | b"[vsyscall]" | b"[uprobes]" => {
            return "special".into();
        }
        _ => {}
    }
    let deleted_stripped = name.strip_suffix(b" (deleted)").unwrap_or(name);
    if name.starts_with(b"/SYSV")
        || name.starts_with(b"/memfd:")
        || deleted_stripped == b"/dev/zero"
        || name.starts_with(b"[anon_shmem:")
    {
        return "shared memory".into();
    }
    if name.starts_with(b"/") {
        if code_files.contains(name) {
            let part = if r.perms.executable() {
                "code"
            } else if r.perms.writable() {
                "data"
            } else if !r.perms.readable() {
                return "guard/reserved".into();
            } else {
                "rodata"
            };
            return format!("{} ({part})", base_name(name));
        }
        return if r.perms.shared() {
            "shared memory".into()
        } else {
            "mapped files".into()
        };
    }
    if !r.perms.readable() && !r.perms.writable() && !r.perms.executable() {
        return "guard/reserved".into();
    }
    if r.perms.shared() {
        return "shared memory".into();
    }
    "anonymous".into()
}

/// Groups a process's regions into categories (unsorted).
pub fn summarize(snap: &Snapshot, labels: Option<&Labels>) -> Vec<Row> {
    let computed;
    let labels = match labels {
        Some(l) => l,
        None => {
            computed = super::names::label(snap);
            &computed
        }
    };
    let code_files: HashSet<&[u8]> = snap
        .entries
        .iter()
        .filter(|e| e.region.perms.executable() && e.region.name.starts_with(b"/"))
        .map(|e| e.region.name.as_slice())
        .collect();
    let mut rows: HashMap<String, Row> = HashMap::new();
    for e in &snap.entries {
        let f = |n: &str| e.field(n).unwrap_or(0);
        let cat = category(
            &e.region,
            labels.get(&e.region.start).map(Vec::as_slice),
            &code_files,
        );
        let one = Row {
            category: String::new(),
            count: 1,
            size: e.region.size() / 1024,
            rss: f("Rss"),
            pss: f("Pss"),
            private_dirty: f("Private_Dirty"),
            shared_dirty: f("Shared_Dirty"),
            swap: f("Swap"),
            first: e.region.start,
        };
        rows.entry(cat.clone())
            .or_insert_with(|| Row {
                category: cat,
                first: u64::MAX,
                ..Row::default()
            })
            .add(&one);
    }
    let mut out: Vec<Row> = rows.into_values().collect();
    out.sort_by(|a, b| a.category.cmp(&b.category));
    out
}

/// Orders rows: by size (largest first) unless `key` says otherwise.
pub fn sort_rows(rows: &mut [Row], key: Option<SortKey>) {
    rows.sort_by(|a, b| a.category.cmp(&b.category));
    let key = key.unwrap_or(SortKey::Size);
    let value = |r: &Row| match key {
        SortKey::Size => r.size,
        SortKey::Rss => r.rss,
        SortKey::Pss => r.pss,
        SortKey::PrivateDirty => r.private_dirty,
        SortKey::SharedDirty => r.shared_dirty,
        SortKey::Dirty => r.private_dirty + r.shared_dirty,
        SortKey::Swap => r.swap,
        SortKey::Count => r.count,
        SortKey::Address | SortKey::Name => 0,
    };
    match key {
        SortKey::Name => {}
        SortKey::Address => rows.sort_by_key(|r| r.first),
        _ => rows.sort_by_key(|r| std::cmp::Reverse(value(r))),
    }
}

pub fn total(rows: &[Row]) -> Row {
    let mut t = Row {
        category: "total".into(),
        first: u64::MAX,
        ..Row::default()
    };
    for r in rows {
        t.add(r);
    }
    t
}

/// Prints the summary table (the process line, headings and total unless `quiet`).
pub fn print(
    out: &mut dyn Write,
    snap: &Snapshot,
    mut rows: Vec<Row>,
    key: Option<SortKey>,
    quiet: bool,
) -> io::Result<()> {
    sort_rows(&mut rows, key);
    let t = total(&rows);
    let w = rows
        .iter()
        .map(|r| r.category.len())
        .max()
        .unwrap_or(0)
        .max(16);
    let mut buf = Vec::new();
    if !quiet {
        crate::format::print_process_line(&mut buf, &snap.info)?;
        writeln!(
            buf,
            "{:<w$} {:>6} {:>10} {:>10} {:>10} {:>10} {:>11} {:>10}",
            "Category", "Count", "Size", "RSS", "PSS", "PrivDirty", "SharedDirty", "Swap"
        )?;
    }
    let line = |buf: &mut Vec<u8>, r: &Row| {
        writeln!(
            buf,
            "{:<w$} {:>6} {:>9}K {:>9}K {:>9}K {:>9}K {:>10}K {:>9}K",
            r.category, r.count, r.size, r.rss, r.pss, r.private_dirty, r.shared_dirty, r.swap
        )
    };
    for r in &rows {
        line(&mut buf, r)?;
    }
    if !quiet {
        line(&mut buf, &t)?;
    }
    out.write_all(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::Perms;

    fn r(name: &str, perms: &str) -> Region {
        let p = perms.as_bytes();
        Region {
            start: 0x1000,
            end: 0x3000,
            perms: Perms([p[0], p[1], p[2], p[3]]),
            name: name.as_bytes().to_vec(),
            ..Region::default()
        }
    }

    #[test]
    fn categories() {
        let libc = b"/usr/lib/libc.so.6".as_slice();
        let code: HashSet<&[u8]> = [libc].into_iter().collect();
        let c =
            |name: &str, perms: &str, label: Option<&[u8]>| category(&r(name, perms), label, &code);
        assert_eq!(c("/usr/lib/libc.so.6", "r-xp", None), "libc.so.6 (code)");
        assert_eq!(c("/usr/lib/libc.so.6", "r--p", None), "libc.so.6 (rodata)");
        assert_eq!(c("/usr/lib/libc.so.6", "rw-p", None), "libc.so.6 (data)");
        assert_eq!(c("/usr/lib/libc.so.6", "---p", None), "guard/reserved");
        assert_eq!(c("/usr/share/locale/x", "r--p", None), "mapped files");
        assert_eq!(c("/dev/shm/x", "rw-s", None), "shared memory");
        assert_eq!(c("/memfd:a (deleted)", "rw-s", None), "shared memory");
        assert_eq!(c("/SYSV00000000 (deleted)", "rw-s", None), "shared memory");
        assert_eq!(c("[heap]", "rw-p", None), "heap");
        assert_eq!(c("", "rw-p", Some(b"[ malloc arena ]")), "heap");
        assert_eq!(
            c("", "---p", Some(b"[ malloc arena reserve ]")),
            "guard/reserved"
        );
        assert_eq!(c("", "rw-p", Some(b"[ stack tid=5 ]")), "thread stacks");
        assert_eq!(
            c("", "---p", Some(b"[ stack guard tid=5 ]")),
            "guard/reserved"
        );
        assert_eq!(c("[stack]", "rw-p", None), "thread stacks");
        assert_eq!(c("[vdso]", "r-xp", None), "special");
        assert_eq!(c("", "---p", None), "guard/reserved");
        assert_eq!(c("", "rw-p", None), "anonymous");
        assert_eq!(c("[anon:x]", "rw-p", None), "anonymous");
    }

    #[test]
    fn sorting_and_total() {
        let row = |c: &str, count, size, rss| Row {
            category: c.into(),
            count,
            size,
            rss,
            first: size,
            ..Row::default()
        };
        let mut rows = vec![row("a", 1, 10, 5), row("b", 3, 30, 1), row("c", 2, 20, 9)];
        sort_rows(&mut rows, None);
        assert_eq!(
            rows.iter().map(|r| r.category.as_str()).collect::<Vec<_>>(),
            ["b", "c", "a"]
        );
        sort_rows(&mut rows, Some(SortKey::Rss));
        assert_eq!(rows[0].category, "c");
        sort_rows(&mut rows, Some(SortKey::Name));
        assert_eq!(rows[0].category, "a");
        let t = total(&rows);
        assert_eq!((t.count, t.size, t.rss), (6, 60, 15));
    }
}
