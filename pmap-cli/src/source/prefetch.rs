//! Reads a file on a second thread, so that the kernel's work (generating
//! `/proc/PID/smaps` costs more CPU than parsing it) overlaps with ours,
//! and hands its lines out without copying them.
//!
//! The thread cuts the file into blocks of whole lines (the partial line at
//! the end of a read moves to the front of the next block), so the parser
//! reads each line in place, once. Blocks are large: every hand-over wakes
//! the other thread, and on a busy machine a wake-up can preempt the
//! reader, so that the two threads take turns instead of overlapping. A
//! small bounded channel keeps memory bounded whatever the file's size,
//! and used blocks go back to the thread (fresh memory would cost a page
//! fault per 4 KiB). Once a file proves longer than a block, the two
//! threads are bound to different CPUs (`sys::spread`).

use std::{
    fs::File,
    io::{self, Read},
    sync::mpsc::{Receiver, SyncSender, sync_channel},
};

use super::lines::LineSource;
use crate::sys::spread::{Placement, Spread};

/// Bytes read into a block before it is handed over (one line may make it
/// longer). The kernel fills about a page per `read` of a seq file, so this
/// is the hand-over rate, not the syscall size.
const BLOCK: usize = 256 * 1024;
/// Blocks in flight: enough to ride out scheduling hiccups, small in memory.
const DEPTH: usize = 3;
/// Room in a block for the unfinished line carried over from the block
/// before, so that the block is not grown for it: `Vec` growth doubled
/// each block and moved it to a fresh 516 KiB mapping (`strace`: 5 such
/// at 60,000 rows, 1 since). Longer lines still grow it.
const CARRY_ROOM: usize = 8 * 1024;

/// A block: `buf[..end]` holds whole lines (the last block of the file may
/// end without a newline). `buf` stays initialised at its full length, so
/// refilling a recycled block writes no zeros.
struct Block {
    buf: Vec<u8>,
    end: usize,
}

/// The lines of a file a background thread reads ahead.
pub struct Prefetch {
    rx: Receiver<io::Result<Block>>,
    recycle: SyncSender<Block>,
    cur: Block,
    pos: usize,
    done: bool,
    /// Where the thread is asked to run (see `spread`).
    place: Placement,
    /// The parser's CPU binding while the thread reads.
    spread: Option<Spread>,
    /// Whether binding was considered (once, at the first block).
    spread_considered: bool,
}

impl Prefetch {
    /// Starts reading `file` ahead. If no thread can be started, the read
    /// fails with the reason.
    pub fn new(file: File) -> Prefetch {
        let (tx, rx) = sync_channel(DEPTH);
        let (recycle, used) = sync_channel::<Block>(DEPTH + 2);
        let place = Placement::new();
        let spawned = std::thread::Builder::new().name("pmap-read".into()).spawn({
            let tx = tx.clone();
            let place = place.clone();
            move || read_ahead(file, &tx, &used, &place)
        });
        if let Err(e) = spawned {
            let _ = tx.send(Err(e));
        }
        Prefetch {
            rx,
            recycle,
            cur: Block {
                buf: Vec::new(),
                end: 0,
            },
            pos: 0,
            done: false,
            place,
            spread: None,
            spread_considered: false,
        }
    }

    /// Makes the current block hold unread bytes; false at the end.
    #[inline]
    fn fill(&mut self) -> io::Result<bool> {
        if self.pos < self.cur.end {
            return Ok(true);
        }
        self.next_block()
    }

