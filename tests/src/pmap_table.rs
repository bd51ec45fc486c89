//! Parsing `pmap`'s snapshot output (default, `-x`, `-X`, `-XX`) into rows
//! and totals, to check that a table is internally consistent: rows sorted
//! and non-overlapping, totals equal to the sums of the rows printed.

/// One row: its start address and its numeric columns (in header order;
/// the first is the size in KiB).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub start: u64,
    pub numbers: Vec<u64>,
}

/// A parsed table.
#[derive(Clone, Debug, Default)]
pub struct Parsed {
    pub rows: Vec<Row>,
    /// The totals line's numbers, in the same column order, less the
    /// columns pmap does not total.
    pub totals: Vec<u64>,
    /// Columns (indexes into `Row::numbers`) without a total: the page
    /// sizes of `-XX`.
    pub untotalled: Vec<usize>,
}

fn hex(word: &str) -> Option<u64> {
    (word.len() >= 8)
        .then(|| u64::from_str_radix(word, 16).ok())
        .flatten()
}

/// Parses the output of `pmap MODE PID` for one PID (`mode` is "", "-x",
/// "-X" or "-XX"). Errors say which line is not what the mode prints.
pub fn parse(mode: &str, text: &str) -> Result<Parsed, String> {
    let mut p = Parsed::default();
    let lines: Vec<&str> = text.lines().collect();
    // Numeric columns of -X/-XX: from the header, between Inode and
    // VmFlags/Mapping.
    let mut width = match mode {
        "" => 1,
        "-x" => 3,
        _ => 0,
    };
    for (i, line) in lines.iter().enumerate().skip(1) {
        let w: Vec<&str> = line.split_whitespace().collect();
        let Some(first) = w.first() else { continue };
        if *first == "Address" {
            if mode.starts_with("-X") {
                let from = w.iter().position(|c| *c == "Inode").ok_or("no Inode")? + 1;
                let to = w
                    .iter()
                    .position(|c| *c == "VmFlags" || *c == "Mapping")
                    .ok_or("no Mapping")?;
                width = to - from;
                p.untotalled = (from..to)
                    .filter(|&c| matches!(w[c], "KernelPageSize" | "MMUPageSize"))
                    .map(|c| c - from)
                    .collect();
            }
            continue;
        }
        if let Some(start) = hex(first) {
            let nums: Result<Vec<u64>, String> = match mode {
                "" => vec![w.get(1).and_then(|s| s.strip_suffix('K')).unwrap_or("?")]
                    .into_iter()
                    .map(|s| s.parse().map_err(|e| format!("line {i} {line:?}: {e}")))
                    .collect(),
                "-x" => w
                    .iter()
                    .skip(1)
                    .take(width)
                    .map(|s| s.parse().map_err(|e| format!("line {i} {line:?}: {e}")))
                    .collect(),
                _ => w
                    .iter()
                    .skip(5)
                    .take(width)
                    .map(|s| s.parse().map_err(|e| format!("line {i} {line:?}: {e}")))
                    .collect(),
            };
            p.rows.push(Row {
                start,
                numbers: nums?,
            });
            continue;
        }
        let totals: Option<Vec<&str>> = match mode {
            "" if *first == "total" => w.get(1).and_then(|s| s.strip_suffix('K')).map(|s| vec![s]),
            "-x" if *first == "total" => Some(w.iter().skip(2).copied().collect()),
            "-X" | "-XX" if w.last() == Some(&"KB") => Some(w[..w.len() - 1].to_vec()),
            _ => None,
        };
        if let Some(t) = totals {
            p.totals = t
                .iter()
                .take(width - p.untotalled.len())
                .map(|s| s.parse().map_err(|e| format!("totals {line:?}: {e}")))
                .collect::<Result<_, String>>()?;
        }
    }
    if width == 0 {
        return Err("no column header".into());
    }
    Ok(p)
}

impl Parsed {
    /// Rows in address order, none overlapping the one before (a row's
    /// end is its start plus its size), and totals equal to the column
    /// sums. `Err` describes the first violation.
    pub fn check_consistent(&self) -> Result<(), String> {
        let mut prev_end = 0u64;
        for r in &self.rows {
            let size = r.numbers.first().copied().unwrap_or(0) * 1024;
            if r.start < prev_end {
                return Err(format!(
                    "row at {:x} starts below the end {prev_end:x} of the row before",
                    r.start
                ));
            }
            prev_end = r.start + size;
        }
        let width = self.rows.first().map_or(0, |r| r.numbers.len());
        let sums: Vec<u64> = (0..width)
            .filter(|c| !self.untotalled.contains(c))
            .map(|c| self.rows.iter().map(|r| r.numbers[c]).sum())
            .collect();
        if self.rows.is_empty() {
            return Err("no rows".into());
        }
        if sums != self.totals {
            return Err(format!(
                "totals {:?} are not the sums {:?} of the {} rows",
                self.totals,
                sums,
                self.rows.len()
            ));
        }
        Ok(())
    }
}
