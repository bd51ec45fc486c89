//! What pmap prints about a process besides its regions: the `PID:   cmdline`
//! header and the start of its stack (to name the `[ stack ]` region).
//!
//! The header follows procps-ng's libproc2: the thread group id from
//! `status`, the command line read up to 128 KiB - 1 with NULs and newlines
//! turned into blanks, escaped for the terminal (the rules depend on
//! whether the locale's charset is UTF-8), `[comm]` when the command line is
//! empty (kernel threads), `[comm] <defunct>` for zombies, `?` if nothing.

use std::sync::OnceLock;

use super::pid_dir::PidDir;
use crate::map::process::ProcessInfo;

/// The most libproc2 reads of a command line (`MAX_BUFSZ`), less one byte.
const CMDLINE_MAX: usize = 128 * 1024 - 1;

/// Reads what pmap's header needs, or `None` if the process does not exist
/// (any more), exactly when procps-ng would skip it. Every file is read
/// through `dir`, so that all of them describe one process even if its id
/// is reused meanwhile.
pub fn fetch_in(dir: &PidDir) -> Option<ProcessInfo> {
    let pid = dir.pid();
    // The thread group id (pmap on a thread id shows its process).
    let tgid = dir
        .read("status")
        .ok()
        .and_then(|s| tgid_from_status(&s))
        .unwrap_or(pid);
    let stat = dir.read("stat").ok()?;
    let stat = parse_stat(&stat);
    let utf8 = locale_is_utf8;
    let raw = read_cmdline(dir);
    let mut cmdline = match raw {
        Some(raw) => escape_str(&raw, utf8),
        None => {
            let mut out = b"[".to_vec();
            out.extend_from_slice(&escape_str(&escape_str(&stat.comm, utf8), utf8));
            out.push(b']');
            if stat.state == b'Z' {
                out.extend_from_slice(b" <defunct>");
            }
            out
        }
    };
    if cmdline.is_empty() {
        cmdline = b"?".to_vec();
    }
    Some(ProcessInfo {
        pid,
        tgid,
        cmdline,
        start_stack: stat.start_stack,
    })
}

