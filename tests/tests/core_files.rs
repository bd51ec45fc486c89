//! `pmap CORE`: cores written by gdb's `gcore` and by the kernel from a
//! stopped process are compared with that process's live map, read while it
//! was stopped; damaged or foreign files give a one-line error each while
//! the other arguments are still printed.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use pmap_tests::views_util::{MapsLine, TempDir, Workload, read_maps, run_pmap, signal};
use pmap_tests::workload_bin;

fn start_workload(dir: &Path, core_limit: bool) -> Workload {
    let mut cmd = Command::new("sh");
    let script = if core_limit {
        "ulimit -c unlimited && exec \"$0\" \"$@\""
    } else {
        "exec \"$0\" \"$@\""
    };
    cmd.arg("-c")
        .arg(script)
        .arg(workload_bin("views_workload"))
        .arg(dir);
    Workload::start(cmd)
}

/// One row of `pmap -d CORE`, cut at the fixed column positions (the
/// mapping name may hold spaces).
#[derive(Debug)]
struct Row {
    start: u64,
    kbytes: u64,
    mode: String,
    offset: u64,
    device: String,
    mapping: String,
}

fn parse_d(out: &str) -> (String, Vec<Row>, String) {
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() > 3, "short output:\n{out}");
    assert_eq!(
        lines[1],
        "Address           Kbytes Mode  Offset           Device    Mapping"
    );
    let rows = lines[2..lines.len() - 1]
        .iter()
        .map(|l| Row {
            start: u64::from_str_radix(&l[0..16], 16).expect("address"),
            kbytes: l[17..24].trim().parse().expect("kbytes"),
            mode: l[25..30].to_string(),
            offset: u64::from_str_radix(&l[31..47], 16).expect("offset"),
            device: l[48..57].to_string(),
            mapping: l[58..].to_string(),
        })
        .collect();
    (
        lines[0].to_string(),
        rows,
        lines[lines.len() - 1].to_string(),
    )
}

/// The mapping column procps would print for a live region (without -p).
fn expected_mapping(m: &MapsLine) -> String {
    if let Some(i) = m.name.rfind('/') {
        let base = &m.name[i + 1..];
        return if base.is_empty() {
            "/".into()
        } else {
            base.into()
        };
    }
    if m.name.starts_with("[stack") {
        "  [ stack ]".into()
    } else {
        "  [ anon ]".into()
    }
}

/// Checks every live region against the core's rows. `exact_perms`: the
/// kernel records `rwx` as they were; gcore marks every dumped mapping
/// readable (even PROT_NONE ones) and omits mappings it did not dump, which
/// pmap then lists from NT_FILE with `???`.
fn compare(live: &[MapsLine], rows: &[Row], exact_perms: bool) {
    let mut matched = 0;
    for m in live {
        let Some(row) = rows.iter().find(|r| r.start == m.start) else {
            // gcore does not dump the kernel's [vvar] pages.
            assert!(
                !exact_perms && m.name.starts_with("[vvar"),
                "live region {m:?} is missing from the core"
            );
            continue;
        };
        matched += 1;
        assert_eq!(row.kbytes * 1024, m.end - m.start, "size of {m:?}");
        assert_eq!(row.mapping, expected_mapping(m), "name of {m:?}");
        assert_eq!(row.device, "---:-----", "device is not in a core");
        if m.name.starts_with('/') {
            assert_eq!(row.offset, m.offset, "file offset of {m:?}");
        }
        if m.name == "[vsyscall]" {
            continue; // gdb reports it r-x; the kernel --x.
        }
        if row.mode.starts_with("???") {
            assert!(!exact_perms, "kernel cores record every mapping: {m:?}");
            assert!(
                m.name.starts_with('/'),
                "only file mappings may lack perms: {m:?}"
            );
        } else if exact_perms {
            assert_eq!(&row.mode[..3], &m.perms[..3], "perms of {m:?}");
        } else {
            assert_eq!(&row.mode[1..3], &m.perms[1..3], "write/exec perms of {m:?}");
        }
        if m.name.starts_with("/SYSV") {
            assert_eq!(&row.mode[3..4], "s", "SysV shm is shared: {m:?}");
        }
    }
    assert!(matched + 3 >= live.len());
    assert!(
        rows.len() <= live.len(),
        "the core has regions the process did not have"
    );
}

