//! Comparisons mode by mode, and of the modes where we differ from procps-ng 4.0.2 on purpose.

use std::{ffi::OsString, path::Path};

use crate::common::{
    Env, Output, check, find, layout,
    layout::{Verdict, is_pid_line, is_underline},
    lines, run, words,
};
use crate::compare::{compare_x, expected, kind, ours, retry, same, smaps_columns, verdict};
use crate::targets::{ranges, regions, with_pid};
use crate::totals::{blank_output, number, verify_smaps_totals_if_any};

pub(crate) const FORMATS: &[&[&str]] = &[&[], &["-x"], &["-X"], &["-XX"], &["-d"]];
const MODIFIERS: &[&[&str]] = &[&[], &["-q"], &["-p"], &["-q", "-p"]];

/// Every format with every modifier, and with `-A` ranges; corrected
/// figures are checked on their own.
pub(crate) fn all_modes(reference: &Path, pid: u32) {
    for f in FORMATS {
        for m in MODIFIERS {
            let args = with_pid(&[*f, *m].concat(), &[pid]);
            same(reference, &args);
            if f.is_empty() || *f == ["-X"] || *f == ["-XX"] {
                verify_smaps_totals_if_any(&run(&ours(), &args, &Env::default()).stdout);
            }
        }
        for range in ranges(pid) {
            for m in [&[][..], &["-q"], &["-p"]] {
                let args = with_pid(&[*f, m, &["-A", range.as_str()]].concat(), &[pid]);
                match *f {
                    ["-x"] => x_range(reference, &args, m.contains(&"-q")),
                    ["-X"] | ["-XX"] => smaps_range(reference, &args, pid, &range),
                    _ => same(reference, &args),
                }
            }
        }
    }
}

/// `-x -A`: the rows and the Kbytes total as procps-ng prints them; the
/// RSS and Dirty totals are the sums of the rows shown (procps-ng adds the
/// regions below the range too).
fn x_range(reference: &Path, args: &[OsString], quiet: bool) {
    let strip_total = |mut o: Output| {
        let mut ls: Vec<Vec<u8>> = lines(&o.stdout).iter().map(|l| l.to_vec()).collect();
        if let Some(last) = ls.last_mut().filter(|l| l.starts_with(b"total kB")) {
            // Keep the Kbytes total only.
            let w = words(last)
                .into_iter()
                .take(3)
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>();
            *last = w.join(&b' ');
        }
        o.stdout = ls.join(&b'\n');
        o
    };
    retry(args, &mut || {
        let theirs = run(reference, args, &Env::default());
        let raw = run(&ours(), args, &Env::default());
        if (theirs.status, &theirs.stderr) != (raw.status, &raw.stderr) {
            return Verdict::Differ(check(args, &theirs, &raw).err().unwrap_or_default());
        }
        let v = compare_x(
            &strip_total(theirs).stdout,
            &strip_total(raw.clone()).stdout,
        );
        if v == Verdict::Same && !quiet {
            let ls = lines(&raw.stdout);
            let rows: Vec<&&[u8]> = ls
                .iter()
                .filter(|l| {
                    l.len() > 16 && l[16] == b' ' && l[..16].iter().all(u8::is_ascii_hexdigit)
                })
                .collect();
            let total = words(ls.last().expect("a totals line"));
            let rss: u64 = rows.iter().map(|r| number(words(r)[2])).sum();
            let dirty: u64 = rows.iter().map(|r| number(words(r)[3])).sum();
            assert_eq!(number(total[3]), rss, "-x -A RSS total");
            assert_eq!(number(total[4]), dirty, "-x -A Dirty total");
        }
        v
    });
}

/// `-X`/`-XX` with `-A`: procps-ng 4.0.2 ignores the range there; we show
/// only the regions in range (as procps-ng 4.0.7 does). The rows must be
/// procps-ng's rows for those regions (blanks aside: widths follow the
/// smaller totals), and the totals their sums.
fn smaps_range(reference: &Path, args: &[OsString], pid: u32, range: &str) {
    let (lo, hi) = match range.split_once(',') {
        Some((a, b)) => (
            if a.is_empty() {
                0
            } else {
                u64::from_str_radix(a, 16).expect("hex")
            },
            if b.is_empty() {
                u64::MAX
            } else {
                u64::from_str_radix(b, 16).expect("hex")
            },
        ),
        None => {
            let v = u64::from_str_radix(range, 16).expect("hex");
            (v, v)
        }
    };
    let in_range: Vec<u64> = regions(pid)
        .into_iter()
        .filter(|(s, e, _)| !(e - 1 < lo || hi < *s))
        .map(|(s, _, _)| s)
        .collect();
    assert!(!in_range.is_empty());
    let no_range: Vec<OsString> = {
        let mut a = args.to_vec();
        let at = a.iter().position(|x| x == "-A").expect("-A in args");
        a.drain(at..at + 2);
        a
    };
    let names = smaps_columns(&no_range, &Env::default()).expect("an smaps table");
    let is_row_in_range = |l: &[u8]| -> bool {
        if l.ends_with(b" KB ") || is_underline(l) {
            return true;
        }
        let first = words(l).first().copied().unwrap_or_default();
        match u64::from_str_radix(&String::from_utf8_lossy(first), 16) {
            Ok(addr) if !is_pid_line(l) => in_range.contains(&addr),
            _ => true,
        }
    };
    // The columns that keep the width of all regions (README).
    let whole: Vec<usize> = names
        .iter()
        .enumerate()
        .filter(|(_, n)| [&b"Address"[..], b"Offset", b"Device", b"Inode"].contains(&n.as_slice()))
        .map(|(c, _)| c)
        .collect();
    retry(args, &mut || {
        let full = run(reference, &no_range, &Env::default());
        let mine = run(&ours(), args, &Env::default());
        if (mine.status, mine.stderr.as_slice()) != (full.status, &b""[..]) {
            return Verdict::Differ(check(args, &full, &mine).err().unwrap_or_default());
        }
        // procps-ng's rows of the regions in range: its totals (of every
        // region) are left out of the comparison and ours checked as sums.
        let mut want: Vec<u8> = Vec::new();
        for l in lines(&full.stdout)
            .into_iter()
            .filter(|l| is_row_in_range(l))
        {
            want.extend_from_slice(l);
            want.push(b'\n');
        }
        let all = layout::expected_widths(&full.stdout, &names, &[]).expect("procps-ng's table");
        let at_least: Vec<(usize, usize)> = whole.iter().map(|&c| (c, all[0][c])).collect();
        if let Err(e) = layout::check_widths(&mine.stdout, &names, &at_least) {
            return Verdict::Differ(format!("our column widths: {e}"));
        }
        let v = layout::compare(&want, &mine.stdout, &names, false, &|row, name| {
            kind(&names, row, name)
        });
        if v == Verdict::Same {
            verify_smaps_totals_if_any(&mine.stdout);
        }
        v
    });
}

