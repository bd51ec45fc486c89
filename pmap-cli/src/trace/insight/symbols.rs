//! Names for code addresses: ELF symbols of the mapped file (blazesym,
//! demangled), cached. DWARF line lookups are off: the first parse of a
//! debug build's DWARF took ~150 ms here, long enough for the tracer (which
//! asks the kernel about each call when it processes it) to fall behind
//! and miss short-lived states; ELF-only costs ~5 ms for a whole run.
//!
//! Addresses are turned into (file, file offset) with the region model, so
//! the process need not be alive when the name is wanted, and one cache
//! entry serves every process that maps the same file.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    rc::Rc,
    time::{Duration, Instant},
};

use blazesym::symbolize::{
    Input, Symbolized, Symbolizer,
    source::{Elf, Source},
};

use crate::region::Region;

/// Work spent on symbolization is bounded: after this much in total, new
/// (uncached) addresses are shown as `module+0xoffset` only.
const BUDGET: Duration = Duration::from_secs(5);

/// Cache key: the file (device, inode) and the offset in it.
type Key = (u32, u32, u64, u64);

pub struct Symbols {
    inner: Symbolizer,
    cache: HashMap<Key, Rc<str>>,
    spent: Duration,
    lookups: u64,
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

impl Symbols {
    pub fn new() -> Symbols {
        Symbols {
            inner: Symbolizer::builder()
                .enable_code_info(false)
                .enable_inlined_fns(false)
                .enable_demangling(true)
                .build(),
            cache: HashMap::new(),
            spent: Duration::ZERO,
            lookups: 0,
        }
    }

    /// Time spent in symbolization so far, and addresses looked up.
    pub fn cost(&self) -> (Duration, u64, usize) {
        (self.spent, self.lookups, self.cache.len())
    }

    /// `function+0xoff (file.rs:12) [module]` for `addr` in file-backed
    /// region `r` of process `pid`. `ret` marks a return address: the call
    /// instruction before it is looked up, so the line is the call's.
    pub fn name(&mut self, pid: u32, r: &Region, addr: u64, ret: bool) -> Rc<str> {
        self.lookups += 1;
        let file_off = addr - r.start + r.offset;
        let key = (r.dev_major, r.dev_minor, r.inode, file_off);
        if let Some(s) = self.cache.get(&key) {
            return s.clone();
        }
        let module = module_name(r);
        let text: Rc<str> = if r.inode == 0 || self.spent > BUDGET {
            format!("{module}+{file_off:#x}").into()
        } else {
            let t0 = Instant::now();
            let path = path_of(pid, r);
            let probe = if ret { file_off - 1 } else { file_off };
            let s = self.lookup(&path, probe, ret);
            self.spent += t0.elapsed();
            match s {
                Some(s) => format!("{s} [{module}]").into(),
                None => format!("{module}+{file_off:#x}").into(),
            }
        };
        self.cache.insert(key, text.clone());
        text
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
        let mut s = format!("{}+{off:#x}", sym.name);
        if let Some(ci) = &sym.code_info {
            let file = Path::new(&ci.file);
            let file = file.file_name().map_or(file, Path::new);
            match ci.line {
                Some(line) => s.push_str(&format!(" ({}:{line})", file.display())),
                None => s.push_str(&format!(" ({})", file.display())),
            }
        }
        Some(s)
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
