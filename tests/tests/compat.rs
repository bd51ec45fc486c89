//! Our `pmap PID...` against procps-ng's `/usr/bin/pmap` (4.0.2 in Debian 12), byte for
//! byte (stdout, stderr, exit status), on real stopped processes, in every
//! mode. Where we print a corrected figure (README.md, "Compatibility with procps-ng"), the test
//! checks the figure itself and everything else byte for byte.
//!
//! Build the binary under test first: `cargo build -p pmap-cli`.

mod common;

use std::{
    ffi::OsString,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use common::{
    layout::{FIXED, Kind, NO_TOTAL, Verdict, is_pid_line, is_underline, spans},
    *,
};

fn ours() -> PathBuf {
    pmap_tests::pmap_bin()
}

/// Runs both with `args`; identical output required (modulo the `-k` help
/// line and the version string).
fn same(reference: &Path, args: &[OsString]) {
    same_env(reference, args, &Env::default());
}

fn same_env(reference: &Path, args: &[OsString], env: &Env) {
    let names = smaps_columns(args, env);
    retry(args, &mut || {
        let raw = run(reference, args, env);
        let mine = run(&ours(), args, env);
        verdict(args, &raw, &expected(raw.clone()), &mine, names.as_deref())
    });
}

/// Runs `attempt` until it finds both outputs the same. A difference in a
/// cell that cannot move (anything but the process's own figures, see
/// `verdict`) fails at once; figures that moved are retried, up to 5 runs,
/// so a bug that shows now and then cannot pass by retrying.
fn retry(args: &[OsString], attempt: &mut dyn FnMut() -> Verdict) {
    let shown: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut last = String::new();
    for _ in 0..5 {
        match attempt() {
            Verdict::Same => return,
            Verdict::Differ(e) => panic!("pmap {}: {e}", shown.join(" ")),
            Verdict::Moved(m) => last = m,
        }
    }
    panic!(
        "pmap {}: the process's figures differed in each of 5 runs; the last time:\n{last}",
        shown.join(" ")
    );
}

/// One comparison of procps-ng's output (`raw`, and `want`: what ours must
/// print) with ours, by the format of `args`:
/// - smaps tables (`names` given): cell by cell (`layout::compare`), each
///   output's widths checked against the rule (`layout::check_widths`);
/// - `-x`: byte for byte, except that the RSS and Dirty cells, read from
///   smaps, may have moved (`compare_x`);
/// - anything else (the default and `-d` formats, usage, errors): byte for
///   byte, once: nothing there can move.
fn verdict(
    args: &[OsString],
    raw: &Output,
    want: &Output,
    mine: &Output,
    names: Option<&[Vec<u8>]>,
) -> Verdict {
    if (want.status, &want.stderr) != (mine.status, &mine.stderr) {
        return Verdict::Differ(check(args, want, mine).err().unwrap_or_default());
    }
    if let Some(names) = names {
        // procps-ng reads smaps twice, for the widths and then for the
        // rows, and a process's Pss moves between the two whenever another
        // process maps or unmaps the same pages: then its own rows break
        // the rule once. Broken in every run, the rule is wrong.
        if let Err(e) = layout::check_widths(&raw.stdout, names, &[]) {
            return Verdict::Moved(format!(
                "procps-ng's own output breaks the width rule, so the rule in \
                 tests/tests/common/layout.rs is wrong (or its two reads of \
                 smaps saw different figures): {e}"
            ));
        }
        if let Err(e) = layout::check_widths(&mine.stdout, names, &[]) {
            return Verdict::Differ(format!("our column widths: {e}"));
        }
        return layout::compare(&want.stdout, &mine.stdout, names, true, &|row, name| {
            kind(names, row, name)
        });
    }
    if want.stdout == mine.stdout {
        return Verdict::Same;
    }
    if is_x(args) {
        return compare_x(&want.stdout, &mine.stdout);
    }
    Verdict::Differ(check(args, want, mine).err().unwrap_or_default())
}

/// `-x` outputs that differ: `Moved` when only RSS and Dirty cells (of rows
/// and of the totals) differ, in the same places, else `Differ`.
fn compare_x(want: &[u8], mine: &[u8]) -> Verdict {
    let (a, b) = (lines(want), lines(mine));
    let differ = || Verdict::Differ(diff("stdout", want, mine));
    if a.len() != b.len() {
        return differ();
    }
    let mut moved = Vec::new();
    for (x, y) in a.iter().zip(&b) {
        if x == y {
            continue;
        }
        let is_row = x.len() > 17 && x[16] == b' ' && x[..16].iter().all(u8::is_ascii_hexdigit);
        let figures: &[usize] = if is_row {
            &[2, 3]
        } else if x.starts_with(b"total kB") {
            &[3, 4]
        } else {
            &[]
        };
        let (tx, ty) = (layout::tokens(x), layout::tokens(y));
        if tx.len() != ty.len() {
            return differ();
        }
        for (i, (p, q)) in tx.iter().zip(&ty).enumerate() {
            let same_text = x[p.0..p.1] == y[q.0..q.1];
            // Fixed widths: a cell that moved still ends where it did.
            if p.1 != q.1 || (!same_text && !figures.contains(&i)) {
                return differ();
            }
        }
        moved.push(format!(
            "  - {}\n  + {}",
            String::from_utf8_lossy(x),
            String::from_utf8_lossy(y)
        ));
    }
    if moved.is_empty() {
        return Verdict::Same;
    }
    Verdict::Moved(moved.join("\n"))
}

/// How a cell of an smaps table compares between procps-ng's run and ours
/// (`row` is `None` for the totals).
///
/// Pss of a file is its pages divided among every process mapping them,
/// the pmap that reads it included: procps-ng's pmap maps other libraries
/// and locale files than ours, so the target's Pss of those files differs
/// while each runs. Whether a file's page is shared or private depends on
/// which other processes map it at that instant (any process on the
/// machine), so the sharing split of every file row is masked too, and
/// with them the totals'; their sum, Rss, is still compared.
fn kind(names: &[Vec<u8>], row: Option<&[u8]>, name: &[u8]) -> Kind {
    if layout::FIXED.contains(&name)
        || layout::NO_TOTAL.contains(&name)
        || name == b"Size"
        || name == b"Locked"
    {
        return Kind::Fixed;
    }
    if is_pss(name) {
        return Kind::Masked;
    }
    if is_sharing(name) {
        let Some(row) = row else {
            return Kind::Masked;
        };
        let inode = names
            .iter()
            .position(|n| n == b"Inode")
            .and_then(|k| layout::tokens(row).get(k).map(|&(s, e)| row[s..e].to_vec()));
        let file_row = inode.is_some_and(|w| w != b"0");
        if file_row || maps_observer_file(row) {
            return Kind::Masked;
        }
    }
    Kind::Moves
}

/// The column headings ours prints for `args` (run without `-q`).
fn heading_for(args: &[OsString], env: &Env) -> Option<Vec<u8>> {
    let mut plain = args.to_vec();
    plain.retain(|a| a != "-q" && a != "--quiet");
    lines(&run(&ours(), &plain, env).stdout)
        .into_iter()
        .find(|l| words(l).first() == Some(&&b"Address"[..]))
        .map(<[u8]>::to_vec)
}

/// The single-word columns of `args`' smaps table, or `None` when `args`
/// print none.
fn smaps_columns(args: &[OsString], env: &Env) -> Option<Vec<Vec<u8>>> {
    is_smaps_table(args)
        .then(|| heading_for(args, env))
        .flatten()
        .map(|h| layout::columns(&h))
}

/// Whether `args` ask for an smaps table (`-X`, `-XX`, `-c`, `-C FILE`).
fn is_smaps_table(args: &[OsString]) -> bool {
    args.iter().any(|a| {
        let a = a.as_encoded_bytes();
        (a.starts_with(b"-") && !a.starts_with(b"--") && a.iter().any(|c| b"XcC".contains(c)))
            || a.starts_with(b"--read-rc")
    })
}

/// Whether `args` ask for `-x` (RSS and Dirty, read from smaps).
fn is_x(args: &[OsString]) -> bool {
    args.iter().any(|a| {
        let a = a.as_encoded_bytes();
        (a.starts_with(b"-") && !a.starts_with(b"--") && a.contains(&b'x'))
            || a.starts_with(b"--ext")
    })
}

fn is_pss(name: &[u8]) -> bool {
    name.starts_with(b"Pss") || name == b"SwapPss"
}

/// Columns that count whether a page is shared, or was touched by anyone:
/// a pmap that maps the same file changes them.
fn is_sharing(name: &[u8]) -> bool {
    [
        &b"Shared_Clean"[..],
        b"Shared_Dirty",
        b"Private_Clean",
        b"Private_Dirty",
        b"Referenced",
    ]
    .contains(&name)
}

/// Files that only one of the two pmaps maps into itself (procps-ng's
/// libproc2, libsystemd and its libraries, locale files; our libgcc_s...):
/// while that pmap runs, the target's pages of those files are shared with
/// it, so their sharing columns differ between the two runs.
fn observer_files() -> &'static Vec<Vec<u8>> {
    static FILES: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    FILES.get_or_init(|| {
        let own = |bin: &Path| -> Vec<Vec<u8>> {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("exec '{}' -p $$", bin.display()))
                .output()
                .expect("running a pmap on itself");
            lines(&out.stdout)
                .into_iter()
                .filter_map(|l| {
                    l.get(31..)
                        .filter(|n| n.starts_with(b"/"))
                        .map(<[u8]>::to_vec)
                })
                .collect()
        };
        let (a, b) = (own(Path::new(REFERENCE)), own(&ours()));
        a.iter()
            .filter(|f| !b.contains(f))
            .chain(b.iter().filter(|f| !a.contains(f)))
            .cloned()
            .collect()
    })
}

