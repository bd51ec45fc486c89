//! The rc file (`~/.pmaprc`, `-c`/`-C FILE` read it, `-n`/`-N FILE` write
//! the template): sections `[Fields Display]` (one enabled column per line)
//! and `[Mapping]` (`ShowPath` toggles full paths). Parsed line by line as
//! procps-ng does, with the same warnings.

use std::{
    ffi::OsString,
    fs::File,
    io::{self, BufRead, BufReader, Write},
    os::unix::ffi::OsStringExt,
    path::{Path, PathBuf},
};

/// What an rc file asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rc {
    /// Enabled columns (`Perm`, `Offset`, `Device`, `Inode`, smaps field
    /// names, `VmFlags`, `Mapping`), each cut to 31 bytes.
    pub fields: Vec<String>,
    /// How many times `ShowPath` appeared (each one toggles `-p`).
    pub show_path_toggles: usize,
}

/// procps-ng reads lines through a 1025-byte buffer.
const MAX_LINE: usize = 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    None,
    Unsupported,
    Fields,
    Mapping,
}

/// Reads `path`; `None` if it cannot be opened. Warnings (without the
/// `$HOME/.NAMErc`, NAME being the program's name (procps-ng names the rc
/// file after itself: `~/.pmaprc`); `None` if HOME is not set.
pub fn default_path(prog: &str) -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let mut p = home.into_vec();
    p.extend_from_slice(format!("/.{prog}rc").as_bytes());
    Some(PathBuf::from(OsString::from_vec(p)))
}

/// `pmap: ` prefix) go to `warn`.
pub fn read(path: &Path, warn: &mut dyn FnMut(String)) -> Option<Rc> {
    let f = File::open(path).ok()?;
    Some(parse(BufReader::new(f), warn))
}

/// The next piece of a line as C's `fgets` with a 1025-byte buffer gives it:
/// up to 1024 bytes, ending after a newline if one comes first.
fn fgets(r: &mut impl BufRead, out: &mut Vec<u8>) -> bool {
    out.clear();
    while out.len() < MAX_LINE {
        let Ok(buf) = r.fill_buf() else { break };
        if buf.is_empty() {
            break;
        }
        let want = MAX_LINE - out.len();
        let take = match crate::sys::bytes::find(b'\n', &buf[..buf.len().min(want)]) {
            Some(nl) => nl + 1,
            None => buf.len().min(want),
        };
        out.extend_from_slice(&buf[..take]);
        r.consume(take);
        if out.last() == Some(&b'\n') {
            break;
        }
    }
    !out.is_empty()
}

/// C's `strtok(s, " \t")` over the whole remaining text: the tokens.
fn tokens(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    s.split(|&c| c == b' ' || c == b'\t')
        .filter(|t| !t.is_empty())
}

pub fn parse(mut r: impl BufRead, warn: &mut dyn FnMut(String)) -> Rc {
    let mut rc = Rc::default();
    let mut section = Section::None;
    let mut line_no = 0;
    let mut buf = Vec::new();
    let mut tail = Vec::new();
    while fgets(&mut r, &mut buf) {
        line_no += 1;
        // C string semantics: the line ends at a NUL.
        let mut len = crate::sys::bytes::find(0, &buf).unwrap_or(buf.len());
        if len > 0 && buf[len - 1] == b'\n' {
            len -= 1;
        } else if len == MAX_LINE {
            warn(format!("config line too long - line {line_no}"));
            while fgets(&mut r, &mut tail) {
                let l = crate::sys::bytes::find(0, &tail).unwrap_or(tail.len());
                if l == 0 || tail[l - 1] == b'\n' {
                    break;
                }
            }
        }
        let line = &buf[..len];
        let lead = line
            .iter()
            .take_while(|&&c| c == b' ' || c == b'\t')
            .count();
        let mut t = &line[lead..];
        if t.is_empty() || t[0] == b'#' {
            continue;
        }
        if t[0] == b'[' {
            if let Some(rest) = t.strip_prefix(b"[Fields Display]") {
                t = rest;
                section = Section::Fields;
            } else if let Some(rest) = t.strip_prefix(b"[Mapping]") {
                t = rest;
                section = Section::Mapping;
            } else {
                match crate::sys::bytes::find(b']', t) {
                    Some(close) => {
                        section = Section::Unsupported;
                        warn(format!(
                            "unsupported section found in the config - line {line_no}"
                        ));
                        t = &t[close + 1..];
                    }
                    None => {
                        warn(format!("syntax error found in the config - line {line_no}"));
                        t = &t[t.len()..];
                    }
                }
            }
            let lead = t.iter().take_while(|&&c| c == b' ' || c == b'\t').count();
            t = &t[lead..];
            if t.is_empty() || t[0] == b'#' {
                continue;
            }
            warn(format!("syntax error found in the config - line {line_no}"));
        }
        match section {
            Section::Fields | Section::Mapping => {
                let mut toks = tokens(t);
                if let Some(token) = toks.next() {
                    if toks.next().is_some_and(|tail| tail[0] != b'#') {
                        warn(format!("syntax error found in the config - line {line_no}"));
                    }
                    if section == Section::Fields {
                        let cut = &token[..token.len().min(31)];
                        rc.fields.push(String::from_utf8_lossy(cut).into_owned());
                    } else if token == b"ShowPath" {
                        rc.show_path_toggles += 1;
                    }
                }
            }
            Section::Unsupported => {}
            Section::None => {
                warn(format!("syntax error found in the config - line {line_no}"));
            }
        }
    }
    rc
}

