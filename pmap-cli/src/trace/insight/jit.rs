//! JIT symbols from `/tmp/perf-PID.map` (V8 `--perf-basic-prof`, the JVM
//! with perf-map-agent, LuaJIT, .NET, ...): `START SIZE name` in hex, one
//! function per line, appended as code is generated. Read live: only the
//! new bytes, when the file has grown. Entries are dropped when their
//! range is unmapped, or when a newer entry reuses it.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{Read, Seek, SeekFrom},
    path::PathBuf,
    time::{Duration, Instant},
};

/// How often the file is looked at for growth, at most.
const RECHECK: Duration = Duration::from_millis(20);

#[derive(Clone, Debug)]
pub struct JitSym {
    pub end: u64,
    pub name: String,
}

#[derive(Debug)]
pub struct JitMap {
    path: PathBuf,
    file: Option<File>,
    read: u64,
    partial: String,
    syms: BTreeMap<u64, JitSym>,
    last_check: Option<Instant>,
    /// Entries read in all, and dropped because unmapped or reused.
    pub seen: u64,
    pub dropped: u64,
}

impl JitMap {
    pub fn new(pid: u32) -> JitMap {
        JitMap::at(PathBuf::from(format!("/tmp/perf-{pid}.map")))
    }

    pub fn at(path: PathBuf) -> JitMap {
        JitMap {
            path,
            file: None,
            read: 0,
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

    /// Reads what was appended since the last look (rate-limited unless
    /// `force`).
    pub fn refresh(&mut self, force: bool) {
        if !force && self.last_check.is_some_and(|t| t.elapsed() < RECHECK) {
            return;
        }
        self.last_check = Some(Instant::now());
        if self.file.is_none() {
            self.file = File::open(&self.path).ok();
        }
        let Some(f) = &mut self.file else {
            return;
        };
        let len = f.metadata().map_or(0, |m| m.len());
        if len < self.read {
            // Truncated or replaced: start over.
            self.read = 0;
            self.partial.clear();
            self.syms.clear();
        }
        if len == self.read || f.seek(SeekFrom::Start(self.read)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        if f.take(len - self.read).read_to_end(&mut buf).is_err() {
            return;
        }
        self.read += buf.len() as u64;
        self.partial.push_str(&String::from_utf8_lossy(&buf));
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

    fn add_line(&mut self, line: &str) {
        let mut parts = line.splitn(3, ' ');
        let (Some(a), Some(s), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return;
        };
        let hex = |v: &str| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok();
        let (Some(start), Some(size)) = (hex(a), hex(s)) else {
            return;
        };
        let end = start.saturating_add(size.max(1));
        self.seen += 1;
        // A newer function over the same bytes replaces the old ones.
        let stale: Vec<u64> = self.overlapping(start, end).map(|(k, _)| k).collect();
        for k in stale {
            self.syms.remove(&k);
            self.dropped += 1;
        }
        self.syms.insert(
            start,
            JitSym {
                end,
                name: name.to_string(),
            },
        );
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

    /// Functions in `[lo, hi)`.
    pub fn within(&self, lo: u64, hi: u64) -> Vec<&str> {
        self.overlapping(lo, hi)
            .map(|(_, s)| s.name.as_str())
            .collect()
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

/// `3 JIT functions: a, b, c, ...` (at most `max` names).
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
        s.push_str(&format!(", ... {} more", names.len() - max));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_appended_lines_and_drops_unmapped_and_reused() {
        let dir = std::env::temp_dir().join(format!("pmap-jit-test-{}", std::process::id()));
        let path = dir.with_extension("map");
        std::fs::write(&path, "1000 100 LazyCompile:~foo a.js:1\n2000 80 bar\n30").expect("write");
        let mut m = JitMap::at(path.clone());
        m.refresh(true);
        assert_eq!(m.lookup(0x1010), Some(("LazyCompile:~foo a.js:1", 0x10)));
        assert_eq!(
            m.within(0x0, 0x3000),
            vec!["LazyCompile:~foo a.js:1", "bar"]
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
