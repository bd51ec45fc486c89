//! `pmap diff A B`: what changed in a memory map between two moments.
//! A and B are each a moment of a recording (`FILE@WHEN`), a live process
//! (`PID`), a core file or a saved `pmap --json` snapshot (`source`). The
//! rows are printed as trace deltas print them (`-` removed, `+` added,
//! `~ old -> new` changed in place), then the totals.

pub mod source;

use std::{collections::HashSet, ffi::OsString, io::Write, process::ExitCode};

use clap::Parser;

use crate::{map::model::Change, map::region::Region};

/// What changed in a memory map between two moments: regions removed,
/// added and changed, size and RSS totals, and who mapped the added
/// regions when B is a moment of a recording made with --stacks.
#[derive(Debug, Parser)]
#[command(
    name = "pmap diff",
    bin_name = "pmap diff",
    version,
    after_help = "A and B: a PID (a live process), FILE@WHEN (a moment of a `pmap trace --record` \
                  recording: +SECS, an RFC 3339 time or @EPOCH), a core file, or a saved \
                  `pmap --json` snapshot.\n\nExamples:\n  pmap diff app.pmaprec@+1 app.pmaprec@+30\n  \
                  pmap diff before.json 4242\n  pmap diff core.4242 before.json"
)]
pub struct DiffArgs {
    /// The earlier side.
    #[arg(value_name = "A")]
    pub a: String,
    /// The later side.
    #[arg(value_name = "B")]
    pub b: String,
}

/// The rows of `a` and `b` that differ (rows whose `key` is in both are
/// left out).
pub fn change(a: &[Region], b: &[Region], key: impl Fn(&Region) -> Region) -> Change {
    let (ka, kb): (HashSet<Region>, HashSet<Region>) =
        (a.iter().map(&key).collect(), b.iter().map(&key).collect());
    Change {
        removed: a
            .iter()
            .filter(|r| !kb.contains(&key(r)))
            .cloned()
            .collect(),
        added: b
            .iter()
            .filter(|r| !ka.contains(&key(r)))
            .cloned()
            .collect(),
    }
}

fn kb(b: u64) -> String {
    format!("{}K", b / 1024)
}

fn signed_kb(a: u64, b: u64) -> String {
    if b >= a {
        format!("+{}K", (b - a) / 1024)
    } else {
        format!("-{}K", (a - b) / 1024)
    }
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    // argv[0] is "pmap", argv[1] is "diff".
    let parsed = match DiffArgs::try_parse_from(args.into_iter().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let (a, b) = match (source::read(&parsed.a), source::read(&parsed.b)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("pmap diff: {e}");
            return ExitCode::FAILURE;
        }
    };
    match print(&a, &b) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pmap diff: writing the output failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print(a: &source::Side, b: &source::Side) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(out, "--- {}\n+++ {}", a.label, b.label)?;
    let c = if a.core || b.core {
        writeln!(
            out,
            "(a core file records no device or inode, and not every permission: rows are \
             compared by address, offset and name)"
        )?;
        change(&a.regions, &b.regions, |r| {
            let mut r = r.clone();
            (r.dev_major, r.dev_minor, r.inode) = (0, 0, 0);
            r.perms.0 = *b"----";
            r
        })
    } else {
        change(&a.regions, &b.regions, Region::clone)
    };
    let mut rows = Vec::new();
    crate::cmd::trace::output::write_change(&mut rows, &c);
    // Who mapped each added region, where the recording knows (a region
    // can hold the bytes of several calls, merged by the kernel).
    for line in String::from_utf8_lossy(&rows).lines() {
        out.write_all(line.as_bytes())?;
        if let (Some(rest), Some(creator)) = (line.strip_prefix("  + "), &b.creator) {
            let start = rest
                .split_whitespace()
                .next()
                .and_then(|h| u64::from_str_radix(h, 16).ok());
            let region = start.and_then(|s| c.added.iter().find(|r| r.start == s));
            let sites = region.map(|r| creator(r.start, r.end)).unwrap_or_default();
            if !sites.is_empty() {
                let list: Vec<String> = sites
                    .iter()
                    .map(|(site, bytes)| format!("{site} {}", kb(*bytes)))
                    .collect();
                write!(out, "   (mapped by {})", list.join(", "))?;
            }
        }
        out.write_all(b"\n")?;
    }
    let size = |rs: &[Region]| rs.iter().map(Region::size).sum::<u64>();
    let (sa, sb) = (size(&a.regions), size(&b.regions));
    let kept = a.regions.len() - c.removed.len();
    writeln!(
        out,
        "regions: {} -> {} ({} removed, {} added, {kept} unchanged); size {} -> {} ({}); \
         mapped {}, unmapped {}",
        a.regions.len(),
        b.regions.len(),
        c.removed.len(),
        c.added.len(),
        kb(sa),
        kb(sb),
        signed_kb(sa, sb),
        kb(c.newly_mapped()),
        kb(c.newly_unmapped()),
    )?;
    match (&a.rss_kb, &b.rss_kb) {
        (Some(x), Some(y)) => {
            let (x, y): (u64, u64) = (x.iter().sum(), y.iter().sum());
            writeln!(out, "rss: {x}K -> {y}K ({})", signed_kb(x * 1024, y * 1024))?;
        }
        _ => {
            let which = |s: &source::Side| s.rss_kb.is_none().then(|| s.label.clone());
            let missing: Vec<String> = [which(a), which(b)].into_iter().flatten().collect();
            writeln!(
                out,
                "rss: not known for {} (recordings and core files do not hold it; a snapshot \
                 holds it when taken with -x or -X)",
                missing.join(" and ")
            )?;
        }
    }
    out.flush()
}
