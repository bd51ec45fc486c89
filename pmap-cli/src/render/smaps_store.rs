//! The rows of a self-sizing smaps table as they are kept until the end
//! (numbers as varints, names and VmFlags interned), and their printing:
//! in pieces of `SEGMENT` rows, on two threads when the table is large.

use std::{
    collections::HashMap,
    io::{self, Write},
    ops::Range,
    sync::Arc,
};

use super::{
    names::smaps_mapping_name,
    smaps_row::{RowLayout, RowValues},
};
use crate::sys::spread::{Placement, Plan, Spread};

pub(super) fn push_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn read_varint(buf: &[u8], pos: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    while let Some(&b) = buf.get(*pos) {
        *pos += 1;
        if shift < 64 {
            v |= u64::from(b & 0x7f) << shift;
        }
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    v
}

/// Byte strings stored once, referred to by number.
#[derive(Default)]
pub(super) struct Interner {
    ids: HashMap<Arc<[u8]>, u32>,
    items: Vec<Arc<[u8]>>,
    /// The last two strings asked for: neighbours often repeat (the
    /// segments of one file, runs of anonymous regions, the flags of
    /// alternating protections).
    last: Option<u32>,
    before_last: Option<u32>,
}

impl Interner {
    pub(super) fn id(&mut self, s: &[u8]) -> u32 {
        if let Some(last) = self.last
            && *self.items[last as usize] == *s
        {
            return last;
        }
        if let Some(before) = self.before_last
            && *self.items[before as usize] == *s
        {
            self.before_last = self.last;
            self.last = Some(before);
            return before;
        }
        let id = match self.ids.get(s) {
            Some(&id) => id,
            None => {
                let rc: Arc<[u8]> = Arc::from(s);
                let id = self.items.len() as u32;
                self.items.push(rc.clone());
                self.ids.insert(rc, id);
                id
            }
        };
        self.before_last = self.last;
        self.last = Some(id);
        id
    }
    fn get(&self, id: u64) -> &[u8] {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.items.get(i))
            .map_or(&[][..], |s| s)
    }
}

/// Rows per piece printed on its own (see `SmapsTable::marks`): 1,024 rows
/// of `-X` are about 200 KB of text, which stays in a CPU's cache between
/// being written and being written out. Printing 60,000 rows on two
/// threads, timed inside `pmap` (25 runs): pieces of 512 rows 2.78 ms,
/// 1,024 2.66 ms, 2,048 2.89 ms, 4,096 3.40 ms, 16,384 4.89 ms.
pub(super) const SEGMENT: usize = 1024;

/// A table of more pieces than this is printed on two threads. Starting
/// the second thread and binding both costs about 0.15 ms, what printing
/// 1,000 rows takes; below 4,096 rows one thread is as fast.
pub(super) const TWO_THREADS_PAST: usize = 4;

pub(super) struct Mark {
    pub(super) pos: usize,
    pub(super) last: Vec<u64>,
}

/// What printing the rows needs, shareable between threads.
pub(super) struct Rows<'a> {
    pub(super) rows: &'a [u8],
    pub(super) names: &'a Interner,
    pub(super) flags: &'a Interner,
    pub(super) layout: &'a RowLayout,
    pub(super) columns: usize,
    /// Whether the mapping is shown, and with its path (`-p`).
    pub(super) mapping: Option<bool>,
}

