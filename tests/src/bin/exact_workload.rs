//! exact_workload: fast bursts of memory-map calls that record, after each
//! one, exactly what it did to the map, for the test that `pmap trace`'s
//! deltas are exact.
//!
//! ```text
//! exact_workload --seed N --calls N
//! ```
//!
//! Single-threaded. It sets up (a file to map, buffers), prints `ready` and
//! waits for a line on stdin, so that a tracer can attach first. Then it
//! makes `--calls` calls chosen by the seed: anonymous and file mmaps that
//! merge with their neighbours, MAP_FIXED overlays, partial munmaps,
//! mprotects that split and re-merge or change nothing, mremaps that grow,
//! shrink and move, brk up and down, and madvise calls that split regions
//! without changing what the table prints. After every call it reads its
//! own map with PROCMAP_QUERY (which changes nothing) into buffers made
//! before the first call, so that no allocation adds calls of its own.
//! At the end it prints one JSON line per call on stdout:
//! `{"i":0,"syscall":"mmap","args":[...],"ret":N,"removed":[...],"added":[...]}`
//! where the rows are the kernel's before and after the call, as
//! `pmap trace --json` prints rows.

use std::{
    fs::File,
    io::{BufRead, Write},
    os::fd::AsRawFd,
};

use pmap_tests::rng::Rng as Seeded;

/// The seeded generator, in pages.
struct Rng(Seeded);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n as usize) as u64
    }
}

const PAGE: u64 = 4096;
/// Pages of the window the calls work in.
const WINDOW: u64 = 192;
/// Pages of the file mapped into it.
const FILE_PAGES: u64 = 32;
const MAX_ROWS: usize = 1024;
const NAME_MAX: usize = 256;

/// `struct procmap_query` (include/uapi/linux/fs.h).
#[repr(C)]
#[derive(Default)]
struct ProcmapQuery {
    size: u64,
    query_flags: u64,
    query_addr: u64,
    vma_start: u64,
    vma_end: u64,
    vma_flags: u64,
    vma_page_size: u64,
    vma_offset: u64,
    inode: u64,
    dev_major: u32,
    dev_minor: u32,
    vma_name_size: u32,
    build_id_size: u32,
    vma_name_addr: u64,
    build_id_addr: u64,
}
const PROCMAP_QUERY: u64 = (3 << 30) | (104 << 16) | ((b'f' as u64) << 8) | 17;
const COVERING_OR_NEXT_VMA: u64 = 0x10;

#[derive(Clone, Copy, PartialEq, Eq)]
struct Row {
    start: u64,
    end: u64,
    flags: u64,
    offset: u64,
    inode: u64,
    dev: (u32, u32),
    name_len: usize,
    name: [u8; NAME_MAX],
}

const EMPTY: Row = Row {
    start: 0,
    end: 0,
    flags: 0,
    offset: 0,
    inode: 0,
    dev: (0, 0),
    name_len: 0,
    name: [0; NAME_MAX],
};

/// Every region of this process, by PROCMAP_QUERY, into `rows` (no
/// allocation: `rows` has its room already). `[vsyscall]` is not a VMA and
/// never changes; it is left out, as the calls never touch it.
fn snapshot(maps: &File, rows: &mut Vec<Row>) {
    rows.clear();
    let mut addr = 0u64;
    loop {
        let mut row = EMPTY;
        let mut q = ProcmapQuery {
            size: std::mem::size_of::<ProcmapQuery>() as u64,
            query_flags: COVERING_OR_NEXT_VMA,
            query_addr: addr,
            vma_name_size: NAME_MAX as u32,
            vma_name_addr: row.name.as_mut_ptr() as u64,
            ..Default::default()
        };
        // SAFETY: a correctly sized procmap_query whose name buffer is
        // NAME_MAX bytes and lives across the call.
        let rc = unsafe { libc::ioctl(maps.as_raw_fd(), PROCMAP_QUERY as _, &mut q) };
        if rc != 0 {
            break;
        }
        row.start = q.vma_start;
        row.end = q.vma_end;
        row.flags = q.vma_flags;
        row.offset = q.vma_offset;
        row.inode = q.inode;
        row.dev = (q.dev_major, q.dev_minor);
        row.name_len = (q.vma_name_size as usize).saturating_sub(1);
        assert!(rows.len() < rows.capacity(), "more than {MAX_ROWS} regions");
        rows.push(row);
        addr = q.vma_end;
    }
}