    #[inline(never)]
    fn next_block(&mut self) -> io::Result<bool> {
        while self.pos == self.cur.end {
            if self.done {
                return Ok(false);
            }
            match self.rx.recv() {
                Ok(Ok(block)) => {
                    self.done = block.end == 0;
                    if self.done {
                        self.spread = None;
                    } else if !self.spread_considered {
                        // A block came before the end: the file is long
                        // enough for the two threads to work side by side.
                        self.spread_considered = true;
                        self.spread = Spread::begin(&self.place);
                    }
                    let used = std::mem::replace(&mut self.cur, block);
                    // If the thread has enough spares, this one is dropped.
                    let _ = self.recycle.try_send(used);
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                // The thread ended without an empty block: it panicked.
                Err(_) => {
                    self.done = true;
                    return Err(io::Error::other(
                        "the reading thread stopped before the end of the file (it panicked: a bug in pmap, please report it)",
                    ));
                }
            }
        }
        Ok(true)
    }
}

/// The thread: blocks of whole lines, then an empty block at the end of
/// the file, or the error that stopped the read (the bytes read before it
/// in that block are dropped: the caller judges such a read cut short).
fn read_ahead(
    mut file: File,
    tx: &SyncSender<io::Result<Block>>,
    used: &Receiver<Block>,
    place: &Placement,
) {
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let mut block = used.try_recv().unwrap_or_else(|_| Block {
            buf: vec![0; CARRY_ROOM + BLOCK],
            end: 0,
        });
        block.end = carry.len();
        if block.buf.len() < block.end + BLOCK {
            block.buf.resize(block.end + BLOCK, 0);
        }
        block.buf[..block.end].copy_from_slice(&carry);
        carry.clear();
        let eof = match fill_block(&mut file, &mut block, place) {
            Ok(eof) => eof,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        if !eof {
            // Keep the unfinished last line for the next block; a block
            // without any line end is all one long line: read on.
            let cut = memchr::memrchr(b'\n', &block.buf[..block.end]).map_or(0, |i| i + 1);
            carry.extend_from_slice(&block.buf[cut..block.end]);
            block.end = cut;
            if cut == 0 {
                continue;
            }
        }
        let last = eof && block.end == 0;
        place.note_reader_cpu();
        // The parser went away (it stopped early): stop too.
        if tx.send(Ok(block)).is_err() || last {
            return;
        }
    }
}

/// Reads into `block` after its `end` until BLOCK more bytes are in, or the
/// end of the file (true); moves to the CPU the parser asked for, if any,
/// between reads.
fn fill_block(file: &mut File, block: &mut Block, place: &Placement) -> io::Result<bool> {
    let want = block.end + BLOCK;
    while block.end < want {
        place.follow();
        match file.read(&mut block.buf[block.end..want]) {
            Ok(0) => return Ok(true),
            Ok(k) => block.end += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

impl LineSource for Prefetch {
    fn next_line(&mut self) -> io::Result<Option<&[u8]>> {
        if !self.fill()? {
            return Ok(None);
        }
        let rest = &self.cur.buf[self.pos..self.cur.end];
        let len = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let start = self.pos;
        self.pos = (start + len + 1).min(self.cur.end);
        Ok(Some(&self.cur.buf[start..start + len]))
    }

    /// The rest of the current block: whole lines, so a line is never cut
    /// at its end, but there may be fewer than `n` bytes before the end of
    /// the file.
    fn peek(&mut self, _n: usize) -> io::Result<&[u8]> {
        self.fill()?;
        Ok(&self.cur.buf[self.pos..self.cur.end])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.cur.end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(data: &[u8]) -> Vec<Vec<u8>> {
        let path = std::env::temp_dir().join(format!(
            "pmap-prefetch-{}-{}",
            std::process::id(),
            data.len()
        ));
        std::fs::write(&path, data).expect("write temp file");
        let mut p = Prefetch::new(File::open(&path).expect("open temp file"));
        let mut got = Vec::new();
        while let Some(l) = p.next_line().expect("read through prefetch") {
            got.push(l.to_vec());
        }
        let _ = std::fs::remove_file(&path);
        got
    }

    #[test]
    fn hands_out_every_line_across_blocks() {
        let mut data = Vec::new();
        for i in 0..60_000u32 {
            data.extend_from_slice(
                format!("line {i} {}\n", "x".repeat((i % 97) as usize)).as_bytes(),
            );
        }
        data.extend_from_slice(b"no newline at the end");
        assert!(data.len() > 3 * BLOCK);
        let want: Vec<Vec<u8>> = data.split(|&c| c == b'\n').map(<[u8]>::to_vec).collect();
        assert_eq!(lines_of(&data), want);
    }

    #[test]
    fn a_line_longer_than_a_block_stays_whole() {
        let mut data = vec![b'a'; BLOCK * 2 + 17];
        data.extend_from_slice(b"\nb\n");
        let got = lines_of(&data);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len(), BLOCK * 2 + 17);
        assert_eq!(got[1], b"b");
        assert!(lines_of(b"").is_empty());
    }
}