impl Rows<'_> {
    /// Prints the rows stored in `range` of `rows` into `b`, handing `b`
    /// to `flush` whenever it holds 60 KiB or more. `last`: the values a
    /// row lacking a field prints (procps-ng prints a column's last
    /// value), as they stand at the start of `range`.
    pub(super) fn print(
        &self,
        range: Range<usize>,
        last: &[u64],
        b: &mut Vec<u8>,
        flush: &mut dyn FnMut(&mut Vec<u8>) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut values = vec![0u64; self.columns];
        for (v, l) in values.iter_mut().zip(last) {
            *v = *l;
        }
        let rows = &self.rows[..range.end];
        let mut pos = range.start;
        while pos < rows.len() {
            let start = read_varint(rows, &mut pos);
            let perms = rows.get(pos..pos + 4).unwrap_or_default();
            pos += 4;
            let offset = read_varint(rows, &mut pos);
            let major = read_varint(rows, &mut pos);
            let minor = read_varint(rows, &mut pos);
            let inode = read_varint(rows, &mut pos);
            let name = self.names.get(read_varint(rows, &mut pos));
            let flags = self.flags.get(read_varint(rows, &mut pos));
            let n = read_varint(rows, &mut pos);
            for i in 0..n {
                let v = read_varint(rows, &mut pos);
                if let Some(slot) = usize::try_from(i).ok().and_then(|i| values.get_mut(i)) {
                    *slot = v;
                }
            }
            let row = RowValues {
                start,
                perms,
                offset,
                major,
                minor,
                inode,
                columns: &values,
                flags,
            };
            self.layout.push(b, &row);
            if let Some(show_path) = self.mapping {
                b.push(b' ');
                b.extend_from_slice(smaps_mapping_name(name, show_path));
            }
            b.push(b'\n');
            if b.len() >= 60 * 1024 {
                flush(b)?;
            }
        }
        Ok(())
    }

    /// Prints `segments` in order, every other one formatted by a second
    /// thread meanwhile: the table is printed once its last region is read,
    /// when the reading thread is done and its CPU free, and the user
    /// waits for all of it (60,000 rows of `-X`: about 6 ms on one thread).
    pub(super) fn print_on_two_threads(
        &self,
        segments: &[(Range<usize>, &[u64])],
        b: &mut Vec<u8>,
        out: &mut impl Write,
    ) -> io::Result<()> {
        let mut write = |b: &mut Vec<u8>| {
            out.write_all(b)?;
            b.clear();
            Ok(())
        };
        // A thread started here lands on this one's CPU, and the two then
        // take turns on it (`perf sched timehist`): bind them apart. The
        // second one binds itself first thing; this one binds itself once
        // the second is started, so that it does not inherit a binding to
        // this CPU (it then started only when this one waited for its
        // first piece: 0.4 ms of a 3.5 ms table).
        let place = Placement::new();
        let plan = Spread::plan(&place);
        let mut spread = None;
        let printed = std::thread::scope(|scope| {
            // One piece ahead at most: memory stays at two pieces' text.
            let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(1);
            // Written pieces come back to be filled again: a new one for
            // each piece cost the second thread its page faults (about
            // 200 for a piece of `-X`, 1.3 µs each here) and half its
            // time, and the first thread waited for it.
            let (back, spares) = std::sync::mpsc::channel::<Vec<u8>>();
            scope.spawn(move || {
                place.follow();
                for (range, last) in segments.iter().skip(1).step_by(2) {
                    let mut piece = spares
                        .try_recv()
                        .unwrap_or_else(|_| Vec::with_capacity(range.len() * 5));
                    let done = self.print(range.clone(), last, &mut piece, &mut |_| Ok(()));
                    // The printer stopped (a write failed): stop too.
                    if tx.send(done.map(|()| piece)).is_err() {
                        return;
                    }
                }
            });
            spread = plan.and_then(Plan::bind);
            for (i, (range, last)) in segments.iter().enumerate() {
                if i % 2 == 0 {
                    self.print(range.clone(), last, b, &mut write)?;
                } else {
                    let mut piece = rx
                        .recv()
                        .map_err(|_| io::Error::other(
                            "the thread formatting half the table stopped (it panicked: a bug in pmap, please report it)",
                        ))??;
                    write(b)?;
                    write(&mut piece)?;
                    // The thread may be gone (its last piece): keep none.
                    let _ = back.send(piece);
                }
            }
            Ok(())
        });
        drop(spread);
        printed
    }
}
