//! Solaris pmap's `-l` (the dynamic linker's names of loaded objects), the
//! `Locked` column of the Solaris-style `-x` table and the `R` mode flag
//! (MAP_NORESERVE), on a program that dlopens `libz.so.1` by its soname,
//! mlocks 64 KiB and maps 1 MiB with MAP_NORESERVE; and `-l` and the header
//! on a gcore of it.

use std::path::{Path, PathBuf};
use std::process::Command;

use pmap_tests::views_util::{MapsLine, TempDir, Workload, read_maps, run_pmap};
use pmap_tests::workload_bin;

fn start(dir: &Path, args: &[&str]) -> Workload {
    let mut cmd = Command::new(workload_bin("solaris_l_workload"));
    cmd.arg(dir).args(args);
    let w = Workload::start(cmd);
    w.stop();
    w
}

fn pmap_ok(args: &[&str]) -> String {
    let (out, err, code) = run_pmap(args);
    assert_eq!(code, 0, "pmap {args:?} failed: {err}\n{out}");
    assert!(err.is_empty(), "pmap {args:?} wrote to stderr: {err}");
    out
}

/// The table rows (lines starting with an address), by address.
fn row_at(out: &str, addr: u64) -> &str {
    out.lines()
        .find(|l| {
            l.len() > 16
                && l.as_bytes()[16] == b' '
                && u64::from_str_radix(&l[..16], 16).ok() == Some(addr)
        })
        .unwrap_or_else(|| panic!("no row at {addr:x} in:\n{out}"))
}

/// libz's regions in the live map, and the real file's base name.
fn libz(maps: &[MapsLine]) -> (Vec<u64>, String) {
    let rows: Vec<&MapsLine> = maps
        .iter()
        .filter(|m| {
            m.name
                .rsplit('/')
                .next()
                .is_some_and(|b| b.starts_with("libz.so.1"))
        })
        .collect();
    assert!(!rows.is_empty(), "libz is not mapped: {maps:?}");
    let base = rows[0]
        .name
        .rsplit('/')
        .next()
        .expect("base name")
        .to_string();
    assert_ne!(
        base, "libz.so.1",
        "libz.so.1 should be a symlink to the versioned file (Debian's zlib1g)"
    );
    (rows.iter().map(|m| m.start).collect(), base)
}

fn vdso(maps: &[MapsLine]) -> u64 {
    maps.iter()
        .find(|m| m.name == "[vdso]")
        .expect("a [vdso] region")
        .start
}

#[test]
fn l_names_libz_by_its_soname_and_the_vdso() {
    let dir = TempDir::new("solaris-l");
    let w = start(&dir.0, &[]);
    let pid = w.pid().to_string();
    let maps = read_maps(w.pid());
    let (libz_rows, real) = libz(&maps);

    let plain = pmap_ok(&[&pid]);
    let with_l = pmap_ok(&["-l", &pid]);
    for &a in &libz_rows {
        assert!(row_at(&plain, a).ends_with(&format!(" {real}")), "{plain}");
        assert!(row_at(&with_l, a).ends_with(" libz.so.1"), "{with_l}");
    }
    assert!(
        row_at(&with_l, vdso(&maps)).ends_with(" linux-vdso.so.1"),
        "{with_l}"
    );
    // The executable's link-map name is empty: its rows keep the file name.
    let exe = maps.first().expect("a region");
    assert!(
        row_at(&with_l, exe.start).ends_with(" solaris_l_workload"),
        "{with_l}"
    );
    // -p: the path the dynamic linker found it by, not the resolved file.
    let with_lp = pmap_ok(&["-l", "-p", &pid]);
    let row = row_at(&with_lp, libz_rows[0]);
    let path = row.rsplit(' ').next().expect("mapping");
    assert!(
        path.starts_with('/') && path.ends_with("/libz.so.1"),
        "{row}"
    );

    // With -A keeping only libz's first region (its dynamic section, by
    // which its regions are found, lies in a later one), still libz.so.1.
    let first = maps
        .iter()
        .find(|m| m.start == libz_rows[0])
        .expect("libz's first region");
    let range = format!("{:x},{:x}", first.start, first.end - 1);
    let ranged = pmap_ok(&["-l", "-A", &range, &pid]);
    assert!(
        row_at(&ranged, first.start).ends_with(" libz.so.1"),
        "{ranged}"
    );
    assert_eq!(
        ranged.lines().filter(|l| l.contains(" libz")).count(),
        1,
        "{ranged}"
    );

    // -l combines with -x, -S, -a and -s: the same names in each table.
    for opts in [&["-x"][..], &["-S"], &["-a"], &["-s"], &["-x", "-S", "-a"]] {
        let args: Vec<&str> = opts.iter().copied().chain(["-l", pid.as_str()]).collect();
        let out = pmap_ok(&args);
        assert!(
            row_at(&out, libz_rows[0]).ends_with(" libz.so.1"),
            "pmap {args:?}:\n{out}"
        );
    }
}

