//! Running procps-ng's pmap and ours on the same arguments, and comparing their outputs.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use crate::common::{
    Env, Output, REFERENCE, check, diff, layout,
    layout::{Kind, Verdict},
    lines, run, usage_and_version, words,
};
use crate::totals::blank_output;

pub(crate) fn ours() -> PathBuf {
    pmap_tests::pmap_bin()
}

/// Runs both with `args`; identical output required (modulo the `-k` help
/// line and the version string).
pub(crate) fn same(reference: &Path, args: &[OsString]) {
    same_env(reference, args, &Env::default());
}

pub(crate) fn same_env(reference: &Path, args: &[OsString], env: &Env) {
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
pub(crate) fn retry(args: &[OsString], attempt: &mut dyn FnMut() -> Verdict) {
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
pub(crate) fn verdict(
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
pub(crate) fn compare_x(want: &[u8], mine: &[u8]) -> Verdict {
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
pub(crate) fn kind(names: &[Vec<u8>], row: Option<&[u8]>, name: &[u8]) -> Kind {
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
pub(crate) fn smaps_columns(args: &[OsString], env: &Env) -> Option<Vec<Vec<u8>>> {
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
pub(crate) fn expected(o: Output) -> Output {
    blank_output(usage_and_version(o))
}
