//! JIT symbols from `/tmp/perf-PID.map` (V8 `--perf-basic-prof`, the JVM
//! with perf-map-agent, LuaJIT, .NET, ...): `START SIZE name` in hex, one
//! function per line, appended as code is generated; and from jitdump files
//! (`jit-PID.dump`, V8 `--perf-prof`, the JVM agent), which the runtime maps
//! into itself so that tools find them: the tracer sees that mapping. Read
//! live: only the new bytes, when the file has grown. Entries are dropped
//! when their range is unmapped, or when a newer entry reuses it.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use crate::source::{growing::Growing, perf_map};

/// How often the file is looked at for growth, at most.
const RECHECK: Duration = Duration::from_millis(20);

#[derive(Clone, Debug)]
pub struct JitSym {
    pub end: u64,
    pub name: String,
    /// Order of arrival (newest is largest).
    pub seq: u64,
}

const JITDUMP_MAGIC: u32 = 0x4A69_5444;
const JIT_CODE_LOAD: u32 = 0;
const JIT_CODE_MOVE: u32 = 1;

#[derive(Debug)]
pub struct JitMap {
    /// The jitdump file, read up to the end of its last whole record.
    dump: Option<Growing>,
    /// The perf map; its unfinished last line is kept in `partial`.
    map: Growing,
    partial: String,
    syms: BTreeMap<u64, JitSym>,
    last_check: Option<Instant>,
    /// Entries read in all, and dropped because unmapped or reused.
    pub seen: u64,
    pub dropped: u64,
}

impl JitMap {
    pub fn new(pid: u32) -> JitMap {
        JitMap::at(perf_map::path(pid))
    }

