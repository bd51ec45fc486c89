//! A file another process keeps appending to (a JIT's perf map, its
//! jitdump), read a piece at a time: only what was added since the last
//! look, from where the reader stopped.

use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
};

#[derive(Debug)]
pub struct Growing {
    path: PathBuf,
    file: Option<File>,
    /// Bytes the reader has taken (see `consume`).
    taken: u64,
}

/// What `Growing::more` found.
pub struct More {
    pub bytes: Vec<u8>,
    /// The file got shorter since the last look (truncated or replaced):
    /// `bytes` are from its beginning, and what was read before is stale.
    pub restarted: bool,
}

impl Growing {
    pub fn new(path: PathBuf) -> Growing {
        Growing {
            path,
            file: None,
            taken: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file was found and opened at some look.
    pub fn opened(&self) -> bool {
        self.file.is_some()
    }

    /// Where the next look reads from: 0 for the file's beginning.
    pub fn taken(&self) -> u64 {
        self.taken
    }

    /// The bytes after what was taken, if the file (opened at the first
    /// look that finds it) has any. They count as taken only through
    /// `consume`, so that a record cut at the end is read again whole.
    pub fn more(&mut self) -> Option<More> {
        if self.file.is_none() {
            self.file = File::open(&self.path).ok();
        }
        let f = self.file.as_mut()?;
        let len = f.metadata().map_or(0, |m| m.len());
        let restarted = len < self.taken;
        if restarted {
            self.taken = 0;
        }
        if len == self.taken || f.seek(SeekFrom::Start(self.taken)).is_err() {
            return restarted.then(|| More {
                bytes: Vec::new(),
                restarted,
            });
        }
        let mut bytes = Vec::new();
        f.take(len - self.taken).read_to_end(&mut bytes).ok()?;
        Some(More { bytes, restarted })
    }

    /// `n` more bytes were used.
    pub fn consume(&mut self, n: usize) {
        self.taken += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_bytes_come_once_and_a_shorter_file_starts_over() {
        let path = std::env::temp_dir().join(format!("pmap-growing-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut g = Growing::new(path.clone());
        assert!(g.more().is_none() && !g.opened(), "no file yet");
        std::fs::write(&path, "one\ntw").expect("write");
        let m = g.more().expect("bytes");
        assert_eq!((m.bytes.as_slice(), m.restarted), (&b"one\ntw"[..], false));
        // Only the whole line is used: the rest comes again.
        g.consume(4);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"o\n"))
            .expect("append");
        let m = g.more().expect("bytes");
        assert_eq!(m.bytes, b"two\n");
        g.consume(m.bytes.len());
        assert!(g.more().is_none(), "nothing new");
        std::fs::write(&path, "x\n").expect("truncate");
        let m = g.more().expect("bytes");
        assert_eq!((m.bytes.as_slice(), m.restarted), (&b"x\n"[..], true));
        let _ = std::fs::remove_file(&path);
    }
}