fn maps_observer_file(row: &[u8]) -> bool {
    observer_files().iter().any(|path| {
        let base = path.rsplit(|&c| c == b'/').next().unwrap_or(path);
        row.ends_with(path)
            || (row.ends_with(base) && row.get(row.len() - base.len() - 1) == Some(&b' '))
    })
}

/// procps-ng's output turned into ours: the usage and version differences,
/// and the meaningless page-size totals blanked.
fn expected(o: Output) -> Output {
    blank_output(usage_and_version(o))
}

fn with_pid(opts: &[&str], pids: &[u32]) -> Vec<OsString> {
    let mut a = os(opts);
    a.extend(pids.iter().map(|p| OsString::from(p.to_string())));
    a
}

fn odd_maps(dir: &Path, extra: &[&str]) -> Stopped {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_odd_maps"));
    cmd.arg(dir).args(extra);
    Stopped::start(cmd)
}

fn sleeper() -> Stopped {
    // `sh` prints ready then becomes `sleep`; the pid stays the same.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo ready; exec sleep 100000"]);
    let s = Stopped::start(cmd);
    // The stop may come before the exec, or before sleep set itself up:
    // let it run until it has (its heap exists), and a moment more so that
    // it sits in nanosleep.
    let cont = |ms| {
        // SAFETY: continue our own child briefly.
        unsafe { libc::kill(s.pid as i32, libc::SIGCONT) };
        std::thread::sleep(std::time::Duration::from_millis(ms));
        stop(s.pid);
    };
    for _ in 0..400 {
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", s.pid)).unwrap_or_default();
        let heap = regions(s.pid).iter().any(|r| r.2 == b"[heap]");
        if comm.trim() == "sleep" && heap {
            cont(50);
            return s;
        }
        cont(5);
    }
    panic!("sleep did not start");
}