fn check_core(core: &Path, w: &Workload, live: &[MapsLine], kernel: bool) {
    let (out, err, code) = run_pmap([Path::new("-d"), core]);
    assert_eq!((code, err.as_str()), (0, ""), "pmap -d {}", core.display());
    let (header, rows, footer) = parse_d(&out);
    let prefix = format!("core '{}' of {}:   ", core.display(), w.pid());
    assert!(header.starts_with(&prefix), "header {header:?}");
    assert!(header.contains("views_workload"), "command in {header:?}");
    // The arguments too, as the live header has them (gcore's NT_PRPSINFO
    // holds only argv[0]; pmap reads argv from the dumped stack). The
    // workload's argument is the directory the core is written in.
    let dir = core.parent().expect("the core's directory");
    let command = format!(
        "{} {}",
        workload_bin("views_workload").display(),
        dir.display()
    );
    assert_eq!(&header[prefix.len()..], command, "{header:?}");
    compare(live, &rows, kernel);
    let mapped: u64 = rows.iter().map(|r| r.kbytes).sum();
    assert!(
        footer.starts_with(&format!("mapped: {mapped}K ")),
        "{footer}"
    );

    // The named regions the workload made are where it said.
    let at = |key: &str| {
        let a = w.addr(key);
        rows.iter()
            .find(|r| r.start == a)
            .unwrap_or_else(|| panic!("no region at {key}={a:#x}"))
    };
    assert_eq!(at("file_private").mapping, "mapped file.dat");
    assert_eq!(at("file_shared").mapping, "mapped file.dat");
    assert_eq!(at("memfd").mapping, "memfd:views-memfd (deleted)");
    assert_eq!(at("shm").mapping, "SYSV00000000 (deleted)");
    assert_eq!(at("anon").kbytes, 1024);
    assert_eq!(at("reserve").kbytes, 2048);
    if kernel {
        assert_eq!(at("reserve").mode, "-----");
    }

    // -x: sizes as in -d, the dumped column never above the size.
    let (out, _, code) = run_pmap([Path::new("-x"), core]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[1], "Address           Kbytes  Dumped Mode  Mapping");
    let mut dumped_total = 0;
    for (l, r) in lines[2..lines.len() - 2].iter().zip(&rows) {
        let size: u64 = l[17..24].trim().parse().expect("kbytes");
        let dumped: u64 = l[25..32].trim().parse().expect("dumped");
        assert_eq!(size, r.kbytes);
        assert!(dumped <= size, "{l}");
        dumped_total += dumped;
    }
    // The workload wrote all of its 1 MiB anonymous region: it is dumped.
    let anon = lines
        .iter()
        .find(|l| l.starts_with(&format!("{:016x}", w.addr("anon"))))
        .expect("anon row in -x");
    assert_eq!(anon[25..32].trim(), "1024", "{anon}");
    assert_eq!(
        lines[lines.len() - 1],
        format!("total kB {mapped:>15} {dumped_total:>7}")
    );

    // --json: the same process, threads and regions.
    let (out, _, code) = run_pmap([Path::new("--json"), core]);
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(doc["source"], "core");
    assert_eq!(doc["pid"], w.pid());
    let tids: Vec<u64> = doc["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .map(|t| t["tid"].as_u64().expect("tid"))
        .collect();
    assert!(
        tids.contains(&u64::from(w.pid())),
        "main thread in {tids:?}"
    );
    for t in w.get("tids").split(',') {
        assert!(
            tids.contains(&t.parse().expect("tid")),
            "thread {t} in {tids:?}"
        );
    }
    let regions = doc["regions"].as_array().expect("regions");
    assert_eq!(regions.len(), rows.len());
    assert_eq!(regions[0]["address"], format!("{:#x}", rows[0].start));
    assert_eq!(doc["totals"]["size_kb"], mapped);
}

#[test]
fn gcore_core_matches_the_live_map() {
    let dir = TempDir::new("gcore");
    let w = start_workload(&dir.0, false);
    w.stop();
    let live = read_maps(w.pid());
    let prefix = dir.0.join("g");
    let st = Command::new(pmap_tests::tool("gcore", "gdb"))
        .arg("-o")
        .arg(&prefix)
        .arg(w.pid().to_string())
        .output()
        .expect("run gcore");
    assert!(st.status.success(), "gcore failed: {st:?}");
    // gcore detaches; the process must not have moved meanwhile.
    let core = PathBuf::from(format!("{}.{}", prefix.display(), w.pid()));
    check_core(&core, &w, &live, false);
}

/// Sets `kernel.core_pattern` for the test and puts the old one back when
/// dropped, also when the test fails.
struct CorePattern {
    old: String,
}

const CORE_PATTERN: &str = "/proc/sys/kernel/core_pattern";

impl CorePattern {
    /// Panics when the pattern cannot be set: the test needs root (as
    /// `cargo xtask test` runs), and without it would check nothing.
    fn set(pattern: &str) -> CorePattern {
        let old = std::fs::read_to_string(CORE_PATTERN).expect("read core_pattern");
        if let Err(e) = std::fs::write(CORE_PATTERN, pattern) {
            panic!(
                "cannot set {CORE_PATTERN} ({e}): this test needs root to have the kernel \
                 write a core where it can find it; run it as root (`cargo xtask test` must)"
            );
        }
        CorePattern { old }
    }
}

impl Drop for CorePattern {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(CORE_PATTERN, self.old.trim_end()) {
            eprintln!("could not restore {CORE_PATTERN} to {:?}: {e}", self.old);
        }
    }
}