#[test]
fn solaris_x_shows_locked_kib_and_r_for_noreserve() {
    let dir = TempDir::new("solaris-locked");
    let w = start(&dir.0, &[]);
    let pid = w.pid().to_string();
    for opts in [&["-x", "-l"][..], &["-x", "-S"], &["-x", "-a"]] {
        let args: Vec<&str> = opts.iter().copied().chain([pid.as_str()]).collect();
        let out = pmap_ok(&args);
        let head: Vec<&str> = out
            .lines()
            .nth(1)
            .expect("header")
            .split_whitespace()
            .collect();
        let locked_col = head
            .iter()
            .position(|&c| c == "Locked")
            .unwrap_or_else(|| panic!("no Locked column in pmap {args:?}:\n{out}"));
        let mode_col = head.iter().position(|&c| c == "Mode").expect("Mode");
        let cols = |addr| -> Vec<String> {
            row_at(&out, addr)
                .split_whitespace()
                .map(String::from)
                .collect()
        };
        let locked = cols(w.addr("locked"));
        assert_eq!(locked[1], "64", "pmap {args:?}: {locked:?}");
        assert_eq!(locked[locked_col], "64", "pmap {args:?}: {locked:?}");
        assert_eq!(locked[mode_col], "rw---", "pmap {args:?}: {locked:?}");
        let noreserve = cols(w.addr("noreserve"));
        assert_eq!(noreserve[1], "1024", "pmap {args:?}: {noreserve:?}");
        assert_eq!(noreserve[locked_col], "0", "pmap {args:?}: {noreserve:?}");
        assert_eq!(noreserve[mode_col], "rw--R", "pmap {args:?}: {noreserve:?}");
        let total: Vec<&str> = out
            .lines()
            .last()
            .expect("total")
            .split_whitespace()
            .collect();
        // "total kB" takes two words; the Locked total is in its column.
        let locked_total: u64 = total[locked_col].parse().expect("Locked total");
        assert!(locked_total >= 64, "pmap {args:?}: {total:?}");
    }
    // The procps-ng table of `-x` alone stays procps-ng's (no Locked).
    let procps = pmap_ok(&["-x", &pid]);
    assert!(!procps.contains("Locked"), "{procps}");
}

#[test]
fn l_is_refused_clearly_without_access() {
    let dir = TempDir::new("solaris-l-refused");
    let w = start(&dir.0, &[]);
    // `nobody` may not read a root process's memory (nor its smaps).
    let out = Command::new(pmap_tests::tool("setpriv", "util-linux"))
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(pmap_tests::pmap_bin())
        .args(["-l", &w.pid().to_string()])
        .output()
        .expect("run pmap as nobody");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("pmap: process {}:", w.pid()))
            && err.contains("Permission denied")
            && err.contains("run pmap as its owner, or as root with CAP_SYS_PTRACE"),
        "{err}"
    );
}

fn gcore(dir: &Path, pid: u32) -> PathBuf {
    let prefix = dir.join("core");
    let st = Command::new(pmap_tests::tool("gcore", "gdb"))
        .arg("-o")
        .arg(&prefix)
        .arg(pid.to_string())
        .output()
        .expect("run gcore");
    assert!(st.status.success(), "gcore failed: {st:?}");
    PathBuf::from(format!("{}.{pid}", prefix.display()))
}

