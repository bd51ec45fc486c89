//! Splits a `Read` into lines without copying them: the kernel's seq files
//! (`maps`, `smaps`) are read in big chunks and each line is handed out as a
//! slice of the buffer. Lines of any length are supported (the buffer grows).

use std::io::{self, Read};

/// Chunk size for reading `/proc` files: large reads mean fewer trips into
/// the kernel's seq_file code, which fills the whole buffer on each call.
pub const CHUNK: usize = 128 * 1024;

pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

impl<R: Read> LineReader<R> {
    pub fn new(inner: R) -> Self {
        LineReader {
            inner,
            buf: vec![0; CHUNK],
            start: 0,
            end: 0,
            eof: false,
        }
    }

    /// At least `n` unread bytes (fewer only at the end of the input),
    /// without consuming them; see `consume`.
    pub fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        while self.end - self.start < n && !self.eof {
            self.fill()?;
        }
        Ok(&self.buf[self.start..self.end])
    }

    /// Marks `n` bytes returned by `peek` as read.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }

    /// Moves the unread bytes to the front and reads more after them.
    fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < CHUNK / 2 {
            let grown = self.buf.len() * 2;
            self.buf.resize(grown, 0);
        }
        let n = loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            self.eof = true;
        }
        self.end += n;
        Ok(())
    }

    /// The next line without its `\n` (the last line may lack one), or
    /// `None` at the end of the input.
    pub fn next_line(&mut self) -> io::Result<Option<&[u8]>> {
        let mut searched = self.start;
        loop {
            if let Some(pos) = crate::sys::bytes::find(b'\n', &self.buf[searched..self.end]) {
                let line_start = self.start;
                let nl = searched + pos;
                self.start = nl + 1;
                return Ok(Some(&self.buf[line_start..nl]));
            }
            if self.eof {
                if self.start < self.end {
                    let line_start = self.start;
                    self.start = self.end;
                    return Ok(Some(&self.buf[line_start..self.end]));
                }
                return Ok(None);
            }
            // Keep the unfinished line, make room after it, read more.
            let unsearched = self.end - self.start;
            self.fill()?;
            searched = self.start + unsearched;
        }
    }
}

/// A line-at-a-time source for the parsers, which may also look ahead
/// (`peek`) and skip bytes they parsed themselves (`consume`).
pub trait LineSource {
    /// The next line without its `\n`, or `None` at the end.
    fn next_line(&mut self) -> io::Result<Option<&[u8]>>;
    /// Unread bytes without consuming them: at least `n`, or up to the end
    /// of a line at least (see each implementation).
    fn peek(&mut self, n: usize) -> io::Result<&[u8]>;
    fn consume(&mut self, n: usize);
}

impl<R: Read> LineSource for LineReader<R> {
    fn next_line(&mut self) -> io::Result<Option<&[u8]>> {
        LineReader::next_line(self)
    }
    fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        LineReader::peek(self, n)
    }
    fn consume(&mut self, n: usize) {
        LineReader::consume(self, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `step` bytes per call, to exercise
    /// lines split across reads.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn collect(data: &[u8], step: usize) -> Vec<Vec<u8>> {
        let mut r = LineReader::new(Trickle { data, step });
        let mut out = Vec::new();
        while let Some(l) = r.next_line().expect("in-memory read") {
            out.push(l.to_vec());
        }
        out
    }

    #[test]
    fn splits_lines_across_reads() {
        let data = b"one\ntwo\n\nlast";
        for step in [1, 2, 3, 100] {
            assert_eq!(
                collect(data, step),
                vec![
                    b"one".to_vec(),
                    b"two".to_vec(),
                    b"".to_vec(),
                    b"last".to_vec()
                ]
            );
        }
        assert!(collect(b"", 5).is_empty());
    }

    #[test]
    fn long_lines_grow_the_buffer() {
        let mut data = vec![b'a'; CHUNK * 3 + 17];
        data.push(b'\n');
        data.extend_from_slice(b"b\n");
        let lines = collect(&data, CHUNK / 3);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), CHUNK * 3 + 17);
        assert_eq!(lines[1], b"b");
    }
}
