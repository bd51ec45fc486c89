//! Totals: procps-ng's page-size totals blanked as we print them, and ours checked as sums.

use crate::common::{
    Output, find,
    layout::{FIXED, NO_TOTAL, is_pid_line, is_underline, spans},
    lines, words,
};

/// The value-column names of an smaps-table heading line.
fn value_columns(header: &[u8]) -> Vec<&[u8]> {
    words(header)
        .into_iter()
        .filter(|w| !FIXED.contains(w))
        .collect()
}

/// procps-ng's output with the page-size totals blanked, as we print them
/// (`-XX` and rc files: procps-ng sums KernelPageSize and MMUPageSize).
fn blank_meaningless_totals(stdout: &[u8]) -> Vec<u8> {
    if !stdout.ends_with(b"KB \n") && find(stdout, b" KB \n").is_none() {
        return stdout.to_vec();
    }
    let ls = lines(stdout);
    let mut out: Vec<Vec<u8>> = ls.iter().map(|l| l.to_vec()).collect();
    let mut header: Option<&[u8]> = None;
    for (i, l) in ls.iter().enumerate() {
        if i > 0 && is_pid_line(ls[i - 1]) && words(l).first() == Some(&&b"Address"[..]) {
            header = Some(l);
        }
        if is_underline(l) && i + 1 < ls.len() {
            let names = value_columns(header.expect("a heading before the totals"));
            for ((s, e), name) in spans(l).into_iter().zip(names) {
                if NO_TOTAL.contains(&name) {
                    out[i + 1][s..e].fill(b' ');
                }
            }
        }
    }
    let mut text = out.join(&b'\n');
    text.push(b'\n');
    text
}

pub(crate) fn number(cell: &[u8]) -> u64 {
    let t = String::from_utf8_lossy(cell);
    t.trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {t:?}"))
}

/// In each smaps table of `stdout` (ours), each total is the sum of its
/// column over the rows shown (blank for page sizes and key numbers).
pub(crate) fn verify_smaps_totals_if_any(stdout: &[u8]) {
    let ls = lines(stdout);
    let mut first_row = 0;
    let mut header: Option<&[u8]> = None;
    for (i, l) in ls.iter().enumerate() {
        if is_pid_line(l) {
            first_row = i + 1;
            if let Some(h) = ls
                .get(i + 1)
                .filter(|h| words(h).first() == Some(&&b"Address"[..]))
            {
                header = Some(h);
                first_row = i + 2;
            }
        }
        if !is_underline(l) {
            continue;
        }
        let totals = ls.get(i + 1).expect("a totals line after the underline");
        let names = value_columns(header.expect("a heading in the output"));
        for ((s, e), name) in spans(l).into_iter().zip(names) {
            let cell = &totals[s..e];
            if NO_TOTAL.contains(&name) {
                assert!(
                    cell.iter().all(|&c| c == b' '),
                    "{} total should be blank",
                    String::from_utf8_lossy(name)
                );
                continue;
            }
            let sum: u64 = ls[first_row..i].iter().map(|row| number(&row[s..e])).sum();
            assert_eq!(
                number(cell),
                sum,
                "total of {} is not the sum of its column",
                String::from_utf8_lossy(name)
            );
        }
    }
}

pub(crate) fn blank_output(mut o: Output) -> Output {
    o.stdout = blank_meaningless_totals(&o.stdout);
    o
}
