//! The recorder: the tracer hands it every record it prints (and every
//! delta, printed or not); it writes them framed, with a checkpoint (every
//! process's full table) now and then so a reader can start anywhere.

use std::{
    fs::File,
    io::Write,
    path::{Path, PathBuf},
};

use super::{
    codec::Encoder,
    format::{Header, ProcState, Record},
    wire::{MAGIC, VERSION, put_frame},
};
use crate::{
    cmd::trace::{clock::monotonic_ns, delta::Delta, insight::DeltaNotes, session::Session},
    source::process,
};

/// CLOCK_REALTIME in ns since the epoch.
fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A checkpoint is written after at least this many records...
const CHECKPOINT_RECORDS: u64 = 4096;
/// ...and once the records since the last one take this many times its
/// size, so that checkpoints of a large map stay a small part of the file.
const CHECKPOINT_RATIO: u64 = 4;
/// Bytes buffered before a write, besides the write after each batch.
const BUFFER: usize = 256 * 1024;

pub struct Recorder {
    path: PathBuf,
    /// None once a write failed (the recording ends there).
    file: Option<File>,
    enc: Encoder,
    payload: Vec<u8>,
    buf: Vec<u8>,
    records_since: u64,
    bytes_since: u64,
    checkpoint_bytes: u64,
}

impl Recorder {
    /// Creates (or truncates) `path`, before anything is traced.
    pub fn create(path: &Path) -> Result<Recorder, String> {
        let file = File::create(path).map_err(|e| {
            format!(
                "--record {}: cannot create the recording ({e}); check that its directory exists \
                 and is writable",
                path.display()
            )
        })?;
        Ok(Recorder {
            path: path.to_path_buf(),
            file: Some(file),
            enc: Encoder::default(),
            payload: Vec::new(),
            buf: Vec::with_capacity(BUFFER),
            records_since: 0,
            bytes_since: 0,
            checkpoint_bytes: 0,
        })
    }

    /// Writes the header: the trace started at `start_ns` (CLOCK_MONOTONIC).
    pub fn begin(&mut self, start_ns: u64, polled: bool, stacks: bool) {
        // The wall-clock time of `start_ns`, from both clocks read now.
        let (mono, real) = (monotonic_ns(), realtime_ns());
        let header = Header {
            start_ns,
            start_real_ns: real.saturating_sub(mono.saturating_sub(start_ns)),
            polled,
            stacks,
            command: std::env::args().collect::<Vec<_>>().join(" "),
        };
        self.buf.extend_from_slice(MAGIC);
        self.buf.extend_from_slice(&VERSION.to_le_bytes());
        self.record(&Record::Header(header));
        self.flush();
    }

    pub fn record(&mut self, rec: &Record) {
        if self.file.is_none() {
            return;
        }
        self.payload.clear();
        self.enc.encode(rec, &mut self.payload);
        let before = self.buf.len();
        put_frame(&mut self.buf, &self.payload);
        self.records_since += 1;
        self.bytes_since += (self.buf.len() - before) as u64;
        if self.buf.len() >= BUFFER {
            self.flush();
        }
    }

    /// Every delta the tracer found, printed or not, with what insight
    /// said under it; `now` is when it was printed (its time when it is
    /// not a syscall's).
    pub fn delta(&mut self, d: &Delta, notes: &DeltaNotes, now: u64) {
        let t = if d.ktime_ns != 0 { d.ktime_ns } else { now };
        self.record(&Record::Delta {
            t,
            delta: d.clone(),
            notes: notes.clone(),
        });
    }

    /// A table the tracer printed of `s`, and the insight lines printed
    /// after it.
    pub fn table(&mut self, s: &Session, reason: &str, notes: &[String]) {
        let proc = self.state_of(s);
        self.record(&Record::Table {
            t: s.table_read_ns(),
            reason: reason.to_string(),
            proc,
            notes: notes.to_vec(),
        });
    }

    fn state_of(&self, s: &Session) -> ProcState {
        // The header is read at tables (exec changes it) and kept between.
        let known = self.enc.state.world.procs.get(&s.pid);
        let info = s
            .dir()
            .and_then(process::fetch_in)
            .or_else(|| known.and_then(|p| p.info.clone()));
        ProcState {
            pid: s.pid,
            ppid: s.ppid,
            ns_pid: s.ns_pid,
            info,
            regions: s.table_regions(),
        }
    }

    /// The processes' full tables, now.
    pub fn checkpoint(&mut self, sessions: &[Session], now: u64) {
        let procs = sessions
            .iter()
            .filter(|s| !s.exited)
            .map(|s| {
                let known = self.enc.state.world.procs.get(&s.pid);
                match known.and_then(|p| p.info.clone()) {
                    Some(info) => ProcState {
                        pid: s.pid,
                        ppid: s.ppid,
                        ns_pid: s.ns_pid,
                        info: Some(info),
                        regions: s.table_regions(),
                    },
                    None => self.state_of(s),
                }
            })
            .collect();
        self.record(&Record::Checkpoint { t: now, procs });
        self.checkpoint_bytes = self.payload.len() as u64;
        (self.records_since, self.bytes_since) = (0, 0);
    }

    /// After a batch of events: a checkpoint when due, and what is
    /// buffered goes to the file (a tracer killed later loses nothing
    /// before this point).
    pub fn after_batch(&mut self, sessions: &[Session], now: u64) {
        if self.records_since >= CHECKPOINT_RECORDS
            && self.bytes_since >= CHECKPOINT_RATIO * self.checkpoint_bytes
        {
            self.checkpoint(sessions, now);
        }
        self.flush();
    }

    pub fn flush(&mut self) {
        let Some(f) = &mut self.file else {
            return;
        };
        if let Err(e) = f.write_all(&self.buf) {
            eprintln!(
                "pmap trace: --record {}: writing failed ({e}); the recording ends here (it is \
                 readable up to its last complete record); the trace goes on",
                self.path.display()
            );
            self.file = None;
        }
        self.buf.clear();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.flush();
    }
}
