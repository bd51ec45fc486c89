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
//!
//! Distributions strip their libraries to the exported symbols: libc's
//! internal functions (`sysmalloc`, `_int_malloc`) have no name there. A
//! `-dbg` package installs the full symbol table in a separate debug file
//! (`/usr/lib/debug/.build-id/xx/yyyy.debug`); when there is one, names
//! come from its symbol table (not its DWARF, which is the worker's:
//! parsing it would stall the event loop). Without one, the stripped
//! file's own symbols, and `libc.so.6+0x...` where it has none.

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

use crate::{
    map::region::Region,
    source::elf_module::{DEFAULT_DEBUG_DIR, ElfModule, path_of},
};

/// Work spent on symbolization is bounded: after this much in total, new
/// (uncached) addresses are shown as `module+0xoffset` only.
const BUDGET: Duration = Duration::from_secs(5);

/// Cache key: the file (device, inode) and the offset in it.
type Key = (u32, u32, u64, u64);

/// A DWARF request for the worker: key, file, offset to look up.
type Request = (Key, PathBuf, u64);

/// A file (device, inode).
type FileKey = (u32, u32, u64);

/// Where a file's full symbol table is: its separate debug file, with the
/// file's segments to turn file offsets into the addresses it uses.
#[derive(Debug)]
struct DebugFile {
    path: PathBuf,
    module: ElfModule,
}

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
    /// Directories searched for separate debug files (`--debug-dir`).
    debug_dirs: Vec<PathBuf>,
    /// Each file's debug file, or `None` when it has none.
    debug_files: HashMap<FileKey, Option<DebugFile>>,
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
fn line_worker(requests: Receiver<Request>, answers: Sender<(Key, String)>, dirs: Vec<PathBuf>) {
    let sym = Symbolizer::builder()
        .set_debug_dirs(Some(dirs))
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
    /// Looks for debug files in the distributions' place.
    pub fn new() -> Symbols {
        Symbols::with_debug_dirs(vec![PathBuf::from(DEFAULT_DEBUG_DIR)])
    }

    /// Looks for debug files in `debug_dirs` (none: names only from the
    /// mapped files themselves).
    pub fn with_debug_dirs(debug_dirs: Vec<PathBuf>) -> Symbols {
        let (req_tx, req_rx) = channel();
        let (ans_tx, ans_rx) = channel();
        let dirs = debug_dirs.clone();
        // Without the worker, names just have no lines.
        let started = std::thread::Builder::new()
            .name("pmap-symbols".into())
            .spawn(move || line_worker(req_rx, ans_tx, dirs))
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
            debug_dirs,
            debug_files: HashMap::new(),
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
            let s = self
                .lookup_debug(
                    r.perms.executable(),
                    (r.dev_major, r.dev_minor, r.inode),
                    &path,
                    probe,
                    ret,
                )
                .or_else(|| self.lookup(&path, probe, ret));
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

    /// The name from `path`'s separate debug file, if it has one.
    fn lookup_debug(
        &mut self,
        exec: bool,
        file: FileKey,
        path: &Path,
        file_off: u64,
        ret: bool,
    ) -> Option<String> {
        let dirs = &self.debug_dirs;
        let debug = self.debug_files.entry(file).or_insert_with(|| {
            let module = ElfModule::read(path, false).ok()?;
            let found = module.debug_file(path, dirs)?;
            Some(DebugFile {
                path: found,
                module,
            })
        });
        let debug = debug.as_ref()?;
        // The debug file's sections hold no bytes (SHT_NOBITS), so file
        // offsets mean nothing in it: look up the linked address.
        let addr = debug.module.address_of(file_off, exec)?;
        symbolize(&self.inner, &debug.path, Input::VirtOffset(addr), ret)
    }

    fn lookup(&self, path: &Path, file_off: u64, ret: bool) -> Option<String> {
        symbolize(&self.inner, path, Input::FileOffset(file_off), ret)
    }
}

/// `function+0xoff` from `path`'s ELF symbols (not its DWARF).
fn symbolize(inner: &Symbolizer, path: &Path, input: Input<u64>, ret: bool) -> Option<String> {
    {
        let mut elf = Elf::new(path);
        elf.debug_syms = false;
        let src = Source::Elf(elf);
        let found = inner.symbolize_single(&src, input).ok()?;
        let Symbolized::Sym(sym) = found else {
            return None;
        };
        // Point back at the return address for the offset shown.
        let off = sym.offset + usize::from(ret);
        Some(format!("{}+{off:#x}", sym.name))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use object::{Object, ObjectSegment, ObjectSymbol};

    use super::*;

    const LIBC: &str = "/lib/x86_64-linux-gnu/libc.so.6";

    /// libc's whole text as one region, and the file offset of `sysmalloc`
    /// (an internal function: not in the stripped libc's symbols), from
    /// the debug file.
    fn libc_and_sysmalloc() -> (Region, u64) {
        let meta = std::fs::metadata(LIBC).expect("Debian's libc");
        let module = ElfModule::read(Path::new(LIBC), false).expect("libc is ELF");
        let debug = module
            .debug_file(Path::new(LIBC), &[PathBuf::from(DEFAULT_DEBUG_DIR)])
            .expect("libc's debug file: install libc6-dbg (`cargo xtask deps` does)");
        let data = std::fs::read(&debug).expect("read the debug file");
        let dbg = object::File::parse(&*data).expect("the debug file is ELF");
        let addr = dbg
            .symbols()
            .find(|s| s.name() == Ok("sysmalloc"))
            .expect("sysmalloc in libc's debug symbols")
            .address();
        let libc = std::fs::read(LIBC).expect("read libc");
        let elf = object::File::parse(&*libc).expect("libc is ELF");
        let off = elf
            .segments()
            .find_map(|s| {
                let (o, size) = s.file_range();
                (addr >= s.address() && addr < s.address() + size).then(|| o + (addr - s.address()))
            })
            .expect("sysmalloc in a loadable segment");
        let region = Region {
            start: 0x7f00_0000_0000,
            end: 0x7f00_0000_0000 + meta.len().next_multiple_of(4096),
            offset: 0,
            inode: meta.ino(),
            name: LIBC.as_bytes().to_vec(),
            ..Default::default()
        };
        (region, off)
    }

    #[test]
    fn libc_internals_are_named_from_the_debug_file() {
        let (r, off) = libc_and_sysmalloc();
        let mut syms = Symbols::new();
        let name = syms.name(1, &r, r.start + off + 0x10, false, false);
        assert_eq!(&*name, "sysmalloc+0x10 [libc.so.6]");
        // Exported functions still resolve (from the same table).
        let (mmap, _) = exported(&mut syms, &r, "mmap");
        assert!(mmap.starts_with("mmap"), "{mmap}");
    }

    #[test]
    fn without_a_debug_file_internals_are_module_and_offset() {
        let (r, off) = libc_and_sysmalloc();
        let empty = std::env::temp_dir().join(format!("pmap-no-debug-{}", std::process::id()));
        std::fs::create_dir_all(&empty).expect("mkdir");
        let mut syms = Symbols::with_debug_dirs(vec![empty.clone()]);
        let name = syms.name(1, &r, r.start + off + 0x10, false, false);
        // The stripped libc names no internal function: at best the
        // nearest exported one before it, never sysmalloc.
        assert!(!name.contains("sysmalloc"), "{name}");
        let (mmap, _) = exported(&mut syms, &r, "mmap");
        assert!(mmap.starts_with("mmap"), "{mmap}");
        let _ = std::fs::remove_dir_all(&empty);
    }

    /// The name of exported function `f` of libc, looked up at its start.
    fn exported(syms: &mut Symbols, r: &Region, f: &str) -> (String, u64) {
        let libc = std::fs::read(LIBC).expect("read libc");
        let elf = object::File::parse(&*libc).expect("libc is ELF");
        let addr = elf
            .dynamic_symbols()
            .find(|s| s.name() == Ok(f))
            .expect("an exported function")
            .address();
        let module = ElfModule::read(Path::new(LIBC), false).expect("libc is ELF");
        // Exported code lies in the first executable segment, where file
        // offsets and addresses differ by the segment's shift.
        let off = (0..libc.len() as u64)
            .step_by(4096)
            .find_map(|o| {
                module
                    .address_of(o, true)
                    .filter(|&a| a <= addr && addr < a + 4096)
                    .map(|a| o + (addr - a))
            })
            .expect("the function's file offset");
        (
            syms.name(1, r, r.start + off, false, false).to_string(),
            off,
        )
    }
}
