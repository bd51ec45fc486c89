//! `/proc/PID/smaps`: a maps-format header line per region, then
//! `Key:   value kB` lines, then `VmFlags: rd wr ...`.
//!
//! Lines are classified the way procps-ng's pmap reads them (a key of 1..=31
//! bytes without ':', a colon, blanks, digits; or `VmFlags:` and flag
//! letters); anything else must be a region header.

use std::{fs::File, io};

use super::{
    lines::LineReader,
    maps::{ParseError, parse_line_into},
};
use crate::region::Region;

/// One `Key: value kB` line of an smaps entry (the value is in kB, or a
/// plain number for `THPeligible`/`ProtectionKey`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct SmapsField {
    pub name: Box<str>,
    pub value: u64,
}

/// One region of `/proc/PID/smaps`: its header line, its fields in the
/// kernel's order, and its `VmFlags` (without the trailing space).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct SmapsEntry {
    pub region: Region,
    pub fields: Vec<SmapsField>,
    pub vm_flags: Option<Vec<u8>>,
}

impl SmapsEntry {
    /// The value of field `name`, if the kernel printed it.
    pub fn field(&self, name: &str) -> Option<u64> {
        self.fields
            .iter()
            .find(|f| &*f.name == name)
            .map(|f| f.value)
    }
}

/// What one smaps line is.
#[derive(Debug, PartialEq, Eq)]
pub enum SmapsLine<'a> {
    /// A region header; the region was parsed into the caller's `Region`.
    Header,
    /// `Key: value ...`.
    Field { name: &'a [u8], value: u64 },
    /// The flag letters after `VmFlags:`, blanks kept except one trailing.
    VmFlags(&'a [u8]),
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// `Key: 123...`: the key is 1..=31 bytes before the first ':', the value
/// the first (up to 20) digits after blanks. Saturates on overflow.
pub fn field_line(line: &[u8]) -> Option<(&[u8], u64)> {
    let colon = memchr::memchr(b':', &line[..line.len().min(32)])?;
    if colon == 0 || line.first() == Some(&0) {
        return None;
    }
    let mut p = colon + 1;
    while line.get(p).is_some_and(|&c| is_space(c)) {
        p += 1;
    }
    let digits_start = p;
    let mut value: u64 = 0;
    while let Some(&c) = line.get(p) {
        if !c.is_ascii_digit() || p - digits_start == 20 {
            break;
        }
        value = value.saturating_mul(10).saturating_add(u64::from(c - b'0'));
        p += 1;
    }
    if p == digits_start {
        return None;
    }
    Some((&line[..colon], value))
}

/// `VmFlags: rd mr ...`: up to 127 bytes of `[a-z ]` after blanks; one
/// trailing space removed.
pub fn vmflags_line(line: &[u8]) -> Option<&[u8]> {
    let rest = line.strip_prefix(b"VmFlags:")?;
    let skip = rest.iter().take_while(|&&c| is_space(c)).count();
    let rest = &rest[skip..];
    let len = rest
        .iter()
        .take(127)
        .take_while(|&&c| c == b' ' || c.is_ascii_lowercase())
        .count();
    if len == 0 {
        return None;
    }
    let flags = &rest[..len];
    Some(flags.strip_suffix(b" ").unwrap_or(flags))
}

/// Classifies one line (without newline); a header is parsed into `region`.
pub fn classify<'a>(line: &'a [u8], region: &mut Region) -> Result<SmapsLine<'a>, ParseError> {
    if let Some((name, value)) = field_line(line) {
        return Ok(SmapsLine::Field { name, value });
    }
    if let Some(flags) = vmflags_line(line) {
        return Ok(SmapsLine::VmFlags(flags));
    }
    parse_line_into(line, region).map(|()| SmapsLine::Header)
}

/// A line-at-a-time source for `SmapsParser`.
pub trait LineSource {
    fn next_line(&mut self) -> io::Result<Option<&[u8]>>;
}

