//! Output held back until a table's read is judged whole (see
//! `table::render_process_in`), up to a limit: a table larger than that
//! (about 60,000 `-x` rows) is written through as it is read instead, so
//! that pmap's memory stays bounded; if such a read then turns out cut
//! short, the caller says the table above is incomplete. Held output is
//! kept in fixed-size chunks: one growing buffer would double, and copy
//! itself, on its way past the table's size.

use std::{
    cell::Cell,
    io::{self, Write},
    rc::Rc,
};

/// As large as the snapshot's output buffer (`BufWriter` of 128 KiB), so
/// that a committed chunk goes past it to the output instead of being
/// copied into it.
const CHUNK: usize = 128 * 1024;

/// Bytes held back at most before writing through.
pub const HOLD_LIMIT: usize = 4 << 20;

pub struct Spool<'a, W: Write> {
    out: &'a mut W,
    chunks: Vec<Vec<u8>>,
    held: usize,
    limit: usize,
    /// Shared, so that a reader holding the spool mutably through a
    /// table printer can still ask (see `through_flag`).
    through: Rc<Cell<bool>>,
}

impl<'a, W: Write> Spool<'a, W> {
    pub fn new(out: &'a mut W, limit: usize) -> Spool<'a, W> {
        Spool {
            out,
            chunks: Vec::new(),
            held: 0,
            limit,
            through: Rc::new(Cell::new(false)),
        }
    }

    /// Whether output already went out (the table outgrew the limit).
    pub fn written_through(&self) -> bool {
        self.through.get()
    }

    /// A handle that tells whether output went out, while the spool itself
    /// is lent to a table printer.
    pub fn through_flag(&self) -> Rc<Cell<bool>> {
        Rc::clone(&self.through)
    }

    /// Writes everything held to the output.
    pub fn commit(&mut self) -> io::Result<()> {
        for c in self.chunks.drain(..) {
            self.out.write_all(&c)?;
        }
        self.held = 0;
        Ok(())
    }

    fn hold(&mut self, mut bytes: &[u8]) {
        self.held += bytes.len();
        while !bytes.is_empty() {
            let chunk = match self.chunks.last_mut() {
                Some(c) if c.len() < CHUNK => c,
                _ => {
                    self.chunks.push(Vec::with_capacity(CHUNK));
                    continue;
                }
            };
            let take = (CHUNK - chunk.len()).min(bytes.len());
            chunk.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
    }
}

impl<W: Write> Write for Spool<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if !self.through.get() && self.held + bytes.len() > self.limit {
            self.through.set(true);
            self.commit()?;
        }
        if self.through.get() {
            return self.out.write(bytes);
        }
        self.hold(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.through.get() {
            self.out.flush()
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_until_committed_across_chunks() {
        let mut out = Vec::new();
        let text: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let mut s = Spool::new(&mut out, 4 * CHUNK);
        for part in text.chunks(1000) {
            s.write_all(part).expect("writes to memory");
        }
        assert!(!s.written_through());
        assert_eq!(s.chunks.len(), 4);
        s.commit().expect("writes to memory");
        assert_eq!(out, text);
    }

    #[test]
    fn writes_through_past_the_limit() {
        let mut out = Vec::new();
        let mut s = Spool::new(&mut out, 10);
        s.write_all(b"0123456").expect("writes to memory");
        assert!(!s.written_through());
        s.write_all(b"789abc").expect("writes to memory");
        assert!(s.written_through());
        s.write_all(b"def").expect("writes to memory");
        s.commit().expect("nothing left to write");
        assert_eq!(out, b"0123456789abcdef");
    }
}
