//! The command line of the views beyond procps-ng (`--json`, `--summary`,
//! `--sort`, `--names`, Solaris's `-S -r -a -F -L -s -l`, core files). It is only
//! used when one of those is present ([`wants_views`]), so the procps-ng
//! compatible parser keeps every invocation procps-ng accepts.

use std::ffi::{OsStr, OsString};

use crate::{
    cmd::common::{format, numbers},
    render::{Format, Range},
};

/// What `--sort` orders by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Address,
    Size,
    Rss,
    Pss,
    PrivateDirty,
    SharedDirty,
    Dirty,
    Swap,
    Count,
    Name,
}

impl SortKey {
    pub const NAMES: &'static str =
        "address, size, rss, pss, private_dirty, shared_dirty, dirty, swap, count, name";

    pub fn parse(s: &str) -> Option<SortKey> {
        Some(match s {
            "address" | "addr" => SortKey::Address,
            "size" | "kbytes" => SortKey::Size,
            "rss" => SortKey::Rss,
            "pss" => SortKey::Pss,
            "private_dirty" | "private-dirty" => SortKey::PrivateDirty,
            "shared_dirty" | "shared-dirty" => SortKey::SharedDirty,
            "dirty" => SortKey::Dirty,
            "swap" => SortKey::Swap,
            "count" => SortKey::Count,
            "name" | "mapping" => SortKey::Name,
            _ => return None,
        })
    }

    /// Whether this key needs `/proc/PID/smaps` (not just `maps`).
    pub fn needs_smaps(self) -> bool {
        !matches!(
            self,
            SortKey::Address | SortKey::Size | SortKey::Name | SortKey::Count
        )
    }
}

/// Parsed options of a views invocation.
#[derive(Clone, Debug, Default)]
pub struct ViewArgs {
    pub format: Format,
    pub quiet: bool,
    pub show_path: bool,
    pub kernel_name: bool,
    pub range: Range,
    pub json: bool,
    pub summary: bool,
    pub sort: Option<SortKey>,
    pub names: bool,
    /// `-S`: Swap and SwapPss columns.
    pub swap: bool,
    /// `-r`: reserved (PROT_NONE) address space.
    pub reserved: bool,
    /// `-a`: count shared mappings in the Anon and Swap columns.
    pub all_shared: bool,
    /// `-L`: NUMA node residency.
    pub numa: bool,
    /// `-s`: page sizes.
    pub page_sizes: bool,
    /// `-l`: the dynamic linker's names of loaded objects.
    pub link_names: bool,
    pub operands: Vec<OsString>,
    /// `--help-views`.
    pub help: bool,
    /// `-c` (`Some(None)`: `$HOME/.pmaprc`) or `-C FILE`: the rc file's columns.
    pub rc: Option<Option<std::path::PathBuf>>,
}

impl ViewArgs {
    /// Whether a Solaris-style table is asked for.
    pub fn solaris_table(&self) -> bool {
        self.needs_live() || self.link_names
    }

    /// Whether a Solaris option asks for what only a live process has.
    pub fn needs_live(&self) -> bool {
        self.swap || self.reserved || self.numa || self.page_sizes || self.all_shared
    }
}

const LONG_VIEWS: [&str; 6] = [
    "--json",
    "--summary",
    "--sort",
    "--names",
    "--help-views",
    "--reserved",
];
/// procps-ng long options whose value may be the next word.
const LONG_WITH_VALUE: [&str; 3] = ["--range", "--read-rc-from", "--create-rc-to"];

/// Whether `args` (without the program name) use any option or operand only
/// this module handles: then [`parse`] and the views driver take over.
pub fn wants_views(args: &[OsString]) -> bool {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let b = a.as_encoded_bytes();
        if b == b"--" {
            // Only operands follow; a core file among them still counts.
            return it.any(|a| super::core_file::is_core_arg(a));
        }
        if let Some(long) = a.to_str().filter(|s| s.starts_with("--")) {
            let name = long.split('=').next().unwrap_or(long);
            if LONG_VIEWS.contains(&name) {
                return true;
            }
            if !long.contains('=') && LONG_WITH_VALUE.contains(&name) {
                it.next();
            }
        } else if b.len() > 1 && b[0] == b'-' {
            // A cluster of short options; one taking an argument ends it,
            // and takes the next word if nothing follows it in the cluster.
            for (i, &c) in b.iter().enumerate().skip(1) {
                match c {
                    // `-r` included: procps-ng only warns that it is
                    // ignored; here it shows reserved address space.
                    b'S' | b'a' | b'F' | b'L' | b's' | b'r' | b'l' => return true,
                    b'A' | b'C' | b'N' => {
                        if i + 1 == b.len() {
                            it.next();
                        }
                        break;
                    }
                    _ => {}
                }
            }
        } else if super::core_file::is_core_arg(a) {
            return true;
        }
    }
    false
}