impl<R: io::Read> LineSource for LineReader<R> {
    fn next_line(&mut self) -> io::Result<Option<&[u8]>> {
        LineReader::next_line(self)
    }
}

/// Lines of an in-memory text.
pub struct SliceLines<'a>(pub &'a [u8]);

impl LineSource for SliceLines<'_> {
    fn next_line(&mut self) -> io::Result<Option<&[u8]>> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let (line, rest) = match memchr::memchr(b'\n', self.0) {
            Some(i) => (&self.0[..i], &self.0[i + 1..]),
            None => (self.0, &self.0[self.0.len()..]),
        };
        self.0 = rest;
        Ok(Some(line))
    }
}

/// Streams smaps entries, reusing the caller's `SmapsEntry` so that after
/// the first region nothing is allocated per line.
pub struct SmapsReader<S> {
    lines: S,
    /// A header read while finishing the previous entry.
    pending: Option<Region>,
    scratch: Region,
}

impl SmapsReader<LineReader<File>> {
    pub fn open(pid: u32) -> io::Result<Self> {
        Ok(Self::new(LineReader::new(File::open(format!(
            "/proc/{pid}/smaps"
        ))?)))
    }
}

fn invalid(e: ParseError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<S: LineSource> SmapsReader<S> {
    pub fn new(lines: S) -> Self {
        SmapsReader {
            lines,
            pending: None,
            scratch: Region::default(),
        }
    }

    /// Reads the next entry into `e`; `Ok(false)` at the end. A line out of
    /// place (a field before any header, a field after `VmFlags`) is an
    /// `InvalidData` error, as procps-ng refuses it too.
    pub fn next_into(&mut self, e: &mut SmapsEntry) -> io::Result<bool> {
        match self.pending.take() {
            Some(r) => e.region = r,
            None => {
                let Some(line) = self.lines.next_line()? else {
                    return Ok(false);
                };
                if classify(line, &mut e.region).map_err(invalid)? != SmapsLine::Header {
                    return Err(invalid(ParseError::new("region header", line)));
                }
            }
        }
        let mut n = 0;
        e.vm_flags = None;
        while let Some(line) = self.lines.next_line()? {
            match classify(line, &mut self.scratch).map_err(invalid)? {
                SmapsLine::Header => {
                    self.pending = Some(self.scratch.clone());
                    break;
                }
                SmapsLine::Field { name, value } => {
                    if e.vm_flags.is_some() {
                        return Err(invalid(ParseError::new("field after VmFlags", line)));
                    }
                    match e.fields.get_mut(n) {
                        Some(f) if f.name.as_bytes() == name => f.value = value,
                        _ => {
                            e.fields.truncate(n);
                            e.fields.push(SmapsField {
                                name: String::from_utf8_lossy(name).into(),
                                value,
                            });
                        }
                    }
                    n += 1;
                }
                SmapsLine::VmFlags(flags) => {
                    if e.vm_flags.is_some() {
                        return Err(invalid(ParseError::new("second VmFlags", line)));
                    }
                    e.vm_flags = Some(flags.to_vec());
                }
            }
        }
        e.fields.truncate(n);
        Ok(true)
    }
}

/// Parses a whole smaps text into entries.
pub fn parse(bytes: &[u8]) -> io::Result<Vec<SmapsEntry>> {
    let mut reader = SmapsReader::new(SliceLines(bytes));
    let mut out = Vec::new();
    let mut e = SmapsEntry::default();
    while reader.next_into(&mut e)? {
        out.push(e.clone());
    }
    Ok(out)
}

/// All entries of `/proc/PID/smaps`.
pub fn read(pid: u32) -> io::Result<Vec<SmapsEntry>> {
    let mut reader = SmapsReader::open(pid)?;
    let mut out = Vec::new();
    let mut e = SmapsEntry::default();
    while reader.next_into(&mut e)? {
        out.push(e.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] =
        b"55b375e37000-55b375e39000 r--p 00000000 fe:00 247774                     /usr/bin/sleep
Size:                  8 kB
KernelPageSize:        4 kB
Rss:                   8 kB
THPeligible:           0
VmFlags: rd mr mw me 
7ffe12a41000-7ffe12a62000 rw-p 00000000 00:00 0                          [stack]
Size:                132 kB
KernelPageSize:        4 kB
Rss:                  12 kB
THPeligible:           0
ProtectionKey:         0
VmFlags: rd wr mr mw me gd ac 
7f0000000000-7f0000001000 rw-s 00000000 00:00 0 
Size:                  4 kB
";

    #[test]
    fn parses_entries() {
        let v = parse(SAMPLE).expect("valid smaps");
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].region.name, b"/usr/bin/sleep");
        assert_eq!(v[0].field("Size"), Some(8));
        assert_eq!(v[0].field("THPeligible"), Some(0));
        assert_eq!(v[0].fields.len(), 4);
        assert_eq!(v[0].vm_flags.as_deref(), Some(&b"rd mr mw me"[..]));
        assert_eq!(v[1].fields.len(), 5);
        assert_eq!(v[1].field("ProtectionKey"), Some(0));
        assert_eq!(v[1].vm_flags.as_deref(), Some(&b"rd wr mr mw me gd ac"[..]));
        assert_eq!(v[2].fields.len(), 1);
        assert_eq!(v[2].vm_flags, None);
        assert!(v[2].region.name.is_empty());
    }

    #[test]
    fn field_lines() {
        assert_eq!(field_line(b"Rss:  12 kB"), Some((&b"Rss"[..], 12)));
        assert_eq!(
            field_line(b"THPeligible:    1"),
            Some((&b"THPeligible"[..], 1))
        );
        assert_eq!(field_line(b"Odd key:\t7"), Some((&b"Odd key"[..], 7)));
        assert_eq!(
            field_line(b"Big: 99999999999999999999999 kB"),
            Some((&b"Big"[..], u64::MAX))
        );
        assert_eq!(field_line(b"VmFlags: rd"), None);
        assert_eq!(field_line(b": 5"), None);
        assert_eq!(field_line(b"Rss:"), None);
        assert_eq!(field_line(b"Rss: kB"), None);
        assert_eq!(field_line(b"AVeryLongKeyThatIsMoreThan31Bytes: 5"), None);
        assert_eq!(field_line(b""), None);
    }

    #[test]
    fn vmflags_lines() {
        assert_eq!(vmflags_line(b"VmFlags: rd ex "), Some(&b"rd ex"[..]));
        assert_eq!(vmflags_line(b"VmFlags: ex"), Some(&b"ex"[..]));
        assert_eq!(vmflags_line(b"VmFlags: "), None);
        assert_eq!(vmflags_line(b"VmFlags: RD"), None);
        let long = [b"VmFlags: ".to_vec(), b"ab ".repeat(60)].concat();
        assert_eq!(vmflags_line(&long).map(|f| f.len()), Some(127));
    }

    #[test]
    fn out_of_place_lines_are_errors() {
        assert!(parse(b"Size: 4 kB\n").is_err());
        assert!(parse(b"10-20 r--p 0 0:0 0\nVmFlags: rd\nSize: 4 kB\n").is_err());
        assert!(parse(b"10-20 r--p 0 0:0 0\ngarbage\n").is_err());
        assert!(parse(b"").expect("empty is fine").is_empty());
    }

    #[test]
    fn never_panics_on_mutations() {
        for i in 0..SAMPLE.len() {
            for b in [0u8, b' ', b':', b'\n', 0xff, b'7', b'V'] {
                let mut m = SAMPLE.to_vec();
                m[i] = b;
                let _ = parse(&m);
            }
            let _ = parse(&SAMPLE[..i]);
        }
    }

    #[test]
    fn reads_own_smaps() {
        let v = read(std::process::id()).expect("read own smaps");
        assert!(v.iter().any(|e| e.region.name == b"[stack]"));
        assert!(
            v.iter()
                .all(|e| e.field("Size") == Some(e.region.size() / 1024))
        );
    }
}
