//! The bytes of a recording: LEB128 varints, zigzag signed numbers, and
//! frames (length, payload, CRC-32). Ours rather than a crate's: a varint
//! is a dozen lines, and the reader must turn every malformed input into
//! an error (the fuzz target feeds it garbage), never a panic.

use std::fmt;

/// The file starts with these 8 bytes, then the format version (u16 LE).
pub const MAGIC: &[u8; 8] = b"PMAPREC\0";
/// Bumped on any change a reader of the previous version cannot read.
/// Version 2 adds what insight printed (named stacks, notes, summary
/// sections), `ns_pid` and joins; this pmap reads versions 1 and 2.
pub const VERSION: u16 = 2;
/// The oldest version this pmap reads.
pub const OLDEST: u16 = 1;
/// Longest frame payload a reader accepts: a checkpoint of 65,536
/// regions with long names fits; a corrupted length does not make the
/// reader allocate gigabytes.
pub const MAX_FRAME: usize = 64 << 20;

/// Why bytes could not be decoded: what was expected, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed(pub String);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn bad<T>(what: impl Into<String>) -> Result<T, Malformed> {
    Err(Malformed(what.into()))
}

pub fn put_u(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

pub fn put_i(buf: &mut Vec<u8>, v: i64) {
    put_u(buf, zigzag(v));
}

pub fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    put_u(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

/// A cursor over one frame's payload.
pub struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(data: &'a [u8]) -> Cursor<'a> {
        Cursor { data, pos: 0 }
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    pub fn u8(&mut self) -> Result<u8, Malformed> {
        let Some(&b) = self.data.get(self.pos) else {
            return bad("a record ends in the middle of a field");
        };
        self.pos += 1;
        Ok(b)
    }

    pub fn u(&mut self) -> Result<u64, Malformed> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                return bad("a number is longer than 64 bits");
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        bad("a number is longer than 64 bits")
    }

    pub fn i(&mut self) -> Result<i64, Malformed> {
        Ok(unzigzag(self.u()?))
    }

    /// A count of items that each take at least one byte: never more than
    /// the bytes left, so a corrupted count cannot make a huge allocation.
    pub fn count(&mut self) -> Result<usize, Malformed> {
        let n = self.u()?;
        if n > (self.data.len() - self.pos) as u64 {
            return bad(format!("a count of {n} is more than the record holds"));
        }
        Ok(n as usize)
    }

    pub fn u32(&mut self) -> Result<u32, Malformed> {
        u32::try_from(self.u()?).or_else(|_| bad("a 32-bit field holds a larger number"))
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.count()?;
        let b = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(b)
    }
}

/// Appends `payload` as one frame: varint length, payload, CRC-32 of the
/// payload (LE).
pub fn put_frame(out: &mut Vec<u8>, payload: &[u8]) {
    put_u(out, payload.len() as u64);
    out.extend_from_slice(payload);
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
}

/// What is at some offset of a recording.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole frame whose checksum matches; `next` is the offset after it.
    Whole { payload: &'a [u8], next: usize },
    /// The data ends before the frame does (the recorder was killed, or
    /// the disk filled): everything before is good.
    Cut,
    /// The frame is there and wrong.
    Damaged(Malformed),
}

/// The frame that starts at `at` in `data`.
pub fn frame_at(data: &[u8], at: usize) -> Frame<'_> {
    let mut c = Cursor::new(&data[at.min(data.len())..]);
    let len = match c.u() {
        Ok(n) => n,
        Err(_) if data.len().saturating_sub(at) < 10 => return Frame::Cut,
        Err(e) => return Frame::Damaged(e),
    };
    if len as usize > MAX_FRAME || len == 0 {
        return Frame::Damaged(Malformed(format!(
            "a record claims to be {len} bytes long (the most is {MAX_FRAME}, the least 1)"
        )));
    }
    let start = at + c.pos;
    let end = start + len as usize;
    if end + 4 > data.len() {
        return Frame::Cut;
    }
    let payload = &data[start..end];
    let mut sum = [0u8; 4];
    sum.copy_from_slice(&data[end..end + 4]);
    if crc32fast::hash(payload) != u32::from_le_bytes(sum) {
        return Frame::Damaged(Malformed(
            "a record's checksum does not match its bytes".into(),
        ));
    }
    Frame::Whole {
        payload,
        next: end + 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_u(&mut b, v);
            assert_eq!(Cursor::new(&b).u(), Ok(v));
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX, -4096] {
            let mut b = Vec::new();
            put_i(&mut b, v);
            assert_eq!(Cursor::new(&b).i(), Ok(v));
        }
    }

    #[test]
    fn frames_are_cut_or_damaged_never_misread() {
        let mut b = Vec::new();
        put_frame(&mut b, b"hello");
        assert!(matches!(
            frame_at(&b, 0),
            Frame::Whole {
                payload: b"hello",
                ..
            }
        ));
        for n in 0..b.len() {
            assert_eq!(frame_at(&b[..n], 0), Frame::Cut, "cut at {n}");
        }
        b[3] ^= 1;
        assert!(matches!(frame_at(&b, 0), Frame::Damaged(_)));
    }
}
