//! `/proc/PID/maps`: one region per line,
//! `start-end perms offset major:minor inode   name`.
//!
//! A hand-written byte parser: it accepts any bytes without panicking and
//! rejects lines that are not in the kernel's format with a `ParseError`.

use std::{fmt, fs::File, io};

use super::lines::{LineReader, LineSource};
use crate::map::region::{Perms, Region};

/// A line that is not in the kernel's maps format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Which part of the line is wrong.
    pub what: &'static str,
    /// The line (lossily decoded, cut to 200 bytes) for the message.
    pub line: String,
}

impl ParseError {
    pub(crate) fn new(what: &'static str, line: &[u8]) -> Self {
        let cut = &line[..line.len().min(200)];
        ParseError {
            what,
            line: String::from_utf8_lossy(cut).into_owned(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad {} in line {:?}", self.what, self.line)
    }
}

impl std::error::Error for ParseError {}

/// The value of each hex digit byte; 0xff for other bytes.
const HEX: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Reads hex digits at `*pos`; at least one, at most 16.
fn hex(line: &[u8], pos: &mut usize, what: &'static str) -> Result<u64, ParseError> {
    let rest = line.get(*pos..).unwrap_or_default();
    let mut v = 0u64;
    let mut n = 0;
    while let Some(&c) = rest.get(n) {
        let d = HEX[usize::from(c)];
        if d == 0xff {
            break;
        }
        if n == 16 {
            return Err(ParseError::new(what, line));
        }
        v = (v << 4) | u64::from(d);
        n += 1;
    }
    if n == 0 {
        return Err(ParseError::new(what, line));
    }
    *pos += n;
    Ok(v)
}

fn decimal(line: &[u8], pos: &mut usize, what: &'static str) -> Result<u64, ParseError> {
    let start = *pos;
    let mut v: u64 = 0;
    while let Some(&c) = line.get(*pos) {
        if !c.is_ascii_digit() {
            break;
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(c - b'0')))
            .ok_or_else(|| ParseError::new(what, line))?;
        *pos += 1;
    }
    if *pos == start {
        return Err(ParseError::new(what, line));
    }
    Ok(v)
}

fn expect(line: &[u8], pos: &mut usize, c: u8, what: &'static str) -> Result<(), ParseError> {
    if line.get(*pos) == Some(&c) {
        *pos += 1;
        Ok(())
    } else {
        Err(ParseError::new(what, line))
    }
}

/// Parses the fixed columns of a maps (or smaps header) line into `r`,
/// reusing `r.name`'s allocation. `line` has no trailing newline.
pub fn parse_line_into(line: &[u8], r: &mut Region) -> Result<(), ParseError> {
    let mut p = 0;
    r.start = hex(line, &mut p, "start address")?;
    expect(line, &mut p, b'-', "address range")?;
    r.end = hex(line, &mut p, "end address")?;
    if r.end < r.start {
        return Err(ParseError::new("address range (end before start)", line));
    }
    expect(line, &mut p, b' ', "separator after addresses")?;
    let perms = line
        .get(p..p + 4)
        .ok_or_else(|| ParseError::new("permissions", line))?;
    if !perms.iter().all(|c| c.is_ascii_graphic()) {
        return Err(ParseError::new("permissions", line));
    }
    r.perms = Perms([perms[0], perms[1], perms[2], perms[3]]);
    p += 4;
    expect(line, &mut p, b' ', "separator after permissions")?;
    r.offset = hex(line, &mut p, "offset")?;
    expect(line, &mut p, b' ', "separator after offset")?;
    r.dev_major = u32::try_from(hex(line, &mut p, "device major")?)
        .map_err(|_| ParseError::new("device major", line))?;
    expect(line, &mut p, b':', "device")?;
    r.dev_minor = u32::try_from(hex(line, &mut p, "device minor")?)
        .map_err(|_| ParseError::new("device minor", line))?;
    expect(line, &mut p, b' ', "separator after device")?;
    r.inode = decimal(line, &mut p, "inode")?;
    // The kernel pads with spaces up to the name column; a name never starts
    // with a space (paths start with '/', special names with '[').
    match line.get(p) {
        None => {}
        Some(b' ') => {
            while line.get(p) == Some(&b' ') {
                p += 1;
            }
        }
        Some(_) => return Err(ParseError::new("separator after inode", line)),
    }
    r.name.clear();
    r.name.extend_from_slice(&line[p..]);
    Ok(())
}

/// Parses one maps line (without its newline).
pub fn parse_line(line: &[u8]) -> Result<Region, ParseError> {
    let mut r = Region::default();
    parse_line_into(line, &mut r)?;
    Ok(r)
}

/// Parses the whole text of a maps file: one item per line.
pub fn parse(bytes: &[u8]) -> impl Iterator<Item = Result<Region, ParseError>> + '_ {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut lines = body.split(|&c| c == b'\n');
    if body.is_empty() {
        // `split` yields one empty item for empty input; there is no line.
        lines.next();
    }
    lines.map(parse_line)
}