fn write_row(out: &mut Vec<u8>, r: &Row) {
    let flag = |bit: u64, c: char| if r.flags & bit != 0 { c } else { '-' };
    let perms = [
        flag(1, 'r'),
        flag(2, 'w'),
        flag(4, 'x'),
        if r.flags & 8 != 0 { 's' } else { 'p' },
    ];
    let _ = write!(
        out,
        "{{\"start\":\"{:#x}\",\"end\":\"{:#x}\",\"perms\":\"{}{}{}{}\",\"offset\":{},\"dev\":\"{:02x}:{:02x}\",\"inode\":{},\"name\":\"",
        r.start, r.end, perms[0], perms[1], perms[2], perms[3], r.offset, r.dev.0, r.dev.1, r.inode
    );
    for &b in &r.name[..r.name_len] {
        match b {
            b'"' | b'\\' => {
                out.push(b'\\');
                out.push(b);
            }
            0x20..=0x7e => out.push(b),
            _ => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
    }
    out.extend_from_slice(b"\"}");
}

/// Rows in `a` that are not in `b` (both sorted by start).
fn write_missing(out: &mut Vec<u8>, a: &[Row], b: &[Row]) {
    out.push(b'[');
    let mut first = true;
    for r in a {
        if b.binary_search_by_key(&r.start, |x| x.start)
            .is_ok_and(|i| b[i] == *r)
        {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_row(out, r);
    }
    out.push(b']');
}

struct Call {
    name: &'static str,
    args: [u64; 6],
    arity: usize,
    ret: i64,
}

/// One call chosen by `rng` on the window at `base`.
fn call(rng: &mut Rng, base: u64, fd: i32, brk0: u64, alone: bool) -> Option<Call> {
    let page = |n: u64| base + n * PAGE;
    let start = rng.below(WINDOW - 8);
    let len = 1 + rng.below(8);
    let prot = [
        libc::PROT_READ,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::PROT_NONE,
    ][rng.below(3) as usize];
    let sys = |nr: i64, a: [u64; 6]| -> i64 {
        // SAFETY: every call here works on the workload's own window (or
        // the break above its own start), which nothing else uses.
        let r = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
        // The raw return, as the kernel gives it: -errno on failure.
        if r == -1 {
            -i64::from(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            r
        }
    };
    let fixed = (libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    let pick = rng.below(12);
    if !alone && (pick == 8 || pick == 10) {
        return None;
    }
    let (name, nr, args, arity) = match pick {
        0 | 1 => (
            "mmap",
            libc::SYS_mmap,
            [page(start), len * PAGE, prot as u64, fixed, u64::MAX, 0],
            6,
        ),
        2 => {
            // The same file pages at their own place: neighbours merge.
            let off = rng.below(FILE_PAGES - len);
            let flags = if rng.below(4) == 0 {
                libc::MAP_SHARED
            } else {
                libc::MAP_PRIVATE
            };
            let a = [
                page(off),
                len * PAGE,
                libc::PROT_READ as u64,
                (flags | libc::MAP_FIXED) as u64,
                fd as u64,
                off * PAGE,
            ];
            ("mmap", libc::SYS_mmap, a, 6)
        }
        3 | 4 => (
            "munmap",
            libc::SYS_munmap,
            [page(start), len * PAGE, 0, 0, 0, 0],
            2,
        ),
        5 | 6 => (
            "mprotect",
            libc::SYS_mprotect,
            [page(start), len * PAGE, prot as u64, 0, 0, 0],
            3,
        ),
        7 => {
            // Grow, shrink or move a piece to another place in the window.
            let new_len = 1 + rng.below(8);
            let to = page(rng.below(WINDOW - 8));
            let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
            let (flags, to) = if rng.below(2) == 0 {
                (0, 0)
            } else {
                (flags, to)
            };
            (
                "mremap",
                libc::SYS_mremap,
                [page(start), len * PAGE, new_len * PAGE, flags, to, 0],
                5,
            )
        }
        8 => {
            let top = brk0 + rng.below(48) * PAGE + rng.below(PAGE);
            ("brk", libc::SYS_brk, [top, 0, 0, 0, 0, 0], 1)
        }
        9 => {
            let advice = [libc::MADV_DONTFORK, libc::MADV_DOFORK, libc::MADV_DONTNEED]
                [rng.below(3) as usize];
            (
                "madvise",
                libc::SYS_madvise,
                [page(start), len * PAGE, advice as u64, 0, 0, 0],
                3,
            )
        }
        10 => {
            // No address: the kernel picks one, often next to a neighbour
            // it merges with.
            let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
            (
                "mmap",
                libc::SYS_mmap,
                [0, len * PAGE, prot as u64, flags, u64::MAX, 0],
                6,
            )
        }
        _ => (
            "mmap",
            libc::SYS_mmap,
            [
                page(start),
                len * PAGE,
                libc::PROT_READ as u64,
                fixed,
                u64::MAX,
                0,
            ],
            6,
        ),
    };
    let ret = sys(nr, args);
    Some(Call {
        name,
        args,
        arity,
        ret,
    })
}

/// What one thread works on and records into, all made before the calls.
struct Lane {
    seed: u64,
    calls: u64,
    base: u64,
    /// Threaded runs leave out what could reach another lane's window:
    /// brk, and mmaps where the kernel chooses the address.
    alone: bool,
    fd: i32,
    brk0: u64,
    maps: File,
    before: Vec<Row>,
    after: Vec<Row>,
    out: Vec<u8>,
}

impl Lane {
    fn new(seed: u64, calls: u64, alone: bool, fd: i32, brk0: u64) -> Lane {
        // Touched now (zeroed), so the calls fault in no new heap pages
        // (faults change no region, but keep the run even).
        let mut out: Vec<u8> = vec![0; 32 << 20];
        out.clear();
        Lane {
            seed,
            calls,
            base: 0,
            alone,
            fd,
            brk0,
            maps: File::open("/proc/self/maps").expect("opening /proc/self/maps"),
            before: Vec::with_capacity(MAX_ROWS),
            after: Vec::with_capacity(MAX_ROWS),
            out,
        }
    }

    /// This lane's part of the map: all of it alone, else its window.
    fn snapshot(&mut self, into_after: bool) {
        let rows = if into_after {
            &mut self.after
        } else {
            &mut self.before
        };
        snapshot(&self.maps, rows);
        if !self.alone {
            let (lo, hi) = (self.base, self.base + WINDOW * PAGE);
            rows.retain(|r| r.start < hi && r.end > lo);
        }
    }

    fn run(&mut self) {
        let mut rng = Rng(Seeded::new(self.seed));
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        self.snapshot(false);
        for i in 0..self.calls {
            let c = loop {
                let c = call(&mut rng, self.base, self.fd, self.brk0, self.alone);
                if let Some(c) = c {
                    break c;
                }
            };
            self.snapshot(true);
            let out = &mut self.out;
            let _ = write!(
                out,
                "{{\"i\":{i},\"tid\":{tid},\"syscall\":\"{}\",\"args\":[",
                c.name
            );
            for (k, a) in c.args[..c.arity].iter().enumerate() {
                let _ = write!(out, "{}{a}", if k > 0 { "," } else { "" });
            }
            let _ = write!(out, "],\"ret\":{},\"removed\":", c.ret);
            write_missing(out, &self.before, &self.after);
            out.extend_from_slice(b",\"added\":");
            write_missing(out, &self.after, &self.before);
            out.extend_from_slice(b"}\n");
            assert!(out.len() < out.capacity(), "output buffer full");
            std::mem::swap(&mut self.before, &mut self.after);
            // A burst of 20 calls, then a short pause: batches of every size.
            if i % 20 == 19 {
                std::thread::sleep(std::time::Duration::from_micros(300));
            }
        }
    }
}

fn main() {
    let mut seed = 1u64;
    let mut calls = 1000u64;
    let mut threads = 1u64;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let v = it.next().and_then(|v| v.parse().ok());
        match (a.as_str(), v) {
            ("--seed", Some(v)) => seed = v,
            ("--calls", Some(v)) => calls = v,
            ("--threads", Some(v)) if v > 0 => threads = v,
            _ => {
                eprintln!("usage: exact_workload --seed N --calls N [--threads N]");
                std::process::exit(2);
            }
        }
    }
    let path = std::env::temp_dir().join(format!("exact_workload.{}", std::process::id()));
    let file = File::create(&path).expect("creating the file to map");
    file.set_len(FILE_PAGES * PAGE).expect("sizing the file");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("reopening the file");
    // SAFETY: brk(0) only reports the break.
    let brk0 = unsafe { libc::syscall(libc::SYS_brk, 0u64) } as u64;
    let alone = threads == 1;
    let mut lanes: Vec<Lane> = (0..threads)
        .map(|t| Lane::new(seed * 1000 + t, calls, alone, file.as_raw_fd(), brk0))
        .collect();
    // Windows made after every buffer, so that no buffer is inside one,
    // and held until the threads (and their stacks) exist: then released,
    // so only these calls use them. A gap of WINDOW pages that no call
    // touches keeps lanes from merging.
    let span = (2 * WINDOW * PAGE * threads) as usize;
    // SAFETY: a fresh anonymous reservation, released before the calls.
    let base = unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            span,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        p as u64
    };
    for (t, lane) in lanes.iter_mut().enumerate() {
        lane.base = base + 2 * WINDOW * PAGE * t as u64;
    }
    let go = std::sync::Barrier::new(lanes.len());
    std::thread::scope(|scope| {
        let mut lanes = lanes.iter_mut();
        let first = lanes.next().expect("one lane");
        for lane in lanes {
            let go = &go;
            scope.spawn(move || {
                go.wait();
                lane.run();
            });
        }
        // SAFETY: the reservation made above, which nothing else uses.
        unsafe { libc::munmap(base as *mut libc::c_void, span) };
        println!("ready");
        std::io::stdout().flush().expect("stdout");
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        go.wait();
        first.run();
    });
    // Back to the break malloc knows, before anything allocates again.
    // SAFETY: brk0 is the break as it was before the calls.
    unsafe { libc::syscall(libc::SYS_brk, brk0) };
    let _ = std::fs::remove_file(&path);
    let mut stdout = std::io::stdout().lock();
    for lane in &lanes {
        stdout.write_all(&lane.out).expect("stdout");
    }
}
