//! A process holding N distinct memory mappings, for benchmarks and tests of
//! `pmap` on large maps.
//!
//! Usage: `many_maps [N] [--file] [--churn RATE]` (N defaults to 60,000).
//!
//! Without `--file`: one anonymous reservation of N pages whose pages get
//! alternating protections (r-- / rw-), so the kernel cannot merge neighbours.
//! With `--file`: N one-page mappings of a scratch file at offsets that are not
//! contiguous with their neighbours, so every line carries a path name.
//!
//! Prints `ready N` once the mappings exist (N = regions in /proc/self/maps),
//! then sleeps until killed. `vm.max_map_count` (65,530 by default) bounds N.
//!
//! `--churn RATE` (anonymous layout only): after `ready`, wait for a line on
//! stdin, then make RATE changes per second until killed, each an mprotect
//! of one writable page to read-only (its region merges with both
//! neighbours: 3 regions -> 1) followed later by its undo (1 -> 3), so a
//! tracer sees steady traffic on a map that stays about N regions large.
//!
//! `--exec-on-go PROGRAM`: after `ready`, wait for a line on stdin, then
//! execve PROGRAM with the argument `1000` (e.g. `/usr/bin/sleep`): the map
//! is replaced at a moment the test chooses.

use std::io::{BufRead, Write};
use std::os::fd::AsRawFd;

const DEFAULT_N: usize = 60_000;

fn main() {
    if let Err(e) = run() {
        eprintln!("many_maps: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut n = DEFAULT_N;
    let mut file = false;
    let mut churn: Option<f64> = None;
    let mut exec_on_go: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--file" => file = true,
            "--exec-on-go" => {
                exec_on_go = Some(args.next().ok_or("--exec-on-go needs a program")?);
            }
            "--churn" => {
                let v = args
                    .next()
                    .ok_or("--churn needs a rate (changes per second)")?;
                let r: f64 = v
                    .parse()
                    .map_err(|e| format!("bad --churn rate {v:?}: {e}"))?;
                if r.is_nan() || r <= 0.0 {
                    return Err(format!("--churn rate must be positive, not {v}"));
                }
                churn = Some(r);
            }
            "-h" | "--help" => {
                println!(
                    "usage: many_maps [N] [--file] [--churn RATE]   (N defaults to {DEFAULT_N})"
                );
                return Ok(());
            }
            s => {
                n = s
                    .replace('_', "")
                    .parse()
                    .map_err(|e| format!("bad mapping count {s:?}: {e}"))?;
            }
        }
    }
    if n == 0 {
        return Err("the mapping count must be at least 1".into());
    }
    if file && churn.is_some() {
        return Err("--churn works on the anonymous layout only, not with --file".into());
    }
    let base = if file {
        map_file_pages(n)?;
        std::ptr::null_mut()
    } else {
        map_anon_alternating(n)?
    };
    let regions = std::fs::read("/proc/self/maps")
        .map_err(|e| format!("reading /proc/self/maps: {e}"))?
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {regions}").map_err(|e| format!("writing to stdout: {e}"))?;
    out.flush().map_err(|e| format!("flushing stdout: {e}"))?;
    drop(out);
    if let Some(program) = exec_on_go {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("waiting for the go line on stdin: {e}"))?;
        let err = std::os::unix::process::CommandExt::exec(
            std::process::Command::new(&program).arg("1000"),
        );
        return Err(format!("execve {program}: {err}"));
    }
    if let Some(rate) = churn {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("waiting for the go line on stdin: {e}"))?;
        return churn_forever(base, n, rate);
    }
    loop {
        // SAFETY: pause() only blocks until a signal arrives.
        unsafe { libc::pause() };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).unwrap_or(4096)
}

