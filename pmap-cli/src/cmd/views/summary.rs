//! `--summary`: one row per kind of memory, in the spirit of macOS `vmmap
//! --summary` and Sysinternals VMMap: the rows (`map::summary`) sorted,
//! printed, and as JSON.
//!
//! Categories: each binary or library (a file with an executable mapping)
//! split into `(code)`, `(rodata)` and `(data)`; `mapped files` (other
//! file-backed private mappings); `shared memory` (SysV, memfd, shared
//! anonymous, any shared mapping of a file without code); `heap` (`[heap]`
//! and glibc malloc arenas); `thread stacks` (`[stack]` and each thread's
//! stack); `guard/reserved` (`PROT_NONE` regions: stack guards, arena
//! tails, allocator and JIT reservations); `special` (`[vdso]`, `[vvar]`,
//! `[vsyscall]`, `[uprobes]`); `anonymous` (the rest). Sizes in KiB.

use std::io::{self, Write};

use serde::Serialize;

use super::Snapshot;
use super::args::SortKey;
use crate::map::summary::{Row, total};
use crate::render::json::text;

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
        crate::render::print_process_line(&mut buf, &snap.info)?;
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

#[derive(Serialize)]
struct CategoryDoc<'a> {
    category: &'a str,
    count: u64,
    size_kb: u64,
    rss_kb: u64,
    pss_kb: u64,
    private_dirty_kb: u64,
    shared_dirty_kb: u64,
    swap_kb: u64,
}

impl<'a> From<&'a Row> for CategoryDoc<'a> {
    fn from(r: &'a Row) -> Self {
        CategoryDoc {
            category: &r.category,
            count: r.count,
            size_kb: r.size,
            rss_kb: r.rss,
            pss_kb: r.pss,
            private_dirty_kb: r.private_dirty,
            shared_dirty_kb: r.shared_dirty,
            swap_kb: r.swap,
        }
    }
}

#[derive(Serialize)]
struct SummaryDoc<'a> {
    source: &'static str,
    view: &'static str,
    pid: u32,
    command: String,
    categories: Vec<CategoryDoc<'a>>,
    total: CategoryDoc<'a>,
}

/// `--summary --json`.
pub fn write_json(
    out: &mut dyn Write,
    snap: &Snapshot,
    rows: &[Row],
    key: Option<SortKey>,
) -> io::Result<()> {
    let mut rows = rows.to_vec();
    sort_rows(&mut rows, key);
    let t = total(&rows);
    let doc = SummaryDoc {
        source: "process",
        view: "summary",
        pid: snap.info.tgid,
        command: text(&snap.info.cmdline),
        categories: rows.iter().map(CategoryDoc::from).collect(),
        total: CategoryDoc::from(&t),
    };
    serde_json::to_writer(&mut *out, &doc).map_err(io::Error::other)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

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