/// `-k`: procps-ng 4.0.2 lacks it, so the expectation is its output without
/// `-k`, with each bracketed kernel name (`[heap]`, `[vdso]`, `[anon:x]`...)
/// in place of `[ anon ]`/`[ stack ]`, as procps-ng 4.0.6 prints it.
pub(crate) fn kernel_names(reference: &Path, pid: u32) {
    let maps = regions(pid);
    for (fmt, prefix) in [("", 31), ("-d", 58), ("-x", 47)] {
        for extra in [&[][..], &["-q"], &["-p"]] {
            let plain = with_pid(
                &[&[fmt][..], extra]
                    .concat()
                    .into_iter()
                    .filter(|a| !a.is_empty())
                    .collect::<Vec<_>>(),
                &[pid],
            );
            let mut with_k = plain.clone();
            with_k.insert(0, "-k".into());
            let expect = |mut o: Output| {
                let mut i = 0;
                let mut out = Vec::new();
                for l in lines(&o.stdout) {
                    let mut l = l.to_vec();
                    let is_row =
                        l.len() > 16 && l[16] == b' ' && l[..16].iter().all(u8::is_ascii_hexdigit);
                    if is_row {
                        let name = &maps[i].2;
                        i += 1;
                        if !name.contains(&b'/')
                            && name.ends_with(b"]")
                            && let Some(open) = name.iter().position(|&c| c == b'[')
                        {
                            l.truncate(prefix);
                            l.extend(
                                name[open..]
                                    .iter()
                                    .map(|&c| if (0x20..0x7f).contains(&c) { c } else { b'?' }),
                            );
                        }
                    }
                    out.extend_from_slice(&l);
                    out.push(b'\n');
                }
                o.stdout = out;
                o
            };
            retry(&with_k, &mut || {
                let theirs = run(reference, &plain, &Env::default());
                let mine = run(&ours(), &with_k, &Env::default());
                verdict(&with_k, &theirs, &expect(theirs.clone()), &mine, None)
            });
        }
    }
    let out = run(&ours(), &with_pid(&["-k"], &[pid]), &Env::default());
    assert!(
        find(&out.stdout, b" [stack]\n").is_some(),
        "-k shows [stack]"
    );
    assert!(find(&out.stdout, b" [heap]\n").is_some(), "-k shows [heap]");
    // The smaps tables always show the kernel's names: -k changes nothing.
    for f in [&["-X"][..], &["-XX", "-q"], &["-X", "-p"]] {
        let plain = with_pid(f, &[pid]);
        let mut with_k = plain.clone();
        with_k.insert(0, "-k".into());
        let names = smaps_columns(&plain, &Env::default());
        assert!(names.is_some(), "no smaps table for {plain:?}");
        retry(&with_k, &mut || {
            let theirs = run(reference, &plain, &Env::default());
            let mine = run(&ours(), &with_k, &Env::default());
            verdict(
                &with_k,
                &theirs,
                &expected(theirs.clone()),
                &mine,
                names.as_deref(),
            )
        });
    }
}

/// Several `-X`/`-XX` tables in one call: procps-ng 4.0.2 adds each table's
/// totals to the previous ones (fixed in 4.0.6); we print each table's own.
/// The rows are compared cell by cell, the totals checked as sums, and each
/// output's widths by the rule, which carries them from table to table
/// (the two differ only where procps-ng's larger totals widen a column).
pub(crate) fn several_smaps_tables(reference: &Path, args: &[OsString]) {
    let names = smaps_columns(args, &Env::default());
    retry(args, &mut || {
        let raw = run(reference, args, &Env::default());
        let mine = run(&ours(), args, &Env::default());
        if (raw.status, &raw.stderr) != (mine.status, &mine.stderr) {
            return Verdict::Differ(check(args, &raw, &mine).err().unwrap_or_default());
        }
        let Some(names) = &names else {
            // Only kernel threads, zombies or missing pids: no table.
            return verdict(args, &raw, &expected(raw.clone()), &mine, None);
        };
        for (who, out) in [("procps-ng's", &raw), ("our", &mine)] {
            if let Err(e) = layout::check_widths(&out.stdout, names, &[]) {
                return Verdict::Differ(format!("{who} column widths: {e}"));
            }
        }
        let v = layout::compare(
            &blank_output(raw.clone()).stdout,
            &mine.stdout,
            names,
            false,
            &|row, name| kind(names, row, name),
        );
        if v == Verdict::Same {
            verify_smaps_totals_if_any(&mine.stdout);
        }
        v
    });
}