fn os_err(what: &str) -> String {
    let e = std::io::Error::last_os_error();
    let hint = if e.raw_os_error() == Some(libc::ENOMEM) {
        " (vm.max_map_count reached? see /proc/sys/vm/max_map_count)"
    } else {
        ""
    };
    format!("{what}: {e}{hint}")
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// RATE changes per second on an absolute schedule: change k makes the
/// writable page 2j+1 read-only when k is even and writable again when odd
/// (j = k/2 cycling over the pages), so regions merge and split in turn.
fn churn_forever(base: *mut libc::c_void, n: usize, rate: f64) -> Result<(), String> {
    let page = page_size();
    let writable = n / 2;
    if writable < 2 {
        return Err("--churn needs at least 4 mappings".into());
    }
    let start = monotonic_ns();
    let period = 1e9 / rate;
    let mut k: u64 = 0;
    loop {
        let due = start + (k as f64 * period) as u64;
        let now = monotonic_ns();
        if now < due {
            let d = due - now;
            std::thread::sleep(std::time::Duration::from_nanos(d));
        }
        let j = (k / 2) as usize % (writable - 1);
        let i = 2 * j + 1;
        let prot = if k.is_multiple_of(2) {
            libc::PROT_READ
        } else {
            libc::PROT_READ | libc::PROT_WRITE
        };
        // SAFETY: page i lies inside the reservation made by
        // map_anon_alternating, which this process never frees.
        let rc = unsafe { libc::mprotect(base.cast::<u8>().add(i * page).cast(), page, prot) };
        if rc != 0 {
            return Err(os_err(&format!("churn mprotect of page {i}")));
        }
        k += 1;
    }
}

/// One reservation, then every other page made writable: N regions.
/// Returns the reservation's address.
fn map_anon_alternating(n: usize) -> Result<*mut libc::c_void, String> {
    let page = page_size();
    let len = n.checked_mul(page).ok_or("mapping count too large")?;
    // SAFETY: a fresh anonymous mapping at an address the kernel chooses;
    // nothing else refers to it.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(os_err(&format!("mmap of {len} bytes")));
    }
    for i in (1..n).step_by(2) {
        // SAFETY: the page lies inside the mapping made above, which this
        // process owns and never frees.
        let rc = unsafe {
            libc::mprotect(
                base.cast::<u8>().add(i * page).cast(),
                page,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if rc != 0 {
            return Err(os_err(&format!("mprotect of page {i} of {n}")));
        }
    }
    Ok(base)
}

/// N one-page mappings of a scratch file; page i maps file page (i*2 % pages)
/// so neighbouring offsets never follow on, and the kernel cannot merge them.
fn map_file_pages(n: usize) -> Result<(), String> {
    let page = page_size();
    let pages = 64usize;
    let path = std::env::temp_dir().join(format!("many_maps.{}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    f.set_len((pages * page) as u64)
        .map_err(|e| format!("sizing {}: {e}", path.display()))?;
    // The mappings keep the file alive; the name stays readable in the maps
    // (with " (deleted)" appended by the kernel) and no litter is left behind.
    let _ = std::fs::remove_file(&path);
    let len = n.checked_mul(page).ok_or("mapping count too large")?;
    // SAFETY: reserve an address range to place the file pages into.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(os_err(&format!("reserving {len} bytes")));
    }
    for i in 0..n {
        let off = ((i * 2) % pages) * page;
        // SAFETY: MAP_FIXED over our own reservation, page by page.
        let p = unsafe {
            libc::mmap(
                base.cast::<u8>().add(i * page).cast(),
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_FIXED,
                f.as_raw_fd(),
                off as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(os_err(&format!("mmap of file page {i} of {n}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The regions of /proc/self/maps inside [lo, hi), as (start, end, perms, offset).
    fn regions_in(lo: usize, hi: usize) -> Vec<(usize, usize, String, u64)> {
        let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
        maps.lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let (s, e) = f.next()?.split_once('-')?;
                let s = usize::from_str_radix(s, 16).ok()?;
                let e = usize::from_str_radix(e, 16).ok()?;
                let perms = f.next()?.to_string();
                let off = u64::from_str_radix(f.next()?, 16).ok()?;
                (s >= lo && e <= hi).then_some((s, e, perms, off))
            })
            .collect()
    }

    #[test]
    fn anonymous_layout_gives_one_region_per_page() {
        let n = 301;
        let base = map_anon_alternating(n).expect("map") as usize;
        let page = page_size();
        let r = regions_in(base, base + n * page);
        assert_eq!(r.len(), n, "every page must be its own region");
        for (i, (s, e, perms, _)) in r.iter().enumerate() {
            assert_eq!(e - s, page);
            let want = if i % 2 == 0 { "r--p" } else { "rw-p" };
            assert_eq!(perms, want, "region {i}");
        }
    }

    #[test]
    fn file_layout_gives_one_region_per_page() {
        let n = 100;
        map_file_pages(n).expect("map");
        let page = page_size() as u64;
        let tag = format!("/many_maps.{} (deleted)", std::process::id());
        let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
        // (start, end, offset) of this process's scratch-file pages.
        let pages: Vec<(u64, u64, u64)> = maps
            .lines()
            .filter(|l| l.ends_with(&tag))
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let (s, e) = f.next()?.split_once('-')?;
                let _perms = f.next()?;
                let off = u64::from_str_radix(f.next()?, 16).ok()?;
                Some((
                    u64::from_str_radix(s, 16).ok()?,
                    u64::from_str_radix(e, 16).ok()?,
                    off,
                ))
            })
            .collect();
        assert_eq!(pages.len(), n, "every page must be its own region");
        for w in pages.windows(2) {
            assert_eq!(w[0].1 - w[0].0, page);
            // Adjacent pages never have contiguous offsets, so they cannot merge.
            if w[0].1 == w[1].0 {
                assert_ne!(w[0].2 + page, w[1].2);
            }
        }
    }
}
