//! `/tmp/perf-PID.map`, which JITs write for `perf` (V8
//! `--perf-basic-prof`, the JVM with perf-map-agent, LuaJIT, .NET...):
//! one `START SIZE name` line per compiled function, both numbers in hex.

/// One line of a perf map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PerfSymbol<'a> {
    pub start: u64,
    pub size: u64,
    pub name: &'a str,
}

/// Parses one line (without its newline); `None` if it is not
/// `START SIZE name`.
pub fn parse_line(line: &str) -> Option<PerfSymbol<'_>> {
    let mut parts = line.splitn(3, ' ');
    let (a, s, name) = (parts.next()?, parts.next()?, parts.next()?);
    let hex = |v: &str| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok();
    Some(PerfSymbol {
        start: hex(a)?,
        size: hex(s)?,
        name,
    })
}

/// Where the map of process `pid` is.
pub fn path(pid: u32) -> std::path::PathBuf {
    format!("/tmp/perf-{pid}.map").into()
}

/// The start addresses of the symbols in process `pid`'s perf map, sorted
/// (none if it has no map).
pub fn starts(pid: u32) -> Vec<u64> {
    let Ok(raw) = std::fs::read(path(pid)) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&raw);
    let mut v: Vec<u64> = text
        .lines()
        .filter_map(parse_line)
        .map(|s| s.start)
        .collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(
            parse_line("7f00a000 40 LazyCompile:~f a.js:1"),
            Some(PerfSymbol {
                start: 0x7f00_a000,
                size: 0x40,
                name: "LazyCompile:~f a.js:1"
            })
        );
        assert_eq!(
            parse_line("0x10 0x2 x").map(|s| (s.start, s.size)),
            Some((16, 2))
        );
        assert_eq!(parse_line("10 20"), None);
        assert_eq!(parse_line("zz 20 x"), None);
    }
}