/// Streams `/proc/PID/maps` (or any maps-format lines) one region at a time.
pub struct MapsReader<S> {
    lines: S,
}

impl MapsReader<LineReader<File>> {
    pub fn open(pid: u32) -> io::Result<Self> {
        Ok(Self::new(File::open(format!("/proc/{pid}/maps"))?))
    }
}

impl<R: io::Read> MapsReader<LineReader<R>> {
    pub fn new(inner: R) -> Self {
        MapsReader {
            lines: LineReader::new(inner),
        }
    }
}

impl<S: LineSource> MapsReader<S> {
    pub fn from_lines(lines: S) -> Self {
        MapsReader { lines }
    }

    /// Reads the next region into `r`. `Ok(false)` at the end.
    pub fn next_into(&mut self, r: &mut Region) -> io::Result<bool> {
        match self.lines.next_line()? {
            None => Ok(false),
            Some(line) => parse_line_into(line, r)
                .map(|()| true)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    }
}

/// The file rows of the calling process's own map, read once: the files
/// this program maps (its C library, its dynamic loader), by the identity
/// the kernel prints. Empty if the map cannot be read.
pub fn own_files() -> &'static [Region] {
    static OWN: std::sync::OnceLock<Vec<Region>> = std::sync::OnceLock::new();
    OWN.get_or_init(|| {
        File::open("/proc/self/maps")
            .and_then(read)
            .map(|rows| rows.into_iter().filter(|r| r.inode != 0).collect())
            .unwrap_or_default()
    })
}

