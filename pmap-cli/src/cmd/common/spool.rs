//! Output held back until a table's read is judged whole (see
//! `table::render_process_in`), up to a limit: a table larger than that
//! (about 60,000 `-x` rows) is written through as it is read instead, so
//! that pmap's memory stays bounded; if such a read then turns out cut
//! short, the caller says the table above is incomplete. Held output goes
//! into one chunk of ordinary memory, then, for a table larger than that,
//! into memory reserved for the rest of the limit and advised for huge
//! pages (`sys::huge_pages`): a 60,000-row table is 3.5 MB, whose 630 page
//! faults took about 0.8 ms of CPU. Neither grows by copying itself.

use std::{
    cell::Cell,
    io::{self, Write},
    rc::Rc,
};

use crate::sys::huge_pages::HugePageBuffer;

/// As large as the snapshot's output buffer (`BufWriter` of 128 KiB), so
/// that a committed chunk goes past it to the output instead of being
/// copied into it. Small tables (1,000 rows are about 60 KB) fit, and
/// never pay for a huge page (zeroing 2 MiB).
const CHUNK: usize = 128 * 1024;

/// Bytes held back at most before writing through.
pub const HOLD_LIMIT: usize = 4 << 20;

pub struct Spool<'a, W: Write> {
    out: &'a mut W,
    first: Vec<u8>,
    /// What comes after `first`; reserved when first needed.
    rest: Option<HugePageBuffer>,
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
            first: Vec::new(),
            rest: None,
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
        self.out.write_all(&self.first)?;
        self.first.clear();
        if let Some(rest) = &mut self.rest {
            self.out.write_all(rest.as_slice())?;
            rest.clear();
        }
        self.held = 0;
        Ok(())
    }

    /// Holds `bytes`, which fit within the limit.
    fn hold(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.held += bytes.len();
        if self.first.capacity() == 0 {
            self.first.reserve_exact(CHUNK);
        }
        let take = (CHUNK - self.first.len()).min(bytes.len());
        self.first.extend_from_slice(&bytes[..take]);
        let more = &bytes[take..];
        if more.is_empty() {
            return Ok(());
        }
        let rest = match &mut self.rest {
            Some(rest) => rest,
            None => {
                let size = self.limit.saturating_sub(CHUNK);
                let reserved = HugePageBuffer::with_capacity(size).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "cannot reserve {} KiB of memory to hold a table until its read is checked: {e}; free some memory, or raise the limit on pmap's memory, and run it again",
                            size / 1024
                        ),
                    )
                })?;
                self.rest.insert(reserved)
            }
        };
        let fit = rest.extend_from_slice(more);
        // `write` goes through instead of holding past the limit.
        debug_assert_eq!(fit, more.len(), "held within the limit");
        Ok(())
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
        self.hold(bytes)?;
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
        assert_eq!(s.first.len(), CHUNK, "the first chunk is full");
        assert_eq!(
            s.rest.as_ref().map(|r| r.as_slice().len()),
            Some(2 * CHUNK + 17),
            "the rest holds the rest"
        );
        s.commit().expect("writes to memory");
        // Held again after a commit (a table after a header).
        s.write_all(b"more").expect("writes to memory");
        assert_eq!(s.held, 4);
        s.commit().expect("writes to memory");
        assert_eq!(&out[..text.len()], &text[..]);
        assert_eq!(&out[text.len()..], b"more");
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
