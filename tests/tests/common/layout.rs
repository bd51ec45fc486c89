//! smaps tables (`-X`, `-XX`, rc files) cell by cell: which cells two runs
//! may disagree on, and the rule that places every cell, so that a figure
//! left out of a comparison (a Pss the reading pmap changes) still has its
//! width checked.
//!
//! A table is a pid line, a heading (not with `-q`), rows, an underline and
//! a totals line. Its single-word columns (every heading word but VmFlags
//! and Mapping) are right-aligned, one blank apart, each as wide as the
//! widest of: its heading word (unless `-q`), its cells, its total (a blank
//! total: the sum it leaves out, as the README promises "column widths are
//! unchanged"), and, for value columns, the same column in the tables
//! before it ("widths carry over"). The rest of a row (VmFlags, Mapping)
//! follows.

use super::{lines, words};

/// Heading words with no total (the underline has one run per other value
/// column, blank totals included).
pub const FIXED: &[&[u8]] = &[
    b"Address", b"Perm", b"Offset", b"Device", b"Inode", b"VmFlags", b"Mapping",
];
/// Value columns whose total we leave blank.
pub const NO_TOTAL: &[&[u8]] = &[b"KernelPageSize", b"MMUPageSize", b"ProtectionKey"];

/// How a cell compares between two runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Must be equal at once (names, addresses, sizes, flags...).
    Fixed,
    /// The process's own figure, which can move between two runs (pages
    /// reclaimed or faulted in): a difference is retried.
    Moves,
    /// Changed by the reading pmap itself (Pss, sharing of the files it
    /// maps): not compared; its width is still checked by the rule.
    Masked,
}

/// A cell's byte range in its line.
pub type Span = (usize, usize);

/// `kind(row, column name)`: how a cell compares (`row` is `None` for the
/// totals).
pub type KindOf<'a> = dyn Fn(Option<&[u8]>, &[u8]) -> Kind + 'a;

/// What comparing two outputs found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Same,
    /// Only cells that can move differ (described).
    Moved(String),
    /// A cell that cannot move, or the shape, differs (described).
    Differ(String),
}

/// The single-word column names of a heading line.
pub fn columns(heading: &[u8]) -> Vec<Vec<u8>> {
    words(heading)
        .into_iter()
        .filter(|w| *w != b"VmFlags" && *w != b"Mapping")
        .map(<[u8]>::to_vec)
        .collect()
}

pub fn is_pid_line(l: &[u8]) -> bool {
    let digits = l.iter().take_while(|c| c.is_ascii_digit()).count();
    digits > 0 && l[digits..].starts_with(b":   ")
}

pub fn is_underline(l: &[u8]) -> bool {
    l.contains(&b'=') && l.iter().all(|&c| c == b' ' || c == b'=')
}

/// Runs of `=` in an underline.
pub fn spans(underline: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < underline.len() {
        if underline[i] == b'=' {
            let s = i;
            while i < underline.len() && underline[i] == b'=' {
                i += 1;
            }
            out.push((s, i));
        } else {
            i += 1;
        }
    }
    out
}

/// Blank-separated tokens of a line, as byte ranges.
pub fn tokens(line: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < line.len() {
        if line[i] == b' ' {
            i += 1;
            continue;
        }
        let s = i;
        while i < line.len() && line[i] != b' ' {
            i += 1;
        }
        out.push((s, i));
    }
    out
}

/// One table of an output, by line.
#[derive(Debug, Default)]
pub struct Table<'a> {
    pub pid_line: &'a [u8],
    pub heading: Option<&'a [u8]>,
    pub rows: Vec<&'a [u8]>,
    pub underline: Option<&'a [u8]>,
    pub totals: Option<&'a [u8]>,
}

/// Splits an output into its tables; `Err` for a line outside any.
pub fn tables(stdout: &[u8]) -> Result<Vec<Table<'_>>, String> {
    let mut out: Vec<Table> = Vec::new();
    let mut after_underline = false;
    for l in lines(stdout) {
        if is_pid_line(l) {
            out.push(Table {
                pid_line: l,
                ..Table::default()
            });
            after_underline = false;
            continue;
        }
        let Some(t) = out.last_mut() else {
            return Err(format!(
                "a line before any pid line: {:?}",
                String::from_utf8_lossy(l)
            ));
        };
        if after_underline {
            if t.totals.is_some() {
                return Err(format!(
                    "a line after the totals: {:?}",
                    String::from_utf8_lossy(l)
                ));
            }
            t.totals = Some(l);
        } else if is_underline(l) {
            t.underline = Some(l);
            after_underline = true;
        } else if t.heading.is_none()
            && t.rows.is_empty()
            && words(l).first() == Some(&&b"Address"[..])
        {
            t.heading = Some(l);
        } else {
            t.rows.push(l);
        }
    }
    Ok(out)
}