/// `-A`/`--range`, read as procps-ng reads it (`cmd::common::numbers`):
/// `low,high` in hex, either side may be empty, and `low` alone is both
/// bounds.
fn parse_range(s: &str, range: Range) -> Result<Range, String> {
    numbers::parse_range(s.as_bytes(), range)
        .map_err(|_| format!("invalid address in range {s:?} (hex expected)"))
}

/// Parses the views command line (getopt style: clusters, `-A low,high` or
/// `-Alow,high`, `--opt=value` or `--opt value`).
pub fn parse(args: &[OsString]) -> Result<ViewArgs, String> {
    let mut v = ViewArgs::default();
    let mut x_count = 0;
    let mut extended = false;
    let mut device = false;
    let mut it = args.iter();
    let mut only_operands = false;
    while let Some(a) = it.next() {
        let b = a.as_encoded_bytes();
        if only_operands || b.len() < 2 || b[0] != b'-' {
            v.operands.push(a.clone());
            continue;
        }
        if b == b"--" {
            only_operands = true;
            continue;
        }
        if b.starts_with(b"--") {
            let s = a
                .to_str()
                .ok_or_else(|| format!("unknown option {}", a.to_string_lossy()))?;
            let (name, inline) = match s.split_once('=') {
                Some((n, val)) => (n, Some(val.to_string())),
                None => (s, None),
            };
            let mut value = |what: &str| -> Result<String, String> {
                match inline.clone() {
                    Some(val) => Ok(val),
                    None => it
                        .next()
                        .and_then(|o| o.to_str().map(str::to_string))
                        .ok_or_else(|| format!("option {name} needs {what}")),
                }
            };
            match name {
                "--help-views" => v.help = true,
                "--reserved" => v.reserved = true,
                "--json" => v.json = true,
                "--summary" => v.summary = true,
                "--names" => v.names = true,
                "--sort" => {
                    let f = value("a field")?;
                    v.sort = Some(SortKey::parse(&f).ok_or_else(|| {
                        format!("unknown sort field {f:?} (one of: {})", SortKey::NAMES)
                    })?);
                }
                "--extended" => extended = true,
                "--device" => device = true,
                "--quiet" => v.quiet = true,
                "--show-path" => v.show_path = true,
                "--use-kernel-name" => v.kernel_name = true,
                "--range" => v.range = parse_range(&value("a range")?, v.range)?,
                "--read-rc" => v.rc = Some(None),
                "--read-rc-from" => v.rc = Some(Some(value("a file")?.into())),
                _ => {
                    return Err(format!(
                        "option {name} cannot be combined with --json, --summary, --sort, --names, -S, -r, -a, -F, -L, -s, -l or core files"
                    ));
                }
            }
            continue;
        }
        let mut i = 1;
        while i < b.len() {
            match b[i] {
                b'x' => extended = true,
                b'X' => x_count += 1,
                b'd' => device = true,
                b'q' => v.quiet = true,
                b'p' => v.show_path = true,
                b'k' => v.kernel_name = true,
                b'S' => v.swap = true,
                b'r' => v.reserved = true,
                b'a' => v.all_shared = true,
                b'F' => {} // Solaris: force grabbing a process; Linux needs no grab.
                b'L' => v.numa = true,
                b's' => v.page_sizes = true,
                b'l' => v.link_names = true,
                b'c' => v.rc = Some(None),
                b'C' => {
                    let rest = &b[i + 1..];
                    let path = if rest.is_empty() {
                        it.next().cloned().ok_or("option -C needs a file")?
                    } else {
                        OsString::from(String::from_utf8_lossy(rest).into_owned())
                    };
                    v.rc = Some(Some(path.into()));
                    break;
                }
                b'A' => {
                    let rest = &b[i + 1..];
                    let r = if rest.is_empty() {
                        it.next()
                            .and_then(|o| o.to_str().map(str::to_string))
                            .ok_or("option -A needs a range")?
                    } else {
                        String::from_utf8_lossy(rest).into_owned()
                    };
                    v.range = parse_range(&r, v.range)?;
                    break;
                }
                c => {
                    return Err(format!(
                        "option -{} cannot be combined with --json, --summary, --sort, --names, -S, -r, -a, -F, -L, -s, -l or core files",
                        char::from(c)
                    ));
                }
            }
            i += 1;
        }
    }
    const COMBINED: &str = "options -x, -X, -d and -c/-C cannot be combined";
    v.format = format::from_letters(extended, x_count, device).map_err(|_| COMBINED)?;
    if v.rc.is_some() && v.format != Format::Default {
        return Err(COMBINED.into());
    }
    Ok(v)
}

