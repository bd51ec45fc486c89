//! Reads a file on a second thread, so that the kernel's work (generating
//! `/proc/PID/smaps` costs about as much CPU as parsing it) overlaps with
//! ours. Blocks of up to 64 KiB go through a small bounded channel, so
//! memory stays bounded whatever the file's size.

use std::{
    fs::File,
    io::{self, Read},
    sync::mpsc::{Receiver, SyncSender, sync_channel},
};

const BLOCK: usize = 64 * 1024;
/// Blocks in flight: enough to ride out scheduling hiccups, small in memory.
const DEPTH: usize = 4;

/// A `Read` whose data a background thread reads ahead from a file.
pub struct Prefetch {
    rx: Receiver<io::Result<Vec<u8>>>,
    /// Read blocks go back to the thread for reuse: fresh memory for each
    /// block would cost a page fault per 4 KiB.
    recycle: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Prefetch {
    /// Starts reading `file` ahead. If no thread can be started, the file
    /// is read on the caller's thread instead.
    pub fn new(mut file: File) -> Prefetch {
        let (tx, rx) = sync_channel(DEPTH);
        let (recycle, used) = sync_channel::<Vec<u8>>(DEPTH + 2);
        let spawned = std::thread::Builder::new().name("pmap-read".into()).spawn({
            let tx = tx.clone();
            move || {
                loop {
                    let block = read_block(&mut file, used.try_recv().unwrap_or_default());
                    let last = matches!(&block, Ok(b) if b.is_empty()) || block.is_err();
                    // The reader went away (it stopped early): stop too.
                    if tx.send(block).is_err() || last {
                        return;
                    }
                }
            }
        });
        if let Err(e) = spawned {
            let _ = tx.send(Err(e));
        }
        Prefetch {
            rx,
            recycle,
            cur: Vec::new(),
            pos: 0,
        }
    }
}

/// Up to BLOCK bytes (seq files give at most a page or so per read); empty
/// at the end of the file.
fn read_block(file: &mut File, mut block: Vec<u8>) -> io::Result<Vec<u8>> {
    block.resize(BLOCK, 0);
    let mut n = 0;
    while n < BLOCK {
        match file.read(&mut block[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    block.truncate(n);
    Ok(block)
}

impl Read for Prefetch {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(block)) => {
                    let done = std::mem::replace(&mut self.cur, block);
                    // If the thread has enough spares, this one is dropped.
                    let _ = self.recycle.try_send(done);
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                // The thread is done (after an empty block).
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_whole_file() {
        let path = std::env::temp_dir().join(format!("pmap-prefetch-{}", std::process::id()));
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).expect("write temp file");
        let mut p = Prefetch::new(File::open(&path).expect("open temp file"));
        let mut got = Vec::new();
        p.read_to_end(&mut got).expect("read through prefetch");
        let _ = std::fs::remove_file(&path);
        assert_eq!(got, data);
    }
}