    pub fn at(path: PathBuf) -> JitMap {
        JitMap {
            dump: None,
            map: Growing::new(path),
            partial: String::new(),
            syms: BTreeMap::new(),
            last_check: None,
            seen: 0,
            dropped: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.syms.is_empty()
    }

    /// A jitdump file the process mapped (its path, as the map names it).
    pub fn found_dump(&mut self, path: PathBuf) {
        if self.dump.as_ref().is_some_and(|d| d.path() == path) {
            return;
        }
        self.dump = Some(Growing::new(path));
        self.last_check = None;
    }

    /// The files read, for the summary.
    pub fn sources(&self) -> String {
        let mut v = Vec::new();
        if self.map.opened() {
            v.push(self.map.path().display().to_string());
        }
        if let Some(d) = &self.dump {
            v.push(d.path().display().to_string());
        }
        v.join(" and ")
    }

    pub fn has_dump(&self) -> bool {
        self.dump.is_some()
    }

    /// Reads what was appended since the last look (rate-limited unless
    /// `force`).
    pub fn refresh(&mut self, force: bool) {
        if !force && self.last_check.is_some_and(|t| t.elapsed() < RECHECK) {
            return;
        }
        self.last_check = Some(Instant::now());
        self.refresh_dump();
        let Some(more) = self.map.more() else {
            return;
        };
        if more.restarted {
            // Truncated or replaced: start over.
            self.partial.clear();
            self.syms.clear();
        }
        self.map.consume(more.bytes.len());
        self.partial.push_str(&String::from_utf8_lossy(&more.bytes));
        let text = std::mem::take(&mut self.partial);
        let mut lines = text.split_inclusive('\n').peekable();
        while let Some(line) = lines.next() {
            if !line.ends_with('\n') && lines.peek().is_none() {
                self.partial = line.to_string();
                break;
            }
            self.add_line(line.trim_end());
        }
    }

    /// Reads the jitdump records appended since the last look.
    fn refresh_dump(&mut self) {
        let Some(d) = &mut self.dump else { return };
        let Some(more) = d.more() else { return };
        // Only whole records are used: a record cut at the end is read
        // again, whole, at the next look.
        let (used, records) = parse_jitdump(&more.bytes, d.taken() == 0);
        d.consume(used);
        for r in records {
            match r {
                Record::Load { start, size, name } => {
                    self.add(start, start.saturating_add(size.max(1)), name)
                }
                Record::Move { from, to, size } => {
                    // Moved code keeps its name and its age.
                    let (name, seq) = match self.syms.range(..=from).next_back() {
                        Some((_, s)) if s.end > from => (s.name.clone(), Some(s.seq)),
                        _ => (format!("code moved from {from:#x}"), None),
                    };
                    self.unmapped(from, from.saturating_add(size.max(1)));
                    self.add(to, to.saturating_add(size.max(1)), name);
                    if let (Some(seq), Some(s)) = (seq, self.syms.get_mut(&to)) {
                        s.seq = seq;
                    }
                }
            }
        }
    }

    fn add_line(&mut self, line: &str) {
        if let Some(sym) = perf_map::parse_line(line) {
            let end = sym.start.saturating_add(sym.size.max(1));
            self.add(sym.start, end, sym.name.to_string());
        }
    }

    fn add(&mut self, start: u64, end: u64, name: String) {
        self.seen += 1;
        // A newer function over the same bytes replaces the old ones.
        let stale: Vec<u64> = self.overlapping(start, end).map(|(k, _)| k).collect();
        for k in stale {
            self.syms.remove(&k);
            self.dropped += 1;
        }
        let seq = self.seen;
        self.syms.insert(start, JitSym { end, name, seq });
    }

    fn overlapping(&self, lo: u64, hi: u64) -> impl Iterator<Item = (u64, &JitSym)> {
        let before = self
            .syms
            .range(..lo)
            .next_back()
            .filter(|(_, s)| s.end > lo)
            .map(|(&k, s)| (k, s));
        before
            .into_iter()
            .chain(self.syms.range(lo..hi).map(|(&k, s)| (k, s)))
    }

    /// Functions in `[lo, hi)`, newest first: the code a program just
    /// generated (its own hot functions) is what a reader looks for, not
    /// the runtime's start-up code at the lowest addresses.
    pub fn within(&self, lo: u64, hi: u64) -> Vec<&str> {
        let mut v: Vec<&JitSym> = self.overlapping(lo, hi).map(|(_, s)| s).collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.seq));
        v.into_iter().map(|s| s.name.as_str()).collect()
    }

    /// The function holding `addr` and the offset in it.
    pub fn lookup(&self, addr: u64) -> Option<(&str, u64)> {
        let (&k, s) = self.syms.range(..=addr).next_back()?;
        (s.end > addr).then(|| (s.name.as_str(), addr - k))
    }

    /// Forgets the functions in an unmapped range.
    pub fn unmapped(&mut self, lo: u64, hi: u64) {
        let gone: Vec<u64> = self.overlapping(lo, hi).map(|(k, _)| k).collect();
        self.dropped += gone.len() as u64;
        for k in gone {
            self.syms.remove(&k);
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

#[derive(Debug, PartialEq, Eq)]
enum Record {
    Load { start: u64, size: u64, name: String },
    Move { from: u64, to: u64, size: u64 },
}

/// Parses whole jitdump records (after the file header when `header`);
/// returns the bytes used and the code loads and moves. A partial record
/// at the end is left for the next look.
fn parse_jitdump(buf: &[u8], header: bool) -> (usize, Vec<Record>) {
    let mut out = Vec::new();
    let mut at = 0;
    if header {
        // magic, version, header size, ...
        match (u32_at(buf, 0), u32_at(buf, 8)) {
            (Some(JITDUMP_MAGIC), Some(size)) if buf.len() >= size as usize => at = size as usize,
            _ => return (0, out),
        }
    }
    // Record prefix: id u32, total size u32, timestamp u64.
    while let (Some(id), Some(size)) = (u32_at(buf, at), u32_at(buf, at + 4)) {
        let size = size as usize;
        if size < 16 || at + size > buf.len() {
            break;
        }
        let body = &buf[at + 16..at + size];
        match id {
            // pid, tid, vma, code_addr, code_size, code_index, name\0, code
            JIT_CODE_LOAD => {
                if let (Some(start), Some(size)) = (u64_at(body, 16), u64_at(body, 24)) {
                    let name = body.get(40..).unwrap_or(&[]);
                    let name = name.split(|&c| c == 0).next().unwrap_or(&[]);
                    let name = String::from_utf8_lossy(name).into_owned();
                    out.push(Record::Load { start, size, name });
                }
            }
            // pid, tid, vma, old_code_addr, new_code_addr, code_size, index
            JIT_CODE_MOVE => {
                if let (Some(from), Some(to), Some(size)) =
                    (u64_at(body, 16), u64_at(body, 24), u64_at(body, 32))
                {
                    out.push(Record::Move { from, to, size });
                }
            }
            _ => {}
        }
        at += size;
    }
    (at, out)
}

/// `3 JIT functions: a, b, c, ...` (at most `max` names, in the order
/// given: newest first from `within`).
pub fn list(names: &[&str], max: usize) -> String {
    let mut s = format!(
        "{} JIT function{}: ",
        names.len(),
        if names.len() == 1 { "" } else { "s" }
    );
    s.push_str(
        &names
            .iter()
            .take(max)
            .copied()
            .collect::<Vec<_>>()
            .join(", "),
    );
    if names.len() > max {
        s.push_str(&format!(
            ", ... {} more (--jit-symbols all lists them)",
            names.len() - max
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u32, body: &[u8]) -> Vec<u8> {
        let mut v = id.to_le_bytes().to_vec();
        v.extend(((16 + body.len()) as u32).to_le_bytes());
        v.extend(7u64.to_le_bytes());
        v.extend(body);
        v
    }

    #[test]
    fn jitdump_loads_and_moves_are_read_and_partial_records_wait() {
        let mut file = JITDUMP_MAGIC.to_le_bytes().to_vec();
        file.extend(1u32.to_le_bytes());
        file.extend(40u32.to_le_bytes());
        file.extend([0u8; 28]);
        let mut load = Vec::new();
        for v in [1u32, 2] {
            load.extend(v.to_le_bytes());
        }
        for v in [0x1000u64, 0x1000, 0x40, 3] {
            load.extend(v.to_le_bytes());
        }
        load.extend(b"JS:*hot a.js:1\0");
        load.extend([0xc3u8; 0x40]);
        file.extend(record(JIT_CODE_LOAD, &load));
        file.extend(record(4, &[0u8; 8]));
        let mut mv = Vec::new();
        for v in [1u32, 2] {
            mv.extend(v.to_le_bytes());
        }
        for v in [0u64, 0x1000, 0x3000, 0x40, 3] {
            mv.extend(v.to_le_bytes());
        }
        let whole = file.len();
        file.extend(record(JIT_CODE_MOVE, &mv));
        let (used, recs) = parse_jitdump(&file[..file.len() - 3], true);
        assert_eq!(used, whole);
        assert_eq!(
            recs,
            vec![Record::Load {
                start: 0x1000,
                size: 0x40,
                name: "JS:*hot a.js:1".into()
            }]
        );
        let (used, recs) = parse_jitdump(&file[whole..], false);
        assert_eq!(used, file.len() - whole);
        assert_eq!(
            recs,
            vec![Record::Move {
                from: 0x1000,
                to: 0x3000,
                size: 0x40
            }]
        );
    }

    #[test]
    fn reads_appended_lines_and_drops_unmapped_and_reused() {
        let dir = std::env::temp_dir().join(format!("pmap-jit-test-{}", std::process::id()));
        let path = dir.with_extension("map");
        std::fs::write(&path, "1000 100 LazyCompile:~foo a.js:1\n2000 80 bar\n30").expect("write");
        let mut m = JitMap::at(path.clone());
        m.refresh(true);
        assert_eq!(m.lookup(0x1010), Some(("LazyCompile:~foo a.js:1", 0x10)));
        // Newest first.
        assert_eq!(
            m.within(0x0, 0x3000),
            vec!["bar", "LazyCompile:~foo a.js:1"]
        );
        // The partial last line completes later.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        std::io::Write::write_all(&mut f, b"00 10 baz\n1000 40 foo2\n").expect("append");
        m.refresh(true);
        assert_eq!(m.lookup(0x3005), Some(("baz", 5)));
        assert_eq!(m.lookup(0x1010), Some(("foo2", 0x10)));
        m.unmapped(0x2000, 0x3000);
        assert_eq!(m.lookup(0x2010), None);
        assert_eq!(m.dropped, 2);
        let _ = std::fs::remove_file(&path);
    }
}