/// Operands that name core files (see `core_file::is_core_arg`).
pub fn is_core(arg: &OsStr) -> bool {
    super::core_file::is_core_arg(arg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn procps_invocations_are_not_taken() {
        for args in [
            &["-x", "1"][..],
            &["-XX", "-p", "1"],
            &["-A", "ffff0000", "1"],
            &["-Affff,ffffffff", "1"],
            &["--range", "sarah", "1"],
            &["-C", "somefile", "1"],
            &["-qd", "1", "2"],
            &["abc"],
        ] {
            assert!(!wants_views(&os(args)), "{args:?}");
        }
    }

    #[test]
    fn view_options_are_taken() {
        for args in [
            &["--json", "1"][..],
            &["-xS", "1"],
            &["--reserved", "1"],
            &["-r", "-S", "1"],
            &["-r", "-q", "1"],
            &["-rr", "1", "-q"],
            &["-qL", "1"],
            &["--sort=rss", "-x", "1"],
            &["--summary", "1"],
            &["--names", "1"],
            &["--help-views"],
            &["-l", "1"],
            &["-xl", "1"],
        ] {
            assert!(wants_views(&os(args)), "{args:?}");
        }
    }

    #[test]
    fn parse_clusters_values_and_formats() {
        let v = parse(&os(&["-xSq", "--sort", "swap", "-A7f00,8000", "42"])).expect("valid");
        assert_eq!(v.format, Format::Extended);
        assert!(v.swap && v.quiet && !v.reserved);
        assert_eq!(v.sort, Some(SortKey::Swap));
        assert_eq!((v.range.low, v.range.high), (0x7f00, 0x8000));
        assert_eq!(v.operands, os(&["42"]));
        assert_eq!(
            parse(&os(&["-XX", "--json", "1"])).expect("valid").format,
            Format::All
        );
        assert!(parse(&os(&["-x", "-d", "--json", "1"])).is_err());
        assert!(parse(&os(&["--sort", "colour", "1"])).is_err());
        assert!(parse(&os(&["-n", "--json", "1"])).is_err());
        assert!(parse(&os(&["-c", "-x", "--json", "1"])).is_err());
        let rc = parse(&os(&["-C", "/x/rc", "--sort", "rss", "1"])).expect("valid");
        assert_eq!(rc.rc, Some(Some("/x/rc".into())));
        assert!(parse(&os(&["--sort"])).is_err());
    }

    #[test]
    fn ranges_read_as_procps_reads_them() {
        let range = |args: &[&str]| {
            let r = parse(&os(args)).map(|v| v.range);
            r.map(|r| (r.low, r.high))
        };
        // One address is both bounds, as in procps-ng (not "to the end").
        assert_eq!(range(&["-A", "7f00", "--json", "1"]), Ok((0x7f00, 0x7f00)));
        assert_eq!(range(&["-A0x7f00,", "--json", "1"]), Ok((0x7f00, u64::MAX)));
        assert_eq!(range(&["--range=,8000", "--json", "1"]), Ok((0, 0x8000)));
        assert_eq!(
            range(&["--range", "10,20", "--json", "1"]),
            Ok((0x10, 0x20))
        );
        assert!(range(&["-A", "7fzz", "--json", "1"]).is_err());
    }
}