#[test]
fn kernel_core_matches_the_live_map() {
    let dir = TempDir::new("kcore");
    let _pattern = CorePattern::set(&format!("{}/core.%p", dir.0.display()));
    let mut w = start_workload(&dir.0, true);
    w.stop();
    let live = read_maps(w.pid());
    // SIGQUIT stays pending while stopped; SIGCONT lets it dump at once,
    // with the map it had when we read it.
    signal(w.pid(), libc::SIGQUIT);
    signal(w.pid(), libc::SIGCONT);
    let status = w.child.wait().expect("wait for the workload");
    assert!(status.core_dumped(), "no core dumped: {status:?}");
    let core = dir.0.join(format!("core.{}", w.pid()));
    check_core(&core, &w, &live, true);

    // --names: thread stacks from NT_PRSTATUS stack pointers, their guards,
    // memfd and SysV shm from NT_FILE (a core has no shm id).
    let (out, err, code) = run_pmap([std::ffi::OsStr::new("--names"), core.as_os_str()]);
    assert_eq!((code, err.as_str()), (0, ""));
    let row = |a: u64| {
        out.lines()
            .find(|l| l.starts_with(&format!("{a:016x}")))
            .unwrap_or_else(|| panic!("no row at {a:#x}:\n{out}"))
    };
    assert!(
        row(w.addr("memfd")).ends_with(" [ memfd:views-memfd ]"),
        "{out}"
    );
    assert!(
        row(w.addr("shm")).ends_with(" [ shm key=0x00000000 ]"),
        "{out}"
    );
    for tid in w
        .get("tids")
        .split(',')
        .chain([w.pid().to_string().as_str()])
    {
        let stack = out
            .lines()
            .find(|l| l.ends_with(&format!(" [ stack tid={tid} ]")))
            .unwrap_or_else(|| panic!("no stack for thread {tid}:\n{out}"));
        let start = u64::from_str_radix(&stack[..16], 16).expect("address");
        let region = live.iter().find(|m| m.start == start).expect("live region");
        if tid == w.pid().to_string() {
            assert_eq!(region.name, "[stack]");
        } else {
            assert_eq!(region.end - region.start, 256 * 1024, "{stack}");
            let guard = live.iter().find(|m| m.end == start).expect("guard");
            assert!(
                row(guard.start).ends_with(&format!(" [ stack guard tid={tid} ]")),
                "{out}"
            );
        }
    }
}

