//! Names for code addresses: ELF symbols of the mapped file (blazesym,
//! demangled), cached per (file, offset); file:line from DWARF added later
//! by a worker thread.
//!
//! The event loop only does the cheap part: an ELF symbol-table lookup
//! (about 5 ms for a whole run here). DWARF is parsed by the worker: the
//! first parse of a debug build's DWARF took ~150 ms here, long enough for
//! the tracer (which asks the kernel about each call when it processes it)
//! to fall behind and miss short-lived states. Lines arrive in the cache
//! when ready; deltas printed before that show the name without its line.
//!
//! Addresses are turned into (file, file offset) with the region model, so
//! the process need not be alive when the name is wanted, and one cache
//! entry serves every process that maps the same file.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    rc::Rc,
    sync::mpsc::{Receiver, Sender, channel},
    time::{Duration, Instant},
};

use blazesym::symbolize::{
    Input, Symbolized, Symbolizer,
    source::{Elf, Source},
};

use crate::map::region::Region;

/// Work spent on symbolization is bounded: after this much in total, new
/// (uncached) addresses are shown as `module+0xoffset` only.
const BUDGET: Duration = Duration::from_secs(5);

/// Cache key: the file (device, inode) and the offset in it.
type Key = (u32, u32, u64, u64);

/// A DWARF request for the worker: key, file, offset to look up.
type Request = (Key, PathBuf, u64);

#[derive(Clone, Debug)]
struct Entry {
    /// `function+0xoff [module]` (what call sites are counted under).
    base: Rc<str>,
    /// The same with ` (file.rs:12)` once the worker found the line.
    full: Option<Rc<str>>,
}

pub struct Symbols {
    inner: Symbolizer,
    cache: HashMap<Key, Entry>,
    spent: Duration,
    lookups: u64,
    /// Lines received from the worker so far.
    lines_found: u64,
    lines_to: Option<Sender<Request>>,
    lines_from: Option<Receiver<(Key, String)>>,
}

impl std::fmt::Debug for Symbols {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Symbols")
            .field("cached", &self.cache.len())
            .field("spent", &self.spent)
            .finish()
    }
}

/// The last path component of a region's name (`libc.so.6`).
pub fn module_name(r: &Region) -> String {
    let name = String::from_utf8_lossy(&r.name);
    name.rsplit('/').next().unwrap_or(&name).to_string()
}

/// The worker: answers DWARF line requests until the tracer drops its end.
fn line_worker(requests: Receiver<Request>, answers: Sender<(Key, String)>) {
    let sym = Symbolizer::builder()
        .enable_code_info(true)
        .enable_inlined_fns(false)
        .enable_demangling(true)
        .build();
    for (key, path, off) in requests {
        let src = Source::Elf(Elf::new(path));
        let Ok(Symbolized::Sym(found)) = sym.symbolize_single(&src, Input::FileOffset(off)) else {
            continue;
        };
        let Some(ci) = &found.code_info else {
            continue;
        };
        let file = Path::new(&ci.file);
        let file = file.file_name().map_or(file, Path::new);
        let line = match ci.line {
            Some(line) => format!("{}:{line}", file.display()),
            None => file.display().to_string(),
        };
        if answers.send((key, line)).is_err() {
            return;
        }
    }
}

impl Symbols {
    pub fn new() -> Symbols {
        let (req_tx, req_rx) = channel();
        let (ans_tx, ans_rx) = channel();
        // Without the worker, names just have no lines.
        let started = std::thread::Builder::new()
            .name("pmap-symbols".into())
            .spawn(move || line_worker(req_rx, ans_tx))
            .is_ok();
        Symbols {
            inner: Symbolizer::builder()
                .enable_code_info(false)
                .enable_inlined_fns(false)
                .enable_demangling(true)
                .build(),
            cache: HashMap::new(),
            spent: Duration::ZERO,
            lookups: 0,
            lines_found: 0,
            lines_to: started.then_some(req_tx),
            lines_from: started.then_some(ans_rx),
        }
    }

    /// Time spent in symbolization on the event loop so far, lookups, and
    /// distinct addresses.
    pub fn cost(&self) -> (Duration, u64, usize) {
        (self.spent, self.lookups, self.cache.len())
    }

    /// Lines the worker has found so far (names made before a new one
    /// arrived may lack their line).
    pub fn lines_found(&mut self) -> u64 {
        self.take_lines();
        self.lines_found
    }

    /// Takes the lines the worker has found so far.
    fn take_lines(&mut self) {
        let Some(rx) = &self.lines_from else { return };
        while let Ok((key, line)) = rx.try_recv() {
            self.lines_found += 1;
            if let Some(e) = self.cache.get_mut(&key) {
                let base = &*e.base;
                // `name+0x1 [module]` -> `name+0x1 (file:12) [module]`
                let full = match base.rfind(" [") {
                    Some(i) => format!("{} ({line}){}", &base[..i], &base[i..]),
                    None => format!("{base} ({line})"),
                };
                e.full = Some(full.into());
            }
        }
    }

    /// `function+0xoff [module]` for `addr` in file-backed region `r` of
    /// process `pid`, with ` (file.rs:12)` when `with_line` and the line is
    /// known. `ret` marks a return address: the call instruction before it
    /// is looked up, so the line is the call's.
    pub fn name(&mut self, pid: u32, r: &Region, addr: u64, ret: bool, with_line: bool) -> Rc<str> {
        self.lookups += 1;
        self.take_lines();
        let file_off = addr - r.start + r.offset;
        let key = (r.dev_major, r.dev_minor, r.inode, file_off);
        if let Some(e) = self.cache.get(&key) {
            return match (&e.full, with_line) {
                (Some(f), true) => f.clone(),
                _ => e.base.clone(),
            };
        }
        let module = module_name(r);
        let base: Rc<str> = if r.inode == 0 || self.spent > BUDGET {
            format!("{module}+{file_off:#x}").into()
        } else {
            let t0 = Instant::now();
            let path = path_of(pid, r);
            let probe = if ret {
                file_off.saturating_sub(1)
            } else {
                file_off
            };
            let s = self.lookup(&path, probe, ret);
            if let Some(tx) = &self.lines_to {
                let _ = tx.send((key, path, probe));
            }
            self.spent += t0.elapsed();
            match s {
                Some(s) => format!("{s} [{module}]").into(),
                None => format!("{module}+{file_off:#x}").into(),
            }
        };
        self.cache.insert(
            key,
            Entry {
                base: base.clone(),
                full: None,
            },
        );
        base
    }

    fn lookup(&self, path: &Path, file_off: u64, ret: bool) -> Option<String> {
        let mut elf = Elf::new(path);
        elf.debug_syms = false;
        let src = Source::Elf(elf);
        let found = self
            .inner
            .symbolize_single(&src, Input::FileOffset(file_off))
            .ok()?;
        let Symbolized::Sym(sym) = found else {
            return None;
        };
        // Point back at the return address for the offset shown.
        let off = sym.offset + usize::from(ret);
        Some(format!("{}+{off:#x}", sym.name))
    }
}

/// The file behind a region: its path if it still names that file, else
/// the kernel's handle on it (`/proc/PID/map_files/..`, works after the
/// file was deleted or in another mount namespace, while the process lives).
fn path_of(pid: u32, r: &Region) -> PathBuf {
    let name = String::from_utf8_lossy(&r.name).into_owned();
    let p = PathBuf::from(&name);
    let same = std::fs::metadata(&p).is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.ino() == r.inode
    });
    if same {
        return p;
    }
    PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", r.start, r.end))
}