/// All regions in `file`, an open `/proc/PID/maps` (read once, unchecked:
/// for `-l`'s object lookup and `pmap diff`'s live side, which compare,
/// not print).
pub fn read(file: File) -> io::Result<Vec<Region>> {
    let mut reader = MapsReader::new(file);
    let mut out = Vec::new();
    let mut r = Region::default();
    while reader.next_into(&mut r)? {
        out.push(r.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &[u8]) -> Region {
        parse_line(line).expect("valid line")
    }

    #[test]
    fn file_mapping() {
        let r = one(b"55b375e37000-55b375e39000 r--p 00000000 fe:00 247774                     /usr/bin/sleep");
        assert_eq!(r.start, 0x55b375e37000);
        assert_eq!(r.end, 0x55b375e39000);
        assert_eq!(r.perms.as_str(), "r--p");
        assert_eq!(r.offset, 0);
        assert_eq!((r.dev_major, r.dev_minor), (0xfe, 0));
        assert_eq!(r.inode, 247774);
        assert_eq!(r.name, b"/usr/bin/sleep");
        assert_eq!(r.size(), 0x2000);
    }

    #[test]
    fn anonymous_mapping_has_empty_name() {
        // The kernel leaves one space after the inode of a nameless region.
        let r = one(b"7f3d4bb48000-7f3d4bb4b000 rw-p 00000000 00:00 0 ");
        assert!(r.name.is_empty());
        let r = one(b"7f3d4bb48000-7f3d4bb4b000 rw-p 00000000 00:00 0");
        assert!(r.name.is_empty());
    }

    #[test]
    fn special_and_odd_names() {
        let cases: &[&[u8]] = &[
            b"[heap]",
            b"[stack]",
            b"[vdso]",
            b"[vvar]",
            b"[vsyscall]",
            b"[anon:my name/with slash]",
            b"[anon_shmem:x]",
            b"/tmp/with space/file name ",
            b"/tmp/new\\012line",
            b"/tmp/\xff\xfe not utf8",
            b"/tmp/gone (deleted)",
            b"/memfd:pmap-test (deleted)",
            b"/SYSV0000abcd (deleted)",
            b"/dev/zero (deleted)",
        ];
        for name in cases {
            let mut line =
                b"7f0000000000-7f0000001000 rw-s 0000a000 00:01 12345                      "
                    .to_vec();
            line.extend_from_slice(name);
            let r = one(&line);
            assert_eq!(&r.name[..], *name, "{}", String::from_utf8_lossy(name));
            assert!(r.perms.shared());
            assert_eq!(r.offset, 0xa000);
        }
    }

    #[test]
    fn huge_fields() {
        let r = one(b"ffffffffff600000-ffffffffff601000 --xp ffffffffffffffff ffffffff:ffffffff 18446744073709551615 [vsyscall]");
        assert_eq!(r.start, 0xffffffffff600000);
        assert_eq!(r.offset, u64::MAX);
        assert_eq!(r.dev_major, u32::MAX);
        assert_eq!(r.inode, u64::MAX);
    }

    #[test]
    fn malformed_lines_are_errors_not_panics() {
        let bad: &[&[u8]] = &[
            b"",
            b"-",
            b"zz-10 r--p 0 0:0 0",
            b"10-",
            b"20-10 r--p 00000000 00:00 0",
            b"10-20",
            b"10-20 r-",
            b"10-20 r--p",
            b"10-20 r--p 0",
            b"10-20 r--p 0 0",
            b"10-20 r--p 0 0:",
            b"10-20 r--p 0 0:0",
            b"10-20 r--p 0 0:0 x",
            b"10-20 r--p 0 0:0 1x",
            b"10-20 r--p 0 100000000:0 1",
            b"10-20 r--p 0 0:0 18446744073709551616",
            b"10000000000000000-20 r--p 0 0:0 0",
            b"10-20 r\x00-p 0 0:0 0",
            b"Size:                  8 kB",
            b"VmFlags: rd mr mw me",
        ];
        for line in bad {
            assert!(
                parse_line(line).is_err(),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn never_panics_on_any_prefix_or_byte_mutation() {
        let good: &[u8] =
            b"7f3d4bd2e000-7f3d4bd35000 r--s 00000000 fe:00 325745                     /usr/lib/x.cache";
        for i in 0..=good.len() {
            let _ = parse_line(&good[..i]);
            for b in [0u8, b' ', b'-', b':', b'\n', 0xff, b'9', b'f'] {
                let mut m = good.to_vec();
                if i < m.len() {
                    m[i] = b;
                    let _ = parse_line(&m);
                }
            }
        }
    }

    #[test]
    fn parse_whole_text() {
        let text = b"10-20 r--p 00000000 00:00 0 \n30-40 rw-p 00000000 00:00 0     [heap]\n";
        let v: Vec<_> = parse(text).collect::<Result<_, _>>().expect("valid text");
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].name, b"[heap]");
        assert_eq!(parse(b"").count(), 0);
        assert_eq!(parse(b"10-20 r--p 0 0:0 0").count(), 1);
    }

    #[test]
    fn reads_own_maps() {
        let mut reader = MapsReader::new(File::open("/proc/self/maps").expect("open own maps"));
        let mut regions = Vec::new();
        let mut r = Region::default();
        while reader.next_into(&mut r).expect("read own maps") {
            regions.push(r.clone());
        }
        assert!(regions.iter().any(|r| r.name == b"[stack]"));
        assert!(regions.windows(2).all(|w| w[0].end <= w[1].start));
    }
}