/// `(start, end)` of every region, from the (stopped) process's maps.
fn regions(pid: u32) -> Vec<(u64, u64, Vec<u8>)> {
    let text = std::fs::read(format!("/proc/{pid}/maps")).expect("reading maps");
    lines(&text)
        .into_iter()
        .map(|l| {
            // start-end perms offset dev inode   name
            let mut rest = l;
            let mut fields = Vec::new();
            for _ in 0..5 {
                let sp = rest
                    .iter()
                    .position(|&c| c == b' ')
                    .expect("maps line has 6 columns");
                fields.push(&rest[..sp]);
                rest = &rest[sp + 1..];
            }
            let name = rest
                .iter()
                .position(|&c| c != b' ')
                .map_or(&[][..], |i| &rest[i..]);
            let range = String::from_utf8_lossy(fields[0]).into_owned();
            let (a, b) = range.split_once('-').expect("start-end");
            let hex = |x: &str| u64::from_str_radix(x, 16).expect("hex address");
            (hex(a), hex(b), name.to_vec())
        })
        .collect()
}

/// A `-A` range picking a few regions from the middle of the map, and a
/// single address inside one region.
fn ranges(pid: u32) -> Vec<String> {
    let r = regions(pid);
    assert!(r.len() > 8, "workload has too few regions to pick a range");
    let (lo, hi) = (r[r.len() / 3].0 + 0x10, r[r.len() / 2].1 - 1);
    vec![
        format!("{lo:x},{hi:x}"),
        format!("{:x}", r[2].0 + 0x1000 - 1),
        format!("{lo:x},"),
        format!(",{hi:x}"),
    ]
}

