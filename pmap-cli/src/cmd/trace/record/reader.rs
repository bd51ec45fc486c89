//! Reading a recording: the header, then records in order up to the end
//! or the first damage (which is reported, never a panic), and finding the
//! checkpoint to start from for a given moment.

use std::{fmt, path::Path};

use super::{
    codec::{Decoder, checkpoint_time},
    format::{Header, Record, World},
    wire::{Frame, MAGIC, Malformed, OLDEST, VERSION, frame_at},
};

/// Why reading stopped before a clean end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The file ends inside a record: the tracer was killed while writing
    /// it, or the disk filled.
    Cut { at: usize },
    /// The file ends between records, without the end record.
    NoEnd,
    /// A record is there but wrong (checksum, or content).
    Damaged { at: usize, why: Malformed },
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Cut { at } => write!(
                f,
                "the recording ends in the middle of a record at byte {at} (the tracer was killed \
                 or the disk filled): everything before it was read"
            ),
            Stop::NoEnd => f.write_str(
                "the recording has no end record (the tracer was killed or the disk filled): \
                 everything it holds was read",
            ),
            Stop::Damaged { at, why } => write!(
                f,
                "the recording is damaged at byte {at}: {why}; the records before it were read, \
                 nothing after it can be trusted"
            ),
        }
    }
}

impl Stop {
    /// A recording cut short is expected (a killed tracer); damage is not.
    pub fn is_damage(&self) -> bool {
        matches!(self, Stop::Damaged { .. })
    }
}

pub struct Recording {
    data: Vec<u8>,
    pub header: Header,
    /// Offset of the first record after the header.
    first: usize,
    /// The format version it was written in.
    pub version: u16,
}

impl Recording {
    /// Reads `path` and its header; the error says what is wrong.
    pub fn open(path: &Path) -> Result<Recording, String> {
        let shown = path.display();
        let data = std::fs::read(path).map_err(|e| {
            format!("{shown}: cannot read it ({e}); give the FILE `pmap trace --record FILE` wrote")
        })?;
        Recording::from_bytes(data).map_err(|e| format!("{shown}: {e}"))
    }

    pub fn from_bytes(data: Vec<u8>) -> Result<Recording, String> {
        if data.len() < 10 && MAGIC.starts_with(&data[..data.len().min(8)]) {
            return Err(format!(
                "the recording ends inside its header ({} bytes): the tracer was killed as it \
                 started, nothing was recorded",
                data.len()
            ));
        }
        if data.len() < 10 || &data[..8] != MAGIC {
            return Err(
                "not a pmap recording (it does not start as `pmap trace --record` \
                        writes them)"
                    .into(),
            );
        }
        let version = u16::from_le_bytes([data[8], data[9]]);
        if !(OLDEST..=VERSION).contains(&version) {
            return Err(format!(
                "a recording of format version {version}, and this pmap reads versions {OLDEST} \
                 to {VERSION}: replay it with the pmap that wrote it"
            ));
        }
        let (header, first) = match frame_at(&data, 10) {
            Frame::Whole { payload, next } => match Decoder::new(version).decode(payload) {
                Ok(Record::Header(h)) => (h, next),
                Ok(_) => return Err("the recording's first record is not its header".into()),
                Err(e) => return Err(format!("the recording's header is damaged: {e}")),
            },
            Frame::Cut => return Err("the recording ends inside its header".into()),
            Frame::Damaged(e) => return Err(format!("the recording's header is damaged: {e}")),
        };
        Ok(Recording {
            data,
            header,
            first,
            version,
        })
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.len() <= self.first
    }

    /// Every record from the start.
    pub fn records(&self) -> Records<'_> {
        self.records_from(self.first)
    }

    /// Records from `at`, which must be a checkpoint's offset (or the
    /// first record's): the decoder's state starts there.
    pub fn records_from(&self, at: usize) -> Records<'_> {
        Records {
            data: &self.data,
            pos: at,
            dec: Decoder::new(self.version),
            ended: false,
            done: false,
        }
    }

    /// The offset of the last checkpoint at or before `t` (CLOCK_MONOTONIC
    /// ns), found by walking the frames without decoding them. `None`: `t`
    /// is before the first checkpoint. Damage before it is an error.
    pub fn checkpoint_before(&self, t: u64) -> Result<Option<usize>, Stop> {
        let mut pos = self.first;
        let mut best = None;
        while pos < self.data.len() {
            match frame_at(&self.data, pos) {
                Frame::Whole { payload, next } => {
                    match checkpoint_time(payload) {
                        Some(ct) if ct > t => break,
                        Some(_) => best = Some(pos),
                        None => {}
                    }
                    pos = next;
                }
                // A damaged tail: the checkpoints before it still count.
                Frame::Cut => break,
                Frame::Damaged(why) => return Err(Stop::Damaged { at: pos, why }),
            }
        }
        Ok(best)
    }
}

/// Records in order; after the last one, the reason reading stopped if it
/// was not the end record (`Err`), then nothing.
pub struct Records<'a> {
    data: &'a [u8],
    pos: usize,
    dec: Decoder,
    ended: bool,
    done: bool,
}

impl Records<'_> {
    /// What the records read so far add up to.
    pub fn world(&self) -> &World {
        &self.dec.state.world
    }
}

impl Iterator for Records<'_> {
    type Item = Result<Record, Stop>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.pos >= self.data.len() {
            self.done = true;
            return (!self.ended).then_some(Err(Stop::NoEnd));
        }
        let at = self.pos;
        let r = match frame_at(self.data, at) {
            Frame::Whole { payload, next } => {
                self.pos = next;
                self.dec
                    .decode(payload)
                    .map_err(|why| Stop::Damaged { at, why })
            }
            Frame::Cut => Err(Stop::Cut { at }),
            Frame::Damaged(why) => Err(Stop::Damaged { at, why }),
        };
        match &r {
            Ok(Record::End { .. }) => self.ended = true,
            Ok(_) => {}
            Err(_) => self.done = true,
        }
        Some(r)
    }
}
