//! Reads a file on a second thread, so that the kernel's work (generating
//! `/proc/PID/smaps` costs more CPU than parsing it) overlaps with ours,
//! and hands its lines out without copying them.
//!
//! The thread cuts the file into blocks of whole lines (the partial line at
//! the end of a read moves to the front of the next block), so the parser
//! reads each line in place, once. A bounded channel keeps memory bounded
//! whatever the file's size, and used blocks go back to the thread (fresh
//! memory would cost a page fault per 4 KiB). Once a file proves longer
//! than [`SPREAD_AFTER`], the two threads are bound to different CPUs
//! (`sys::spread`).
//!
//! Two costs of the reading thread set the design, because its time is the
//! whole run's (`cargo xtask bench snapshot`'s floor rows measure them):
//! - The parser looks for blocks every [`POLL`] rather than being woken
//!   for each: waking a thread asleep on another CPU costs the waker about
//!   10 µs on a virtual machine (an interrupt to the other CPU). Only the
//!   end of the file and errors wake it.
//! - Blocks are small and the last one returned is refilled first, so that
//!   the few in use stay in the reading CPU's cache: the kernel copies each
//!   page of text into them, and copying into memory that is not in the
//!   cache made the read of `maps` 9% slower (a single thread reading into
//!   1.25 MiB of buffers in turn against `cat`'s one 128 KiB buffer). Many
//!   may be in flight all the same, for when the parser waits for a CPU.

use std::{
    fs::File,
    io::{self, Read},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc::{Receiver, SyncSender, TryRecvError, sync_channel},
    },
    thread::Thread,
    time::Duration,
};

use super::lines::LineSource;
use crate::sys::spread::{Placement, Spread};

/// Bytes read into a block before it is handed over (one line may make it
/// longer). The kernel fills about a page per `read` of a seq file, so this
/// is the hand-over rate, not the syscall size. 32 KiB: at 60,000 regions,
/// 1.10x of `cat maps` against 1.21x for 256 KiB blocks and 1.15x for 8 KiB
/// (more hand-overs), with the same [`POLL`].
const BLOCK: usize = 32 * 1024;
/// Blocks in flight: the reading thread waits when all are full. 1 MiB, so
/// that on a busy machine the reader goes on while the parser waits for a
/// CPU (a scheduler's time slice is a few ms; `maps` comes at about
/// 250 KB per ms). While the parser keeps up, only a few are in use (see
/// [`Spares`]).
const DEPTH: usize = 32;
/// Blocks in flight before the two threads are bound apart. Until then
/// they may share a CPU, and a reader far ahead would read the whole of a
/// mid-sized file before the parser ran (10,000 regions: 1.57x of `cat`
/// with 32 blocks from the start, 1.28x with 8).
const EARLY_DEPTH: usize = 4;
/// The file length after which the two threads are bound to different
/// CPUs: binding costs two system calls and a move, worth it for a long
/// read only. At 10,000 regions (a 500 KB `maps`) binding after 64 KiB
/// took 1.20x of `cat`'s time against 1.36x after 256 KiB, and at 1,000
/// regions (75 KB) 1.21x against 1.19x (40 rounds in shuffled order).
const SPREAD_AFTER: usize = 64 * 1024;
/// Room in a block for the unfinished line carried over from the block
/// before, so that the block is not grown for it: `Vec` growth doubled
/// each block and moved it to a fresh 516 KiB mapping (`strace`: 5 such
/// at 60,000 rows, 1 since). Longer lines still grow it.
const CARRY_ROOM: usize = 8 * 1024;
/// How often the parser looks for a block when none is ready. A block of
/// `smaps` takes the kernel about 30 µs to fill, of `maps` about 120 µs,
/// and parsing one is faster than either: the parser keeps up, and learns
/// of the last block at once (it is woken for that one).
const POLL: Duration = Duration::from_micros(50);

/// A block: `buf[..end]` holds whole lines (the last block of the file may
/// end without a newline). `buf` stays initialised at its full length, so
/// refilling a recycled block writes no zeros.
struct Block {
    buf: Vec<u8>,
    end: usize,
}

/// Used blocks waiting to be filled again, the last one returned on top:
/// while the parser keeps up the reader refills the same few blocks, which
/// stay in its cache, and the blocks made while the parser lagged behind
/// wait below, unused.
#[derive(Clone, Default)]
struct Spares(Arc<Mutex<Vec<Block>>>);

impl Spares {
    fn put(&self, b: Block) {
        let mut v = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if v.len() < DEPTH + 2 {
            v.push(b);
        }
    }

    fn take(&self) -> Option<Block> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
    }
}

/// How far the parser got, for the reader's limit before binding.
#[derive(Default)]
struct Progress {
    /// Blocks the parser took.
    taken: AtomicUsize,
    /// The parser stopped early: the reader must not wait for it.
    gone: AtomicBool,
}

