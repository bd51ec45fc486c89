//! `/proc/PID/smaps`: a maps-format header line per region, then
//! `Key:   value kB` lines, then `VmFlags: rd wr ...`.
//!
//! Lines are classified the way procps-ng's pmap reads them (a key of 1..=31
//! bytes without ':', a colon, blanks, digits; or `VmFlags:` and flag
//! letters); anything else must be a region header.

use std::{io, sync::Arc};

use super::{
    lines::LineSource,
    maps::{ParseError, parse_line_into},
    smaps_fields::{fast_field, fixed_fields, layout_key},
};
use crate::map::{
    region::Region,
    smaps::{SmapsEntry, SmapsField},
};

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
    let colon = crate::sys::bytes::find(b':', &line[..line.len().min(32)])?;
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

/// Lines of an in-memory text.
pub struct SliceLines<'a>(pub &'a [u8]);

impl LineSource for SliceLines<'_> {
    fn peek(&mut self, _n: usize) -> io::Result<&[u8]> {
        Ok(self.0)
    }
    fn consume(&mut self, n: usize) {
        self.0 = &self.0[n.min(self.0.len())..];
    }
    fn next_line(&mut self) -> io::Result<Option<&[u8]>> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let (line, rest) = match crate::sys::bytes::find(b'\n', self.0) {
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
    /// `scratch` holds a header read while finishing the previous entry.
    pending: bool,
    scratch: Region,
    /// Field names in the order the last entry had them, and the first
    /// bytes of their lines when in the kernel's layout (`fixed_field`).
    schema: Vec<Arc<str>>,
    keys: Vec<[u64; 2]>,
    spare_flags: Vec<u8>,
}

/// Short byte strings compared inline (a `memcmp` call costs more than
/// these few bytes).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