/// The first `k` cells of a row and the rest of the line after them.
fn row_cells(row: &[u8], k: usize) -> Result<(Vec<Span>, &[u8]), String> {
    let t = tokens(row);
    if t.len() < k {
        return Err(format!(
            "a row with {} cells, {k} expected: {:?}",
            t.len(),
            String::from_utf8_lossy(row)
        ));
    }
    let cells = t[..k].to_vec();
    let rest = &row[cells.last().map_or(0, |c| c.1)..];
    Ok((cells, rest))
}

/// The index in `names` of each value column (each underline run).
fn value_indexes(names: &[Vec<u8>]) -> Vec<usize> {
    (0..names.len())
        .filter(|&c| !FIXED.contains(&names[c].as_slice()))
        .collect()
}

fn cell_text(line: &[u8], (s, e): (usize, usize)) -> &[u8] {
    let cell = line.get(s..e.min(line.len())).unwrap_or_default();
    let start = cell.iter().position(|&c| c != b' ').unwrap_or(cell.len());
    &cell[start..]
}

/// The widths the rule gives each table's columns (see the module doc):
/// `carry` for several tables in one call; `at_least` raises columns to
/// given widths (`-A` keeps the address, offset, device and inode widths
/// measured over all regions).
pub fn expected_widths(
    stdout: &[u8],
    names: &[Vec<u8>],
    at_least: &[(usize, usize)],
) -> Result<Vec<Vec<usize>>, String> {
    let k = names.len();
    let values = value_indexes(names);
    let mut carried = vec![0usize; k];
    let mut out = Vec::new();
    for t in tables(stdout)? {
        if t.heading.is_none() && t.rows.is_empty() && t.underline.is_none() {
            // A kernel thread or a zombie: no table, nothing measured.
            out.push(carried.clone());
            continue;
        }
        // Only value columns carry over: procps-ng measures the address,
        // perm, offset, device and inode columns per table (a kernel
        // thread's table after a process has them 0 wide).
        let mut w: Vec<usize> = (0..k)
            .map(|c| if values.contains(&c) { carried[c] } else { 0 })
            .collect();
        if let Some(h) = t.heading {
            for (c, tok) in words(h).iter().take(k).enumerate() {
                w[c] = w[c].max(tok.len());
            }
        }
        let mut sums = vec![0u64; k];
        for r in &t.rows {
            let (cells, _) = row_cells(r, k)?;
            for (c, &(s, e)) in cells.iter().enumerate() {
                w[c] = w[c].max(e - s);
                if let Ok(n) = String::from_utf8_lossy(&r[s..e]).parse::<u64>() {
                    sums[c] += n;
                }
            }
        }
        if let (Some(u), Some(tot)) = (t.underline, t.totals) {
            for (&c, span) in values.iter().zip(spans(u)) {
                let cell = cell_text(tot, span);
                let len = if cell.is_empty() {
                    sums[c].to_string().len()
                } else {
                    cell.len()
                };
                w[c] = w[c].max(len);
            }
        }
        for &(c, min) in at_least {
            w[c] = w[c].max(min);
        }
        carried = w.clone();
        out.push(w);
    }
    Ok(out)
}