const FORMATS: &[&[&str]] = &[&[], &["-x"], &["-X"], &["-XX"], &["-d"]];
const MODIFIERS: &[&[&str]] = &[&[], &["-q"], &["-p"], &["-q", "-p"]];

/// Every format with every modifier, and with `-A` ranges; corrected
/// figures are checked on their own.
fn all_modes(reference: &Path, pid: u32) {
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

fn number(cell: &[u8]) -> u64 {
    let t = String::from_utf8_lossy(cell);
    t.trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {t:?}"))
}

/// In each smaps table of `stdout` (ours), each total is the sum of its
/// column over the rows shown (blank for page sizes and key numbers).
fn verify_smaps_totals_if_any(stdout: &[u8]) {
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
fn kernel_names(reference: &Path, pid: u32) {
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

#[test]
fn sleeping_process_every_mode() {
    let reference = reference();
    let s = sleeper();
    all_modes(&reference, s.pid);
    kernel_names(&reference, s.pid);
}

#[test]
fn odd_names_every_mode() {
    let reference = reference();
    let dir = TempDir::new("odd");
    let p = odd_maps(&dir.0, &[]);
    // The names the test is about are really there.
    let out = run(&reference, &with_pid(&[], &[p.pid]), &Env::default());
    for want in [
        &b"  [ shmid=0x"[..],
        b"memfd:pmap-test (deleted)",
        b"deleted file.bin (deleted)",
        b"new\\012line.bin",
        b"not-utf8-??.bin",
        b"tab?here.bin",
        b"with space.bin",
        b"trailing space \n",
        b"zero (deleted)",
        b"  [ stack ]",
    ] {
        assert!(
            find(&out.stdout, want).is_some(),
            "reference output lacks {:?}",
            String::from_utf8_lossy(want)
        );
    }
    all_modes(&reference, p.pid);
    kernel_names(&reference, p.pid);
    // Names in a UTF-8 and in the C locale (only the header escaping
    // depends on it, and the names must not).
    for lc in ["C", "C.UTF-8"] {
        for f in FORMATS {
            same_env(
                &reference,
                &with_pid(f, &[p.pid]),
                &Env::default().var("LC_ALL", lc),
            );
        }
    }
}

#[test]
fn python_file_and_anonymous_mappings_and_odd_arguments() {
    let reference = reference();
    let script = "import mmap,sys,time\n\
                  f=open('/etc/passwd','rb')\n\
                  m=mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ)\n\
                  a=mmap.mmap(-1,1<<20)\n\
                  a[0]=1\n\
                  print('ready',flush=True)\n\
                  time.sleep(1e6)\n";
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script);
    // Arguments whose bytes the header must escape: blank, tab, newline,
    // invalid UTF-8, valid UTF-8, DEL.
    for a in [
        &b"with space"[..],
        b"tab\there",
        b"new\nline",
        b"\xff\xfe",
        "caf\u{e9}".as_bytes(),
        b"del\x7f",
    ] {
        cmd.arg(to_os(a));
    }
    let p = Stopped::start(cmd);
    for lc in ["C", "C.UTF-8", "POSIX", "xx_XX.UTF-8"] {
        let env = Env::default().var("LC_ALL", lc);
        for f in FORMATS {
            same_env(&reference, &with_pid(f, &[p.pid]), &env);
        }
    }
    all_modes(&reference, p.pid);
}

#[test]
fn many_threads_and_thread_ids() {
    let reference = reference();
    let dir = TempDir::new("threads");
    let p = odd_maps(&dir.0, &["--threads", "64"]);
    let tids: Vec<u32> = std::fs::read_dir(format!("/proc/{}/task", p.pid))
        .expect("task dir")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    assert!(tids.len() > 64);
    let some: Vec<u32> = tids
        .iter()
        .copied()
        .filter(|&t| t != p.pid)
        .take(3)
        .collect();
    for f in FORMATS {
        if *f == ["-X"] || *f == ["-XX"] {
            several_smaps_tables(&reference, &with_pid(f, &some));
        } else {
            same(&reference, &with_pid(f, &some));
        }
        same(&reference, &with_pid(&[*f, &["-q"]].concat(), &[p.pid]));
    }
}

#[test]
fn sixty_thousand_mappings() {
    let reference = reference();
    let dir = TempDir::new("many");
    let p = odd_maps(&dir.0, &["--maps", "60000"]);
    assert!(regions(p.pid).len() > 60_000);
    for f in [&[][..], &["-x"], &["-X"], &["-d"], &["-q", "-XX"], &["-XX"]] {
        same(&reference, &with_pid(f, &[p.pid]));
    }
}

#[test]
fn kernel_threads_zombies_missing_and_several_pids() {
    let reference = reference();
    let s = sleeper();
    // A zombie: a child that exited and was never reaped.
    let mut cmd = Command::new("python3");
    cmd.args(["-c", "import os,time\nif os.fork()==0: os._exit(0)\nprint('ready',flush=True)\ntime.sleep(1e6)\n"]);
    let z = Stopped::start(cmd);
    let zombie = (0..1000)
        .find_map(|_| {
            let kids = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", z.pid))
                .unwrap_or_default();
            let found = kids
                .split_whitespace()
                .filter_map(|k| k.parse::<u32>().ok())
                .find(|k| {
                    let st = std::fs::read_to_string(format!("/proc/{k}/stat")).unwrap_or_default();
                    st.rsplit_once(')')
                        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
                });
            if found.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            found
        })
        .expect("a zombie appears");
    let missing = 0x7fff_fff0u32;
    let kthread = pmap_tests::kernel_thread();
    for f in FORMATS {
        for pids in [
            vec![kthread],
            vec![zombie],
            vec![missing],
            vec![s.pid, kthread, missing, s.pid],
            vec![kthread, s.pid],
            vec![zombie, s.pid, zombie],
        ] {
            for q in [&[][..], &["-q"]] {
                let args = with_pid(&[*f, q].concat(), &pids);
                let smaps_table = *f == ["-X"] || *f == ["-XX"];
                if smaps_table && (pids.len() > 1 || q.is_empty()) {
                    several_smaps_tables(&reference, &args);
                } else {
                    same(&reference, &args);
                }
            }
        }
    }
    // PID spellings.
    for arg in [
        format!("0x{:x}", s.pid),
        format!("0{:o}", s.pid),
        format!("/proc/{}", s.pid),
        format!("0X{:X}", s.pid),
    ] {
        same(&reference, &os(&["-q", &arg]));
        same(&reference, &os(&["-d", &arg, "/proc/self"]));
    }
}

/// Several `-X`/`-XX` tables in one call: procps-ng 4.0.2 adds each table's
/// totals to the previous ones (fixed in 4.0.6); we print each table's own.
/// The rows are compared cell by cell, the totals checked as sums, and each
/// output's widths by the rule, which carries them from table to table
/// (the two differ only where procps-ng's larger totals widen a column).
fn several_smaps_tables(reference: &Path, args: &[OsString]) {
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

fn blank_output(mut o: Output) -> Output {
    o.stdout = blank_meaningless_totals(&o.stdout);
    o
}

#[test]
fn unreadable_maps() {
    let reference = reference();
    let s = sleeper();
    // An unprivileged user may not read root's maps. Our binary is copied
    // where that user can run it.
    let dir = TempDir::new("unreadable");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let bin = dir.0.join("pmap");
    std::fs::copy(ours(), &bin).expect("copying pmap");
    let nobody = Env {
        uid: Some(65534),
        ..Env::default()
    };
    for f in FORMATS {
        for pids in [vec![s.pid], vec![s.pid, 0x7fff_fff0, s.pid]] {
            let args = with_pid(f, &pids);
            let expected = usage_and_version(run(&reference, &args, &nobody));
            assert_ne!(expected.status, 0, "nobody should not read root's maps");
            let mine = run(&bin, &args, &nobody);
            if let Err(e) = check(&args, &expected, &mine) {
                panic!("{e}");
            }
        }
    }
}

#[test]
fn command_line_handling() {
    let reference = reference();
    let s = sleeper();
    let pid = s.pid.to_string();
    let p = pid.as_str();
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["-h"],
        vec!["--help"],
        vec!["--he"],
        vec!["-V"],
        vec!["--version"],
        vec!["-V", "-Z"],
        vec!["-Z", p],
        vec!["-xZ", p],
        vec!["-:", p],
        vec!["--foo", p],
        vec!["--foo=bar", p],
        vec!["--r", p],
        vec!["--re=1", p],
        vec!["--create", p],
        vec!["--extended=1", p],
        vec!["--range"],
        vec!["-A"],
        vec!["-qA"],
        vec!["--range", p],
        vec!["--range=", p],
        vec!["-A", "zz", p],
        vec!["-A", "1,2,3", p],
        vec!["-A", "0x1g", p],
        vec!["-A", "-1", p],
        vec!["-A", "", p],
        vec!["-x", "-d", p],
        vec!["-x", "-X", p],
        vec!["-X", "-c", p],
        vec!["-d", "-C", "/nonexistent", p],
        vec!["-n", "-N", "/tmp/x"],
        vec!["-n", "-q"],
        vec!["-N", "/tmp/x", "-p"],
        vec!["-n", p],
        vec!["-N"],
        vec!["-q"],
        vec!["-x"],
        vec![p, "-q"],
        vec!["-q", "--", p],
        vec!["--qu", "--dev", p],
        vec!["-qd", p],
        vec!["-XXX", "-q", p],
        vec!["--show-path", "--quiet", p],
        vec!["0"],
        vec!["-q", "0"],
        vec!["-q", "2147483648"],
        vec!["-q", "2147483647"],
        vec!["-q", "99999999999999999999999999"],
        vec!["-q", "1x"],
        vec!["-q", "+1"],
        vec!["-q", "-1"],
        vec!["-q", "abc"],
        vec!["-q", "08"],
        vec!["-q", "0x"],
        vec!["-q", "/proc/self"],
        vec!["-q", "/proc/"],
        vec!["-q", "/proc/abc", p],
        vec!["-q", "/proc/1x", p],
        vec!["-q", p, "abc"],
        vec!["-q", p, ""],
        vec!["-q", "-"],
        vec!["-c", "-C"],
        vec!["-A", "7f0000000000,ffffffffffffffff", "-q", p],
    ];
    for c in &cases {
        same(&reference, &os(c));
    }
    // More than 255 PIDs: procps-ng gives up (README.md, "Compatibility with procps-ng"), we
    // show them all.
    let many: Vec<u32> = vec![s.pid; 300];
    let args = with_pid(&["-q"], &many);
    let theirs = run(&reference, &args, &Env::default());
    let mine = run(&ours(), &args, &Env::default());
    // procps-ng 4.0.2 gives up; a release that does not must print ours.
    if theirs.status == 1 {
        assert_eq!(
            theirs.stderr.as_slice(),
            &b"pmap: library failed pids statistics\n"[..]
        );
    } else {
        assert_eq!(usage_and_version(theirs), mine, "300 pids");
    }
    assert_eq!((mine.status, mine.stderr.as_slice()), (0, &b""[..]));
    let header = format!("{}:   sleep 100000\n", s.pid);
    let one = run(&ours(), &with_pid(&["-q"], &[s.pid]), &Env::default()).stdout;
    assert_eq!(mine.stdout, one.repeat(300));
    assert!(one.starts_with(header.as_bytes()));
    // Without POSIXLY_CORRECT operands and options mix; with it, the first
    // operand ends the options.
    same_env(
        &reference,
        &os(&[p, "-x"]),
        &Env::default().var("POSIXLY_CORRECT", "1"),
    );
    same_env(
        &reference,
        &os(&["-q", p, "-x"]),
        &Env::default().var("POSIXLY_CORRECT", "1"),
    );
}

/// rc files: creating (`-n`, `-N`), refusing to overwrite, reading (`-c`,
/// `-C`), sections, warnings, ShowPath toggling `-p`.
#[test]
fn rc_files() {
    let reference = reference();
    let s = sleeper();
    let pid = s.pid.to_string();
    let p = pid.as_str();
    let tmp = TempDir::new("rc");
    let (ref_home, our_home) = (tmp.0.join("ref"), tmp.0.join("ours"));
    for h in [&ref_home, &our_home] {
        std::fs::create_dir_all(h).expect("home dir");
    }
    let ours = ours();
    // Each side gets its own HOME, so that -n writes two files to compare.
    let both = |args: &[&str], setup: &dyn Fn(&Path)| {
        let args = os(args);
        retry(&args, &mut || {
            for h in [&ref_home, &our_home] {
                setup(h);
            }
            let our_env = Env::default().var("HOME", &our_home);
            let names = smaps_columns(&args, &our_env);
            let theirs = run(&reference, &args, &Env::default().var("HOME", &ref_home));
            let mine = run(&ours, &args, &our_env);
            let v = verdict(
                &args,
                &theirs,
                &expected(theirs.clone()),
                &mine,
                names.as_deref(),
            );
            if v == Verdict::Same {
                let (a, b) = (
                    std::fs::read(ref_home.join(".pmaprc")).ok(),
                    std::fs::read(our_home.join(".pmaprc")).ok(),
                );
                assert_eq!(a, b, "~/.pmaprc after {args:?}");
            }
            v
        });
    };
    let clear = |h: &Path| {
        let _ = std::fs::remove_file(h.join(".pmaprc"));
    };
    let write = |text: &'static str| {
        move |h: &Path| std::fs::write(h.join(".pmaprc"), text).expect("writing rc")
    };

    both(&["-n"], &clear);
    // Second time: refuses to overwrite.
    both(&["-n"], &|_: &Path| {});
    both(&["-c", p], &|_: &Path| {});
    both(&["-c", "-q", p], &|_: &Path| {});
    both(&["-c", p], &clear);
    both(&["-n"], &|h: &Path| {
        clear(h);
        std::fs::create_dir_all(h.join(".pmaprc")).expect("dir in the way");
    });
    both(&["-c", p], &|h: &Path| {
        let _ = std::fs::remove_dir(h.join(".pmaprc"));
    });
    let rcs: &[&'static str] = &[
        "[Fields Display]\nRss\nSize\nPss\nMapping\n",
        "[Fields Display]\nPerm\nOffset\nDevice\nInode\nSize\nRss\nPss\nShared_Clean\nShared_Dirty\nPrivate_Clean\nPrivate_Dirty\nReferenced\nAnonymous\nAnonHugePages\nSwap\nKernelPageSize\nMMUPageSize\nLocked\nVmFlags\nMapping\n[Mapping]\nShowPath\n",
        "[Fields Display]\nSize\nVmFlags\n",
        "[Fields Display]\n",
        "",
        "stray line\n[Fields Display] Rss\n  Size # ok\nPss junk\n[Unknown]\nRss\n[broken\n[Mapping]ShowPath\nShowPath\nShowPath\n\t# comment\n",
        "[Mapping]\nShowPath\n[Fields Display]\nRss\nMapping\n",
    ];
    for rc in rcs {
        for extra in [&[][..], &["-p"], &["-q"]] {
            let args = [&["-c"][..], extra, &[p]].concat();
            both(&args, &write(rc));
        }
    }
    // -C FILE and -N FILE, with paths both can use.
    let rc_path = tmp.0.join("custom rc");
    std::fs::write(&rc_path, rcs[0]).expect("writing rc");
    let rc_str = rc_path.to_str().expect("utf-8 temp path");
    same(&reference, &os(&["-C", rc_str, p]));
    same(&reference, &os(&["--read-rc-from", rc_str, "-q", p]));
    same(&reference, &os(&["-C", "/nonexistent/rc", p]));
    same(&reference, &os(&["-C", rc_str]));
    // -N: refuses an existing file or a directory, fails on a bad path,
    // writes the template.
    same(&reference, &os(&["-N", rc_str]));
    same(&reference, &os(&["-N", tmp.0.to_str().expect("utf-8")]));
    same(&reference, &os(&["-N", "/nonexistent/dir/rc"]));
    for (bin, name) in [(&reference, "ref-new"), (&ours, "our-new")] {
        let target = tmp.0.join(name);
        let args = os(&["--create-rc-to", target.to_str().expect("utf-8")]);
        let out = usage_and_version(run(bin, &args, &Env::default()));
        assert_eq!(out.status, 0);
        assert_eq!(
            out.stderr,
            b"pmap: rc file successfully created, feel free to edit the content\n"
        );
    }
    assert_eq!(
        std::fs::read(tmp.0.join("ref-new")).expect("procps wrote its rc"),
        std::fs::read(tmp.0.join("our-new")).expect("we wrote ours"),
    );
    // No HOME.
    same_env(&reference, &os(&["-n"]), &Env::default().unset("HOME"));
    same_env(&reference, &os(&["-c", p]), &Env::default().unset("HOME"));
}