fn invalid(e: ParseError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<S: LineSource> SmapsReader<S> {
    pub fn new(lines: S) -> Self {
        SmapsReader {
            lines,
            pending: false,
            scratch: Region::default(),
            schema: Vec::new(),
            keys: Vec::new(),
            spare_flags: Vec::new(),
        }
    }

    /// Reads the next entry into `e`; `Ok(false)` at the end. A line out of
    /// place (a field before any header, a field after `VmFlags`) is an
    /// `InvalidData` error, as procps-ng refuses it too.
    pub fn next_into(&mut self, e: &mut SmapsEntry) -> io::Result<bool> {
        if self.pending {
            // Swapping keeps both name buffers allocated for reuse.
            std::mem::swap(&mut e.region, &mut self.scratch);
            self.pending = false;
        } else {
            let Some(line) = self.lines.next_line()? else {
                return Ok(false);
            };
            if classify(line, &mut e.region).map_err(invalid)? != SmapsLine::Header {
                return Err(invalid(ParseError::new("region header", line)));
            }
        }
        let mut n = 0;
        if let Some(v) = e.vm_flags.take() {
            self.spare_flags = v;
        }
        loop {
            // Most lines are fields in the kernel's usual shape.
            let rest = self.lines.peek(64)?;
            // The fields that follow in the kernel's layout, as in the last
            // entry: as many as the bytes at hand hold, in one pass.
            let mut at = 0;
            if e.vm_flags.is_none() {
                (n, at) = fixed_fields(rest, &self.keys, &self.schema, &mut e.fields, n);
            }
            if at > 0 {
                self.lines.consume(at);
                continue;
            }
            // `VmFlags: ` and a letter: not a field (no digit), so straight
            // to the flags.
            let flags_line =
                rest.starts_with(b"VmFlags: ") && rest.get(9).is_some_and(u8::is_ascii_lowercase);
            if !flags_line && let Some((name_len, value, used)) = fast_field(rest) {
                if e.vm_flags.is_some() {
                    let line = rest[..used - 1].to_vec();
                    return Err(invalid(ParseError::new("field after VmFlags", &line)));
                }
                let name = &rest[..name_len];
                store_field(&mut self.schema, e, n, name, value);
                learn_key(
                    &mut self.keys,
                    self.schema.len(),
                    n,
                    layout_key(rest, name_len),
                );
                n += 1;
                self.lines.consume(used);
                continue;
            }
            let Some(line) = self.lines.next_line()? else {
                break;
            };
            let kind = match vmflags_line(line) {
                Some(flags) if flags_line => SmapsLine::VmFlags(flags),
                _ => classify(line, &mut self.scratch).map_err(invalid)?,
            };
            match kind {
                SmapsLine::Header => {
                    self.pending = true;
                    break;
                }
                SmapsLine::Field { name, value } => {
                    if e.vm_flags.is_some() {
                        return Err(invalid(ParseError::new("field after VmFlags", line)));
                    }
                    store_field(&mut self.schema, e, n, name, value);
                    learn_key(&mut self.keys, self.schema.len(), n, [0; 2]);
                    n += 1;
                }
                SmapsLine::VmFlags(flags) => {
                    if e.vm_flags.is_some() {
                        return Err(invalid(ParseError::new("second VmFlags", line)));
                    }
                    let mut v = std::mem::take(&mut self.spare_flags);
                    v.clear();
                    v.extend_from_slice(flags);
                    e.vm_flags = Some(v);
                }
            }
        }
        e.fields.truncate(n);
        Ok(true)
    }
}

/// Notes the layout of field `n`'s line, just stored in a schema of
/// `schema_len` names (`keys` follows its length: a name replaced there
/// drops the rest).
fn learn_key(keys: &mut Vec<[u64; 2]>, schema_len: usize, n: usize, key: [u64; 2]) {
    keys.resize(schema_len, [0; 2]);
    keys[n] = key;
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

/// Stores field number `n` of an entry. Field names repeat from region to
/// region, so each is interned once in `schema` and entries share it; the
/// entry's field vector is reused in place when the name is the same.
fn store_field(schema: &mut Vec<Arc<str>>, e: &mut SmapsEntry, n: usize, name: &[u8], value: u64) {
    if !schema
        .get(n)
        .is_some_and(|s| same_bytes(s.as_bytes(), name))
    {
        schema.truncate(n);
        schema.push(Arc::from(String::from_utf8_lossy(name).as_ref()));
    }
    match e.fields.get_mut(n) {
        Some(f) if Arc::ptr_eq(&f.name, &schema[n]) => f.value = value,
        _ => {
            e.fields.truncate(n);
            e.fields.push(SmapsField {
                name: schema[n].clone(),
                value,
            });
        }
    }
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

    /// An smaps text of `regions` entries with the kernel's layout, each
    /// field's value from `value(region, field)`.
    fn kernel_layout(regions: u64, value: impl Fn(u64, u64) -> u64) -> Vec<u8> {
        let names = ["Size", "Rss", "Pss", "Private_Dirty", "THPeligible"];
        let mut t = Vec::new();
        for r in 0..regions {
            t.extend_from_slice(
                format!(
                    "{:x}-{:x} rw-p 00000000 00:00 0 \n",
                    0x7f00_0000_0000 + r * 0x2000,
                    0x7f00_0000_1000 + r * 0x2000
                )
                .as_bytes(),
            );
            for (f, name) in (0u64..).zip(names) {
                let key = format!("{name}:");
                let unit = if name == "THPeligible" { "" } else { " kB" };
                t.extend_from_slice(format!("{key:<16}{:>8}{unit}\n", value(r, f)).as_bytes());
            }
            t.extend_from_slice(b"VmFlags: rd wr mr mw me ac \n");
        }
        t
    }

    #[test]
    fn the_kernel_layout_read_in_place_agrees_with_field_line() {
        // Values of every width, and past eight digits (the line is wider).
        let value = |r: u64, f: u64| {
            [0, 7, 4096, 12_345_678, 99_999_999, 100_000_000, 1][((r + f) % 7) as usize]
        };
        let text = kernel_layout(50, value);
        let v = parse(&text).expect("valid smaps");
        assert_eq!(v.len(), 50);
        let mut lines = text
            .split(|&c| c == b'\n')
            .filter(|l| field_line(l).is_some());
        for e in &v {
            assert_eq!(e.fields.len(), 5);
            for f in &e.fields {
                let (name, value) = field_line(lines.next().expect("a field line")).expect("field");
                assert_eq!((f.name.as_bytes(), f.value), (name, value));
            }
            assert_eq!(e.vm_flags.as_deref(), Some(&b"rd wr mr mw me ac"[..]));
        }
    }

    #[test]
    fn a_field_renamed_between_entries_is_not_read_as_the_old_one() {
        let mut text = kernel_layout(2, |_, f| f);
        let at = text
            .windows(4)
            .rposition(|w| w == b"Rss:")
            .expect("a second Rss line");
        text[at..at + 4].copy_from_slice(b"Rsz:");
        let v = parse(&text).expect("valid smaps");
        assert_eq!(v[0].field("Rss"), Some(1));
        assert_eq!(v[1].field("Rss"), None);
        assert_eq!(v[1].field("Rsz"), Some(1));
        assert_eq!(v[1].field("Pss"), Some(2));
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
        use crate::source::{checked, pid_dir::PidDir, process};
        let dir = PidDir::open(std::process::id()).expect("own /proc dir");
        let info = process::fetch_in(&dir).expect("own process");
        let checked::Tried::Done(read) =
            checked::read_entries(&dir, &info, true).expect("read own smaps")
        else {
            panic!("own smaps not read whole");
        };
        let v = read.entries;
        assert!(v.iter().any(|e| e.region.name == b"[stack]"));
        assert!(
            v.iter()
                .all(|e| e.field("Size") == Some(e.region.size() / 1024))
        );
    }
}
