//! Reading the tracer's text output: framed tables, delta blocks, the
//! summary.

/// One framed table from the tracer's text output.
#[derive(Clone, Debug)]
pub struct Table {
    pub pid: u32,
    pub reason: String,
    /// Index of the header line in the tracer's stdout.
    pub line: usize,
    /// The lines between the frame lines: what `pmap` prints.
    pub body: Vec<String>,
}

/// `--- table pid 1234 (initial) +0.000s ---` -> (1234, "initial").
pub fn parse_table_header(line: &str) -> Option<(u32, String)> {
    let rest = line.strip_prefix("--- table pid ")?;
    let (pid, rest) = rest.split_once(' ')?;
    let reason = rest.strip_prefix('(')?.split_once(')')?.0;
    Some((pid.parse().ok()?, reason.to_string()))
}

pub const TABLE_END: &str = "--- end table ---";

/// Every complete table in `lines`, in order.
pub fn parse_tables(lines: &[String]) -> Vec<Table> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if let Some((pid, reason)) = parse_table_header(&lines[i]) {
            if let Some(end) = lines[i + 1..].iter().position(|l| l == TABLE_END) {
                out.push(Table {
                    pid,
                    reason,
                    line: i,
                    body: lines[i + 1..i + 1 + end].to_vec(),
                });
                i += end + 2;
                continue;
            }
            break;
        }
        i += 1;
    }
    out
}

/// Lines of `lines` that are not inside a table or summary frame (deltas,
/// exec and exit notes).
pub fn non_table_lines(lines: &[String]) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut in_frame = false;
    for (i, l) in lines.iter().enumerate() {
        if parse_table_header(l).is_some() || l.starts_with("--- summary pid ") {
            in_frame = true;
        } else if l == TABLE_END || l == "--- end summary ---" {
            in_frame = false;
        } else if !in_frame {
            out.push((i, l.as_str()));
        }
    }
    out
}

/// Delta headers (`+T pid P tid T call(args) = -1 ERRNO ...`) of failed
/// calls that, by the kernel's contract, fail before changing anything:
/// the tracer must count them, not print them (without `--show-failed`).
/// Calls that may fail half-way (mprotect, madvise, mlock ENOMEM...) are
/// not listed.
pub fn printed_unchanging_failures(lines: &[String]) -> Vec<String> {
    const NO_CHANGE: &[(&str, &[&str])] = &[
        ("mmap", &["EEXIST", "EINVAL", "EBADF", "EACCES"]),
        ("mremap", &["EINVAL", "EFAULT"]),
        ("munmap", &["EINVAL"]),
        ("shmat", &["EINVAL", "EACCES", "EIDRM"]),
        ("shmdt", &["EINVAL"]),
    ];
    non_table_lines(lines)
        .into_iter()
        .filter_map(|(_, l)| {
            let rest = l.strip_prefix('+')?;
            let call = rest
                .split(" tid ")
                .nth(1)?
                .split_once(' ')?
                .1
                .split('(')
                .next()?;
            let errno = rest.split(" = -1 ").nth(1)?.split_whitespace().next()?;
            let (_, errs) = NO_CHANGE.iter().find(|(c, _)| *c == call)?;
            // A move of several regions without resizing (6.17+) may fail
            // half-way; with a resize it is refused before anything moves.
            let args: Vec<&str> = rest.split_once('(')?.1.split(", ").collect();
            let resized = args.get(1) != args.get(2);
            if call == "mremap" && errno == "EFAULT" && !resized {
                return None;
            }
            errs.contains(&errno).then(|| l.to_string())
        })
        .collect()
}

/// Delta blocks outside tables: each header line (`+T pid ...`) with the
/// region lines under it.
pub fn delta_blocks(lines: &[String]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (_, l) in non_table_lines(lines) {
        if l.starts_with('+') {
            out.push((l.to_string(), Vec::new()));
        } else if l.starts_with("  ")
            && let Some(last) = out.last_mut()
        {
            last.1.push(l.to_string());
        }
    }
    out
}

/// The end-of-trace summary of one pid.
#[derive(Debug)]
pub struct Summary {
    pub text: Vec<String>,
    pub lost: u64,
    pub corrections: u64,
}

/// The number after `key` in `text` (`events lost: 3` -> 3).
pub fn number_after(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let digits: String = text[at..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

pub fn parse_summary(lines: &[String], pid: u32) -> Option<Summary> {
    let head = format!("--- summary pid {pid} ");
    let start = lines.iter().position(|l| l.starts_with(&head))?;
    let len = lines[start..]
        .iter()
        .position(|l| l == "--- end summary ---")?;
    let text: Vec<String> = lines[start..=start + len].to_vec();
    let joined = text.join("\n");
    Some(Summary {
        lost: number_after(&joined, "events lost:")?,
        corrections: number_after(&joined, "model corrections:")?,
        text,
    })
}