/// What `-l` shows for a core (docs/views.md): gcore dumps the dynamic
/// linker's data, so the link map is there and `-l` names libz `libz.so.1`
/// and the vDSO `linux-vdso.so.1`, as live.
#[test]
fn l_on_a_gcore_names_as_live() {
    let dir = TempDir::new("solaris-l-core");
    let w = start(&dir.0, &[]);
    let pid = w.pid().to_string();
    let maps = read_maps(w.pid());
    let (libz_rows, real) = libz(&maps);
    let live = pmap_ok(&["-l", &pid]);
    let core = gcore(&dir.0, w.pid());
    let core = core.to_str().expect("UTF-8 path");

    let plain = pmap_ok(&[core]);
    let with_l = pmap_ok(&["-l", core]);
    for &a in &libz_rows {
        assert!(row_at(&plain, a).ends_with(&format!(" {real}")), "{plain}");
        assert!(row_at(&with_l, a).ends_with(" libz.so.1"), "{with_l}");
    }
    assert!(
        row_at(&with_l, vdso(&maps)).ends_with(" linux-vdso.so.1"),
        "{with_l}"
    );
    // Every object's name is the live one.
    for m in maps.iter().filter(|m| m.name.starts_with('/')) {
        let name = |out: &str| row_at(out, m.start).rsplit(' ').next().map(String::from);
        assert_eq!(name(&with_l), name(&live), "{with_l}\n{live}");
    }
    // And in the core's -x table.
    let x = pmap_ok(&["-x", "-l", core]);
    assert!(row_at(&x, libz_rows[0]).ends_with(" libz.so.1"), "{x}");
}

/// A gcore's header has the command's arguments, as the live header: gcore
/// writes only argv[0] into NT_PRPSINFO, the rest is read from the dumped
/// stack.
#[test]
fn core_header_has_the_arguments_like_the_live_header() {
    let dir = TempDir::new("solaris-l-args");
    let w = start(&dir.0, &["--alpha", "two words", "3"]);
    let pid = w.pid().to_string();
    let live = pmap_ok(&[&pid]);
    let live_header = live.lines().next().expect("header");
    let core = gcore(&dir.0, w.pid());
    let out = pmap_ok(&[core.to_str().expect("UTF-8 path")]);
    let header = out.lines().next().expect("header");
    assert_eq!(
        header,
        format!("core '{}' of {live_header}", core.display()),
        "live: {live_header}"
    );
    assert!(header.ends_with(" --alpha two words 3"), "{header}");
}

/// A region whose file name is not UTF-8 prints with `?` for the odd bytes
/// from a core, as the live table (procps-ng) prints it.
#[test]
fn core_names_that_are_not_utf8_print_as_live() {
    let dir = TempDir::new("solaris-l-odd");
    let w = start(&dir.0, &[]);
    let pid = w.pid().to_string();
    let odd = w.addr("odd");
    let live = pmap_ok(&[&pid]);
    let live_row = row_at(&live, odd);
    assert!(live_row.ends_with(" odd-??.dat"), "{live_row}");
    // procps-ng's own pmap is the reference for the live row.
    let procps = Command::new(pmap_tests::tool("pmap", "procps"))
        .arg(&pid)
        .output()
        .expect("run procps-ng pmap");
    let procps = String::from_utf8_lossy(&procps.stdout).into_owned();
    assert_eq!(row_at(&procps, odd), live_row);

    let core = gcore(&dir.0, w.pid());
    let (out, err, code) = run_pmap([core.as_os_str()]);
    assert_eq!(code, 0, "{err}");
    // The mode may differ: gcore leaves read-only file pages out (`???`).
    assert!(row_at(&out, odd).ends_with(" odd-??.dat"), "{out}");
    let (out, _, _) = run_pmap([Path::new("-x").as_os_str(), core.as_os_str()]);
    assert!(row_at(&out, odd).ends_with(" odd-??.dat"), "{out}");
}