/// The lines of a file a background thread reads ahead.
pub struct Prefetch {
    rx: Receiver<io::Result<Block>>,
    spares: Spares,
    progress: Arc<Progress>,
    cur: Block,
    pos: usize,
    done: bool,
    /// Where the thread is asked to run (see `spread`).
    place: Placement,
    /// The parser's CPU binding while the thread reads.
    spread: Option<Spread>,
    /// Bytes handed over so far, until binding is considered (once, after
    /// [`SPREAD_AFTER`]); `None` after that.
    handed_over: Option<usize>,
}

impl Prefetch {
    /// Starts reading `file` ahead. If no thread can be started, the read
    /// fails with the reason.
    pub fn new(file: File) -> Prefetch {
        let (tx, rx) = sync_channel(DEPTH);
        let spares = Spares::default();
        let progress = Arc::new(Progress::default());
        let place = Placement::new();
        // The lines are read on the thread that asks for them, in practice
        // this one; were it another, it would only learn of the last block
        // at its next look.
        let parser = std::thread::current();
        let spawned = std::thread::Builder::new().name("pmap-read".into()).spawn({
            let tx = tx.clone();
            let place = place.clone();
            let spares = spares.clone();
            let progress = progress.clone();
            move || read_ahead(file, &tx, &spares, &progress, &place, &parser)
        });
        if let Err(e) = spawned {
            let _ = tx.send(Err(e));
        }
        Prefetch {
            rx,
            spares,
            progress,
            cur: Block {
                buf: Vec::new(),
                end: 0,
            },
            pos: 0,
            done: false,
            place,
            spread: None,
            handed_over: Some(0),
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
            let got = match self.rx.try_recv() {
                Err(TryRecvError::Empty) => {
                    std::thread::park_timeout(POLL);
                    continue;
                }
                Err(TryRecvError::Disconnected) => Err(()),
                Ok(b) => Ok(b),
            };
            match got {
                Ok(Ok(block)) => {
                    self.progress.taken.fetch_add(1, Ordering::Relaxed);
                    self.done = block.end == 0;
                    if self.done {
                        self.spread = None;
                    } else if let Some(n) = &mut self.handed_over {
                        *n += block.end;
                        if *n > SPREAD_AFTER {
                            // The file is long enough for the two threads
                            // to work side by side.
                            self.handed_over = None;
                            self.spread = Spread::begin(&self.place);
                        }
                    }
                    let used = std::mem::replace(&mut self.cur, block);
                    // If the thread has enough spares, this one is dropped.
                    self.spares.put(used);
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

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.progress.gone.store(true, Ordering::Relaxed);
    }
}

/// The thread: blocks of whole lines, then an empty block at the end of
/// the file, or the error that stopped the read (the bytes read before it
/// in that block are dropped: the caller judges such a read cut short).
/// `parser` is woken for the last block and for an error only (see
/// [`POLL`]).
fn read_ahead(
    file: File,
    tx: &SyncSender<io::Result<Block>>,
    spares: &Spares,
    progress: &Progress,
    place: &Placement,
    parser: &Thread,
) {
    read_blocks(file, tx, spares, progress, place);
    parser.unpark();
}

fn read_blocks(
    mut file: File,
    tx: &SyncSender<io::Result<Block>>,
    spares: &Spares,
    progress: &Progress,
    place: &Placement,
) {
    let mut carry: Vec<u8> = Vec::new();
    let mut sent = 0usize;
    loop {
        while !place.bound()
            && sent.saturating_sub(progress.taken.load(Ordering::Relaxed)) >= EARLY_DEPTH
            && !progress.gone.load(Ordering::Relaxed)
        {
            std::thread::park_timeout(POLL);
        }
        let mut block = spares.take().unwrap_or_else(|| Block {
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
            let cut = crate::sys::bytes::rfind(b'\n', &block.buf[..block.end]).map_or(0, |i| i + 1);
            carry.extend_from_slice(&block.buf[cut..block.end]);
            block.end = cut;
            if cut == 0 {
                continue;
            }
        }
        place.note_reader_cpu();
        // The parser went away (it stopped early): stop too.
        if block.end > 0 && tx.send(Ok(block)).is_err() {
            return;
        }
        if eof {
            // The end, told at once: reading again would only ask the
            // kernel for the same nothing.
            let end = Block {
                buf: Vec::new(),
                end: 0,
            };
            let _ = tx.send(Ok(end));
            return;
        }
        sent += 1;
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
        let len = crate::sys::bytes::find(b'\n', rest).unwrap_or(rest.len());
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

    /// The reading thread wakes the thread that created the reader; read
    /// on another, the lines must all come still (found by looking).
    #[test]
    fn lines_read_on_another_thread_than_the_creators_all_come() {
        let data: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("row {i}\n").into_bytes())
            .collect();
        let path = std::env::temp_dir().join(format!("pmap-prefetch-moved-{}", std::process::id()));
        std::fs::write(&path, &data).expect("write temp file");
        let mut p = Prefetch::new(File::open(&path).expect("open temp file"));
        let n = std::thread::spawn(move || {
            let mut n = 0;
            while p.next_line().expect("read through prefetch").is_some() {
                n += 1;
            }
            n
        })
        .join()
        .expect("the reading thread");
        let _ = std::fs::remove_file(&path);
        assert_eq!(n, 20_000);
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