/// The process's ids in each PID namespace it is in, from the one `/proc`
/// was mounted in to its own (`NSpid:` of `status`); one id when it is in
/// no other namespace than ours.
pub fn ns_pids(dir: &PidDir) -> Vec<u32> {
    let Ok(status) = dir.read("status") else {
        return Vec::new();
    };
    status
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"NSpid:"))
        .map(|ids| {
            ids.split(|b| b.is_ascii_whitespace())
                .filter_map(|f| std::str::from_utf8(f).ok()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `Tgid:\t123` (parsed like C's `atoi`).
fn tgid_from_status(status: &[u8]) -> Option<u32> {
    let at = crate::sys::bytes::find_str(status, b"Tgid:")?;
    let rest = &status[at + 5..];
    let skip = rest
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r'))
        .count();
    let digits = rest[skip..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .fold(0u64, |v, &c| {
            v.saturating_mul(10).saturating_add(u64::from(c - b'0'))
        });
    u32::try_from(digits).ok()
}

struct Stat {
    comm: Vec<u8>,
    state: u8,
    start_stack: u64,
}

/// What the header needs of `stat`: the name (as libproc2 keeps it), the
/// state and startstack (field 28); blanks where the line is malformed.
fn parse_stat(raw: &[u8]) -> Stat {
    let Some(stat) = super::stat::Stat::parse(raw) else {
        return Stat {
            comm: Vec::new(),
            state: 0,
            start_stack: 0,
        };
    };
    // libproc2 copies the name into a 64-byte buffer (63 bytes + NUL).
    let comm = stat.comm();
    let comm = &comm[..comm.len().min(63)];
    Stat {
        comm: comm.split(|&c| c == 0).next().unwrap_or_default().to_vec(),
        state: stat.state().unwrap_or(0),
        start_stack: stat.num(28).unwrap_or(0),
    }
}

/// The command line as libproc2's `read_unvectored` leaves it: `None` if
/// empty (or unreadable), else the text up to the first remaining NUL.
fn read_cmdline(dir: &PidDir) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut file = dir.open_file("cmdline").ok()?;
    // A read error keeps what was read so far, as libproc2 does.
    let _ = super::pid_dir::read_whole(&mut file, &mut buf, CMDLINE_MAX);
    cmdline_from_raw(buf)
}

fn cmdline_from_raw(mut buf: Vec<u8>) -> Option<Vec<u8>> {
    let n = buf.len();
    if n == 0 {
        return None;
    }
    let keep = buf.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
    for c in &mut buf[..keep] {
        if *c == b'\n' || *c == 0 {
            *c = b' ';
        }
    }
    if buf[n - 1] == b' ' {
        buf[n - 1] = 0;
    }
    let end = crate::sys::bytes::find(0, &buf).unwrap_or(n);
    buf.truncate(end);
    Some(buf)
}

/// Whether the C library's locale (from the environment, as
/// `setlocale(LC_ALL, "")` picks it) uses UTF-8. Decided once.
pub fn locale_is_utf8() -> bool {
    static UTF8: OnceLock<bool> = OnceLock::new();
    *UTF8.get_or_init(|| {
        // SAFETY: setlocale and nl_langinfo are called with valid
        // NUL-terminated arguments; the OnceLock runs this once, and nothing
        // else in this program reads or changes the C locale concurrently.
        unsafe {
            if libc::setlocale(libc::LC_ALL, c"".as_ptr()).is_null() {
                return false;
            }
            let cs = libc::nl_langinfo(libc::CODESET);
            if cs.is_null() {
                return false;
            }
            std::ffi::CStr::from_ptr(cs)
                .to_bytes()
                .eq_ignore_ascii_case(b"UTF-8")
        }
    })
}

/// Control bytes become '.', bytes >= 0x80 '?' (libproc2's fallback for a
/// non-UTF-8 locale or a broken string).
fn esc_all(s: &mut [u8]) {
    for c in s {
        match *c {
            0x01..=0x1f | 0x7f => *c = b'.',
            0x80..=0xff => *c = b'?',
            _ => {}
        }
    }
}

/// The length of the UTF-8 sequence a lead byte starts, or `None` for a
/// byte that cannot lead one (libproc2 checks lead bytes only).
fn utf8_len(c: u8) -> Option<usize> {
    match c {
        0x00..=0x7f => Some(1),
        0xc2..=0xdf => Some(2),
        0xe0..=0xef => Some(3),
        0xf0..=0xf4 => Some(4),
        _ => None,
    }
}

/// A raw command line (`/proc/PID/cmdline` bytes, or a core's `argv`) as
/// the header prints it: blanks for NULs, then escaped; `None` if empty.
pub fn escape_cmdline(raw: Vec<u8>) -> Option<Vec<u8>> {
    let mut raw = raw;
    raw.truncate(CMDLINE_MAX);
    cmdline_from_raw(raw).map(|c| escape_str(&c, locale_is_utf8))
}

/// libproc2's `escape_str` on a string without NULs.
pub fn escape_str(src: &[u8], utf8: fn() -> bool) -> Vec<u8> {
    let mut s = src.to_vec();
    if s.iter().all(|&c| (0x20..0x7f).contains(&c)) {
        return s;
    }
    if !utf8() {
        esc_all(&mut s);
        return s;
    }
    let len = s.len();
    let mut i = 0;
    while i < len {
        match utf8_len(s[i]) {
            Some(n) if i + n <= len => {
                if s[i] < 0x20 || s[i] == 0x7f {
                    s[i] = b'?';
                }
                i += n;
            }
            _ => {
                esc_all(&mut s[i..]);
                break;
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yes() -> bool {
        true
    }
    fn no() -> bool {
        false
    }

    #[test]
    fn cmdline_blanks_and_trailing() {
        let c = |b: &[u8]| cmdline_from_raw(b.to_vec());
        assert_eq!(c(b""), None);
        assert_eq!(c(b"sleep\x001000\x00").as_deref(), Some(&b"sleep 1000"[..]));
        assert_eq!(c(b"a\x00\nb\x00\x00").as_deref(), Some(&b"a  b"[..]));
        assert_eq!(c(b"a\n").as_deref(), Some(&b"a"[..]));
        assert_eq!(c(b"\x00\x00").as_deref(), Some(&b""[..]));
        assert_eq!(c(b"x \x00").as_deref(), Some(&b"x "[..]));
    }

    #[test]
    fn escapes_like_libproc2() {
        assert_eq!(escape_str(b"plain text", yes), b"plain text");
        assert_eq!(escape_str(b"tab\there", yes), b"tab?here");
        assert_eq!(escape_str(b"tab\there", no), b"tab.here");
        assert_eq!(
            escape_str("caf\u{e9}".as_bytes(), yes),
            "caf\u{e9}".as_bytes()
        );
        assert_eq!(escape_str("caf\u{e9}".as_bytes(), no), b"caf??");
        // A bad lead byte spoils the rest of the string.
        assert_eq!(escape_str(b"a\xffb\x01\xc3\xa9", yes), b"a?b.??");
        // A truncated sequence at the end too.
        assert_eq!(escape_str(b"ab\xe2\x82", yes), b"ab??");
        assert_eq!(escape_str(b"\x7f", yes), b"?");
    }

    #[test]
    fn stat_fields() {
        let s = parse_stat(
            b"123 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 140737 26\n",
        );
        assert_eq!(s.comm, b"a (b) c");
        assert_eq!(s.state, b'S');
        assert_eq!(s.start_stack, 140737);
        let s = parse_stat(b"garbage");
        assert_eq!((s.state, s.start_stack), (0, 0));
    }

    #[test]
    fn tgid() {
        assert_eq!(
            tgid_from_status(b"Name:\tx\nTgid:\t42\nPid:\t43\n"),
            Some(42)
        );
        assert_eq!(tgid_from_status(b"Name:\tx\n"), None);
    }

    #[test]
    fn fetch_self_and_missing() {
        let fetch = |pid| fetch_in(&PidDir::open(pid).ok()?);
        let me = fetch(std::process::id()).expect("own process exists");
        assert_eq!(me.tgid, std::process::id());
        assert!(me.start_stack > 0);
        assert!(!me.cmdline.is_empty());
        assert_eq!(fetch(0x7fff_fffe), None);
    }
}