/// Checks that every cell of every table sits where the rule puts it.
pub fn check_widths(
    stdout: &[u8],
    names: &[Vec<u8>],
    at_least: &[(usize, usize)],
) -> Result<(), String> {
    let widths = expected_widths(stdout, names, at_least)?;
    let k = names.len();
    let values = value_indexes(names);
    for (t, w) in tables(stdout)?.iter().zip(widths) {
        // Where each column ends.
        let ends: Vec<usize> = w
            .iter()
            .scan(None, |end: &mut Option<usize>, &wc| {
                let e = end.map_or(wc, |p| p + 1 + wc);
                *end = Some(e);
                Some(e)
            })
            .collect();
        let bad = |what: &str, line: &[u8], detail: String| {
            Err(format!(
                "{what} not where the widths {w:?} put it ({detail}):\n{:?}",
                String::from_utf8_lossy(line)
            ))
        };
        if let Some(h) = t.heading {
            for (c, (_, e)) in tokens(h).into_iter().take(k).enumerate() {
                if e != ends[c] {
                    return bad("heading", h, format!("column {c} ends at {e}"));
                }
            }
        }
        for r in &t.rows {
            let (cells, rest) = row_cells(r, k)?;
            for (c, (_, e)) in cells.into_iter().enumerate() {
                if e != ends[c] {
                    let name = String::from_utf8_lossy(&names[c]).into_owned();
                    return bad("row", r, format!("{name} ends at {e}, not {}", ends[c]));
                }
            }
            if !(rest.is_empty() || rest.starts_with(b" ")) {
                return bad("row", r, "no blank after the last column".into());
            }
        }
        if let Some(u) = t.underline {
            let want: Vec<(usize, usize)> =
                values.iter().map(|&c| (ends[c] - w[c], ends[c])).collect();
            if spans(u) != want {
                return bad("underline", u, format!("runs {:?}, not {want:?}", spans(u)));
            }
            if let Some(tot) = t.totals {
                for &(s, e) in &want {
                    let cell = tot.get(s..e).unwrap_or_default();
                    let blank = cell.iter().all(|&c| c == b' ');
                    if !blank && cell.last() == Some(&b' ') {
                        return bad("total", tot, format!("cell {s}..{e} not right-aligned"));
                    }
                    if tot.get(s.wrapping_sub(1)).is_some_and(|&c| c != b' ') {
                        return bad("total", tot, format!("cell {s}..{e} wider than its run"));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Compares two outputs of the same smaps table cell by cell (positions
/// are the rule's business, see `check_widths`). `kind(row, name)` says how
/// a cell compares (`row` is `None` for totals); `totals: false` leaves the
/// totals out (compared as sums elsewhere).
pub fn compare(
    expected: &[u8],
    actual: &[u8],
    names: &[Vec<u8>],
    totals: bool,
    kind: &KindOf<'_>,
) -> Verdict {
    match compare_inner(expected, actual, names, totals, kind) {
        Ok(moved) if moved.is_empty() => Verdict::Same,
        Ok(moved) => Verdict::Moved(moved.join("\n")),
        Err(e) => Verdict::Differ(e),
    }
}

fn compare_inner(
    expected: &[u8],
    actual: &[u8],
    names: &[Vec<u8>],
    totals: bool,
    kind: &KindOf<'_>,
) -> Result<Vec<String>, String> {
    let show = |l: &[u8]| String::from_utf8_lossy(l).into_owned();
    let (te, ta) = (tables(expected)?, tables(actual)?);
    if te.len() != ta.len() {
        return Err(format!(
            "{} tables expected, {} printed",
            te.len(),
            ta.len()
        ));
    }
    let k = names.len();
    let values = value_indexes(names);
    let mut moved = Vec::new();
    let mut cell = |row: Option<&[u8]>, c: usize, x: &[u8], y: &[u8]| -> Result<(), String> {
        if x == y {
            return Ok(());
        }
        let name = show(&names[c]);
        let at = row.map_or("the totals".to_string(), show);
        match kind(row, &names[c]) {
            Kind::Masked => Ok(()),
            Kind::Moves => {
                moved.push(format!("{name}: {} -> {} in {at}", show(x), show(y)));
                Ok(())
            }
            // The caller appends the line printed.
            Kind::Fixed => Err(format!(
                "{name} is {}, expected {}, in:\n  - {at}\n  + ",
                show(y),
                show(x)
            )),
        }
    };
    for (e, a) in te.iter().zip(&ta) {
        if e.pid_line != a.pid_line {
            return Err(format!(
                "pid line:\n  - {}\n  + {}",
                show(e.pid_line),
                show(a.pid_line)
            ));
        }
        let heading_words = |h: Option<&[u8]>| h.map(|h| words(h).join(&b' '));
        if heading_words(e.heading) != heading_words(a.heading) {
            return Err(format!(
                "heading:\n  - {:?}\n  + {:?}",
                e.heading.map(show),
                a.heading.map(show)
            ));
        }
        if e.rows.len() != a.rows.len() {
            return Err(format!(
                "{} rows expected, {} printed, after {}",
                e.rows.len(),
                a.rows.len(),
                show(e.pid_line)
            ));
        }
        for (re, ra) in e.rows.iter().zip(&a.rows) {
            let (ce, rest_e) = row_cells(re, k)?;
            let (ca, rest_a) = row_cells(ra, k)?;
            if rest_e != rest_a {
                return Err(format!(
                    "row ends differ:\n  - {}\n  + {}",
                    show(re),
                    show(ra)
                ));
            }
            for c in 0..k {
                let (x, y) = (&re[ce[c].0..ce[c].1], &ra[ca[c].0..ca[c].1]);
                cell(Some(re), c, x, y).map_err(|m| format!("{m}{}", show(ra)))?;
            }
        }
        let runs = |u: Option<&[u8]>| u.map(|u| spans(u).len());
        if runs(e.underline) != runs(a.underline) || e.totals.is_some() != a.totals.is_some() {
            return Err(format!(
                "underline or totals differ after {}:\n  - {:?} {:?}\n  + {:?} {:?}",
                show(e.pid_line),
                e.underline.map(show),
                e.totals.map(show),
                a.underline.map(show),
                a.totals.map(show)
            ));
        }
        if !totals {
            continue;
        }
        if let (Some(ue), Some(ua), Some(te), Some(ta)) =
            (e.underline, a.underline, e.totals, a.totals)
        {
            for ((&c, se), sa) in values.iter().zip(spans(ue)).zip(spans(ua)) {
                cell(None, c, cell_text(te, se), cell_text(ta, sa))
                    .map_err(|m| format!("{m}{}", show(ta)))?;
            }
            let tail = |t: &[u8], u: &[u8]| t.get(u.len()..).unwrap_or_default().to_vec();
            if tail(te, ue) != tail(ta, ua) {
                return Err(format!("totals end:\n  - {}\n  + {}", show(te), show(ta)));
            }
        }
    }
    Ok(moved)
}