/// Copies `src` to `dir/name`, then applies `edit` to the bytes.
fn variant(dir: &Path, src: &Path, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(src).expect("read core");
    edit(&mut bytes);
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write variant");
    p
}

#[test]
fn bad_core_files_give_one_line_errors_and_others_still_print() {
    let dir = TempDir::new("badcore");
    let w = start_workload(&dir.0, false);
    w.stop();
    let prefix = dir.0.join("g");
    let st = Command::new(pmap_tests::tool("gcore", "gdb"))
        .arg("-o")
        .arg(&prefix)
        .arg(w.pid().to_string())
        .output()
        .expect("run gcore");
    assert!(st.status.success(), "gcore failed: {st:?}");
    let good = PathBuf::from(format!("{}.{}", prefix.display(), w.pid()));
    let len = std::fs::metadata(&good).expect("core size").len() as usize;

    let cases: Vec<(PathBuf, &str)> = vec![
        (
            variant(&dir.0, &good, "header-cut", |b| b.truncate(40)),
            "truncated core file",
        ),
        (
            variant(&dir.0, &good, "phdrs-cut", |b| b.truncate(200)),
            "truncated core file",
        ),
        (
            variant(&dir.0, &good, "data-cut", |b| b.truncate(len - 4096)),
            "truncated core file",
        ),
        (
            variant(&dir.0, &good, "text", |b| *b = b"hello\n".to_vec()),
            "not an ELF file",
        ),
        (
            variant(&dir.0, &good, "empty", Vec::clear),
            "not an ELF file",
        ),
        (
            variant(&dir.0, &good, "exec", |b| {
                b[16..18].copy_from_slice(&2u16.to_le_bytes())
            }),
            "an ELF executable, not a core file",
        ),
        (
            variant(&dir.0, &good, "aarch64", |b| {
                b[18..20].copy_from_slice(&183u16.to_le_bytes())
            }),
            "a core of aarch64",
        ),
        (
            variant(&dir.0, &good, "elf32", |b| b[4] = 1),
            "a 32-bit ELF file",
        ),
        (
            variant(&dir.0, &good, "bigendian", |b| b[5] = 2),
            "other byte order",
        ),
    ];
    let mut args: Vec<PathBuf> = cases.iter().map(|(p, _)| p.clone()).collect();
    args.insert(3, good.clone());
    let (out, err, code) = run_pmap(&args);
    assert_eq!(code, 1, "exit status with bad arguments");
    assert!(!err.contains("panicked"), "{err}");
    let errs: Vec<&str> = err.lines().collect();
    assert_eq!(errs.len(), cases.len(), "one line per bad file:\n{err}");
    for ((path, what), line) in cases.iter().zip(&errs) {
        assert!(
            line.starts_with(&format!("pmap: {}: ", path.display())) && line.contains(what),
            "expected {what:?} for {}, got {line:?}",
            path.display()
        );
    }
    // The good core among them is printed in full.
    assert!(
        out.starts_with(&format!("core '{}' of {}:", good.display(), w.pid())),
        "{out}"
    );
    assert!(
        out.trim_end()
            .lines()
            .last()
            .expect("footer")
            .starts_with(" total")
    );
}
