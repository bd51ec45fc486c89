//! Output held back until a table's read is judged whole (see
//! `table::render_process_in`), up to a limit: a table larger than that (tens of
//! thousands of `-X` rows) is written through as it is read instead, so
//! that pmap's memory stays bounded; if such a read then turns out cut
//! short, the caller says the table above is incomplete.
//!
//! Most tables fit the first, ordinary buffer. Past it, output goes to one
//! block aligned for transparent huge pages: a 60,000-row table (2.5 MB)
//! then costs two page faults instead of six hundred, which was a tenth of
//! the snapshot's CPU time beside the kernel's own work (`cargo xtask bench
//! snapshot`).

use std::{
    alloc::{Layout, alloc, dealloc, handle_alloc_error},
    cell::Cell,
    io::{self, Write},
    ptr::NonNull,
    rc::Rc,
};

/// The first buffer: as large as the snapshot's output buffer (`BufWriter`
/// of 128 KiB), so that committing it goes past that to the output instead
/// of being copied into it.
const FIRST: usize = 128 * 1024;

/// Bytes held back at most before writing through.
pub const HOLD_LIMIT: usize = 4 << 20;

/// The size of a transparent huge page on x86-64 and arm64 (4 KiB pages).
const HUGE_PAGE: usize = 2 << 20;

pub struct Spool<'a, W: Write> {
    out: &'a mut W,
    first: Vec<u8>,
    /// Allocated when `first` is full.
    rest: Option<HugeBuf>,
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
            self.out.write_all(rest.filled())?;
            rest.clear();
        }
        self.held = 0;
        Ok(())
    }

    /// Holds `bytes`; `held + bytes.len()` is within the limit.
    #[inline]
    fn hold(&mut self, bytes: &[u8]) {
        self.held += bytes.len();
        if self.rest.is_none() && self.first.len() + bytes.len() <= FIRST {
            if self.first.capacity() == 0 {
                self.first.reserve_exact(FIRST);
            }
            self.first.extend_from_slice(bytes);
            return;
        }
        let limit = self.limit;
        self.rest
            .get_or_insert_with(|| HugeBuf::new(limit))
            .push(bytes);
    }
}

impl<W: Write> Write for Spool<'_, W> {
    #[inline]
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

    #[inline]
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.through.get() || self.held + bytes.len() > self.limit {
            return write_all_slowly(self, bytes);
        }
        self.hold(bytes);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.through.get() {
            self.out.flush()
        } else {
            Ok(())
        }
    }
}

/// `write_all` through `write`, for the rows that cross the limit.
fn write_all_slowly<W: Write>(s: &mut Spool<'_, W>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match s.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A fixed-size byte buffer aligned to huge pages and marked for them
/// (`MADV_HUGEPAGE`; a no-op where transparent huge pages are off). Its
/// pages are faulted in only as it fills.
struct HugeBuf {
    ptr: NonNull<u8>,
    layout: Layout,
    len: usize,
}

impl HugeBuf {
    fn new(cap: usize) -> HugeBuf {
        let size = cap.max(1).next_multiple_of(HUGE_PAGE);
        let Ok(layout) = Layout::from_size_align(size, HUGE_PAGE) else {
            handle_alloc_error(Layout::new::<u8>())
        };
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            handle_alloc_error(layout)
        };
        // SAFETY: the range is the allocation just made; advice changes no
        // content, and failing (no huge pages here) changes nothing either.
        unsafe { libc::madvise(ptr.as_ptr().cast(), size, libc::MADV_HUGEPAGE) };
        HugeBuf {
            ptr,
            layout,
            len: 0,
        }
    }

    /// Appends `bytes`; the caller keeps within the capacity (the spool's
    /// limit), and a write past it panics rather than overflow.
    #[inline]
    fn push(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        assert!(end <= self.layout.size(), "held output past its limit");
        // SAFETY: `len..end` lies inside the allocation (checked above) and
        // cannot overlap `bytes`, which the caller borrows from elsewhere.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.ptr.as_ptr().add(self.len),
                bytes.len(),
            )
        };
        self.len = end;
    }

    fn filled(&self) -> &[u8] {
        // SAFETY: the first `len` bytes were written by `push`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

impl Drop for HugeBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_until_committed_across_chunks() {
        let mut out = Vec::new();
        let text: Vec<u8> = (0..3 * FIRST + 17).map(|i| (i % 251) as u8).collect();
        let mut s = Spool::new(&mut out, 4 * FIRST);
        for part in text.chunks(1000) {
            s.write_all(part).expect("writes to memory");
        }
        assert!(!s.written_through());
        assert_eq!(s.first.len(), FIRST - FIRST % 1000);
        assert!(s.rest.is_some());
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