/// The template `-n`/`-N` write.
pub const TEMPLATE: &str = "# pmap's Config File

# All the entries are case sensitive.
# Unsupported entries are ignored!

[Fields Display]

# To enable a field uncomment its entry

#Perm
#Offset
#Device
#Inode
#Size
#Rss
#Pss
#Shared_Clean
#Shared_Dirty
#Private_Clean
#Private_Dirty
#Referenced
#Anonymous
#AnonHugePages
#Swap
#KernelPageSize
#MMUPageSize
#Locked
#VmFlags
#Mapping


[Mapping]

# to show paths in the mapping column uncomment the following line
#ShowPath

";

/// Why the template was not written.
#[derive(Debug)]
pub enum CreateError {
    /// Something (a file, a directory) is already there.
    Exists,
    Io(io::Error),
}

/// Writes the template to `path`, refusing to replace anything there.
pub fn create(path: &Path) -> Result<(), CreateError> {
    // procps-ng checks by opening for reading (which also succeeds on a
    // directory), then creates the file.
    if File::open(path).is_ok() {
        return Err(CreateError::Exists);
    }
    let mut f = File::create(path).map_err(CreateError::Io)?;
    f.write_all(TEMPLATE.as_bytes()).map_err(CreateError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> (Rc, Vec<String>) {
        let mut warnings = Vec::new();
        let rc = parse(text.as_bytes(), &mut |w| warnings.push(w));
        (rc, warnings)
    }

    #[test]
    fn template_enables_nothing() {
        let (rc, w) = run(TEMPLATE);
        assert_eq!(rc, Rc::default());
        assert!(w.is_empty());
    }

    #[test]
    fn sections_fields_and_warnings() {
        let (rc, w) = run(
            "stray\n[Fields Display]\n  Rss\n\tSize # comment\nPss extra\n[Mapping]\nShowPath\n[Other]\nRss\n[Fields Display] Swap\n[broken\n[Mapping]ShowPath\n",
        );
        assert_eq!(rc.fields, vec!["Rss", "Size", "Pss", "Swap"]);
        assert_eq!(rc.show_path_toggles, 2);
        assert_eq!(
            w,
            vec![
                "syntax error found in the config - line 1",
                "syntax error found in the config - line 5",
                "unsupported section found in the config - line 8",
                "syntax error found in the config - line 10",
                "syntax error found in the config - line 11",
                "syntax error found in the config - line 12",
            ]
        );
    }

    #[test]
    fn long_lines() {
        let text = format!("[Fields Display]\n{}\nRss\n", "x".repeat(2000));
        let (rc, w) = run(&text);
        assert_eq!(w, vec!["config line too long - line 2"]);
        assert_eq!(rc.fields, vec!["x".repeat(31), "Rss".to_string()]);
    }
}
