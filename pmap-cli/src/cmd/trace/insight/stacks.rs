//! The user stack of a syscall, as the kernel program captured it, checked
//! against the region model and named.
//!
//! `stack[0]` is the syscall instruction, `stack[1]` (with `FLAG_SP_WORD`)
//! the word at the stack pointer: in a leaf libc wrapper, the return
//! address into its caller, which a frame-pointer walk misses when libc
//! has no frame pointers (Debian's has none). The rest is the walk; the
//! kernel program stops it at the first implausible frame pointer, and
//! says with `FLAG_STACK_END` when it reached the outermost frame instead.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    rc::Rc,
};

use pmap_common::{Event, FLAG_SP_WORD, FLAG_STACK, FLAG_STACK_END, FLAG_UNWOUND, MAX_STACK_DEPTH};

use super::{jit::JitMap, notes::StackNote, symbols::Symbols};
use crate::map::{model::RegionModel, region::Region};

/// Functions where a user stack legitimately ends.
const ROOTS: &[&str] = &[
    "_start",
    "__libc_start_main",
    "__libc_start_call_main",
    "start_thread",
    "clone",
    "clone3",
    "__clone",
];

/// A checked stack: return addresses that land in executable code.
#[derive(Clone, Debug, Default)]
pub struct Stack {
    /// Innermost first; the first is the syscall instruction.
    pub frames: Vec<u64>,
    /// The walk did not reach the outermost frame: it stopped at a frame
    /// pointer that was not one, at an address that is not code, or at the
    /// depth limit.
    pub truncated: bool,
    /// Unwound in userspace from a copy of the stack (`FLAG_UNWOUND`).
    pub unwound: bool,
}

fn is_code(model: &RegionModel, addr: u64) -> Option<&Region> {
    model.containing(addr).filter(|r| r.perms.executable())
}

impl Stack {
    pub fn from_event(ev: &Event, model: &RegionModel) -> Option<Stack> {
        if ev.flags & FLAG_STACK == 0 || ev.stack_len == 0 {
            return None;
        }
        let n = (ev.stack_len as usize).min(ev.stack.len());
        let raw = &ev.stack[..n];
        let mut frames = vec![raw[0]];
        let walk_from = if ev.flags & FLAG_SP_WORD != 0 {
            let sp_word = raw.get(1).copied().unwrap_or(0);
            let next = raw.get(2).copied();
            if sp_word != 0 && Some(sp_word) != next && is_code(model, sp_word).is_some() {
                frames.push(sp_word);
            }
            2
        } else {
            1
        };
        let mut truncated = ev.flags & FLAG_STACK_END == 0;
        for &a in raw.iter().skip(walk_from) {
            if a == 0 {
                break;
            }
            if is_code(model, a).is_none() {
                truncated = true;
                break;
            }
            frames.push(a);
        }
        Some(Stack {
            frames,
            truncated,
            unwound: ev.flags & FLAG_UNWOUND != 0,
        })
    }

    /// Names of the frames, innermost first (at most `depth`).
    pub fn names(
        &self,
        pid: u32,
        model: &RegionModel,
        syms: &mut Symbols,
        jit: &JitMap,
        depth: usize,
    ) -> Vec<Rc<str>> {
        self.frames
            .iter()
            .take(depth)
            .enumerate()
            .map(|(i, &a)| name_of(pid, model, syms, jit, a, i > 0, true))
            .collect()
    }

    /// What is shown under a delta: the first `depth` frames named,
    /// whether the stack is cut, and the call site.
    pub fn note(
        &self,
        pid: u32,
        model: &RegionModel,
        syms: &mut Symbols,
        jit: &JitMap,
        depth: usize,
    ) -> StackNote {
        let names = self.names(pid, model, syms, jit, depth);
        let hidden = self.frames.len().saturating_sub(names.len());
        // A walk that stopped where stacks start is whole.
        let truncated = self.truncated && !(hidden == 0 && self.reaches_root(&names));
        StackNote {
            frames: self.frames.iter().copied().zip(names).collect(),
            hidden,
            truncated,
            unwound: self.unwound,
            site: self.site(pid, model, syms, jit),
        }
    }

    /// Whether a frame lies in anonymous executable memory (a JIT's code,
    /// whose names come from the JIT's map and change with it).
    pub fn through_anon_code(&self, model: &RegionModel) -> bool {
        self.frames
            .iter()
            .any(|&a| model.containing(a).is_some_and(|r| r.inode == 0))
    }

    /// Whether the deepest named frame is where stacks start (so a short
    /// stack is complete).
    pub fn reaches_root(&self, names: &[Rc<str>]) -> bool {
        names.len() == self.frames.len()
            && names.last().is_some_and(|n| {
                let f = n.split('+').next().unwrap_or("");
                ROOTS.contains(&f)
            })
    }

    /// The call site worth reporting: the first frame outside the C
    /// library, the dynamic loader and the allocator (malloc's family, the
    /// mmap and brk wrappers, wherever they are linked: a static program
    /// or another allocator library has them too), that is the code that
    /// asked for memory. Else the wrapper's caller.
    pub fn site(
        &self,
        pid: u32,
        model: &RegionModel,
        syms: &mut Symbols,
        jit: &JitMap,
    ) -> Option<Rc<str>> {
        for (i, &a) in self.frames.iter().enumerate() {
            if model.containing(a).is_some_and(|r| is_system_lib(&r.name)) {
                continue;
            }
            let name = name_of(pid, model, syms, jit, a, i > 0, false);
            if !is_allocator(&name) {
                return Some(name);
            }
        }
        let (i, &a) = self
            .frames
            .iter()
            .enumerate()
            .nth(1)
            .or_else(|| self.frames.iter().enumerate().next())?;
        Some(name_of(pid, model, syms, jit, a, i > 0, false))
    }
}

/// Functions that hand out memory for others: never the call site.
const ALLOCATOR: &[&str] = &[
    "malloc",
    "calloc",
    "realloc",
    "reallocarray",
    "free",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "mmap",
    "mmap64",
    "munmap",
    "mremap",
    "mprotect",
    "pkey_mprotect",
    "madvise",
    "brk",
    "sbrk",
    "__brk",
    "__sbrk",
    "__mmap",
    "__munmap",
    "__mprotect",
    "sysmalloc",
    "sysmalloc_mmap",
    "systrim",
    "new_heap",
    "alloc_new_heap",
    "grow_heap",
    "shrink_heap",
    "arena_get2",
    "tcache_init",
    "operator new",
    "operator new[]",
    "operator delete",
    "operator delete[]",
];

/// Whether frame name `name` (`function+0x1f [module]`) is in the allocator.
fn is_allocator(name: &str) -> bool {
    let f = name.split([' ', '(']).next().unwrap_or("");
    let f = f.rsplit_once('+').map_or(f, |(f, _)| f);
    let f = f.strip_suffix(".constprop.0").unwrap_or(f);
    ALLOCATOR.contains(&f)
        || name.starts_with("operator new")
        || name.starts_with("operator delete")
        || [
            "_int_",
            "__libc_",
            "__GI_",
            "__glibc_",
            "_mid_memalign",
            "_dl_",
        ]
        .iter()
        .any(|p| f.starts_with(p))
        || f.starts_with("je_")
        || f.starts_with("tc_")
}

/// A stack as the kernel captured it: the bits of `flags` that describe
/// it, and its words (zero past `stack_len`).
type Raw = (u32, [u64; MAX_STACK_DEPTH]);

/// Distinct stacks cached per process (the cache starts over when full).
const CACHE_MAX: usize = 4096;

/// Named stacks of one process by their raw capture. Most calls come from
/// a few call sites, and checking and naming a stack (region lookups,
/// symbol cache, call site) costs the event loop more than hashing its
/// words. A name depends on the code mapped at each address and on the
/// lines the symbol worker has found, so the cache is dropped when
/// executable regions change or new lines arrive; stacks through anonymous
/// (JIT) code are never cached, their names change with the JIT's map.
#[derive(Debug, Default)]
pub struct StackCache {
    named: HashMap<Raw, Rc<StackNote>, BuildHasherDefault<WordHasher>>,
    /// `Symbols::lines_found` when the entries were named.
    lines: u64,
}

impl StackCache {
    /// The raw capture of `ev`, if it carries a stack.
    pub fn key(ev: &Event) -> Option<Raw> {
        if ev.flags & FLAG_STACK == 0 || ev.stack_len == 0 {
            return None;
        }
        let n = (ev.stack_len as usize).min(MAX_STACK_DEPTH);
        let mut words = [0; MAX_STACK_DEPTH];
        words[..n].copy_from_slice(&ev.stack[..n]);
        Some((
            ev.flags & (FLAG_SP_WORD | FLAG_STACK_END | FLAG_UNWOUND),
            words,
        ))
    }

    /// Forgets every name (code was mapped, unmapped or changed).
    pub fn clear(&mut self) {
        self.named.clear();
    }

    /// The cached note for `key`, if names are still current (`lines`: the
    /// symbol worker's lines found so far).
    pub fn get(&mut self, key: &Raw, lines: u64) -> Option<Rc<StackNote>> {
        if lines != self.lines {
            self.named.clear();
            self.lines = lines;
        }
        self.named.get(key).cloned()
    }

    pub fn insert(&mut self, key: Raw, note: Rc<StackNote>) {
        if self.named.len() >= CACHE_MAX {
            self.named.clear();
        }
        self.named.insert(key, note);
    }
}

/// A hasher for the cache's keys (words the kernel wrote, not chosen by
/// an adversary who could aim at collisions): a multiply-rotate per 8
/// bytes, a fraction of SipHash's cost per event.
#[derive(Debug, Default)]
pub struct WordHasher(u64);

impl WordHasher {
    fn mix(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for WordHasher {
    fn finish(&self) -> u64 {
        // The product's high bits depend on all of its input; the table
        // picks buckets with the low ones.
        self.0 ^ (self.0 >> 29)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_ne_bytes(w));
        }
        for &b in chunks.remainder() {
            self.mix(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.mix(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }
}

fn is_system_lib(name: &[u8]) -> bool {
    let n = String::from_utf8_lossy(name);
    let base = n.rsplit('/').next().unwrap_or(&n);
    base.starts_with("libc.so") || base.starts_with("ld-linux") || base.starts_with("libpthread")
}

fn name_of(
    pid: u32,
    model: &RegionModel,
    syms: &mut Symbols,
    jit: &JitMap,
    addr: u64,
    ret: bool,
    with_line: bool,
) -> Rc<str> {
    match model.containing(addr) {
        Some(r) if r.inode != 0 => syms.name(pid, r, addr, ret, with_line),
        Some(r) => match jit.lookup(addr) {
            Some((name, off)) => format!("{name}+{off:#x} [JIT]").into(),
            None if r.name.is_empty() => format!("{addr:#x} [anon]").into(),
            None => format!("{addr:#x} [{}]", String::from_utf8_lossy(&r.name)).into(),
        },
        None => format!("{addr:#x} [unmapped]").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::region::Perms;

    fn code(start: u64, end: u64) -> Region {
        Region {
            start,
            end,
            perms: Perms(*b"r-xp"),
            inode: 1,
            name: b"/x".to_vec(),
            ..Default::default()
        }
    }

    fn event(stack: &[u64], flags: u32) -> Event {
        let mut ev = Event {
            exit_ns: 0,
            args: [0; 6],
            ret: 0,
            stack: [0; pmap_common::MAX_STACK_DEPTH],
            tgid: 1,
            tid: 1,
            kind: 10,
            flags,
            stack_len: stack.len() as u32,
            ..Event::default()
        };
        ev.stack[..stack.len()].copy_from_slice(stack);
        ev
    }

    #[test]
    fn the_word_at_sp_names_the_wrappers_caller_and_garbage_truncates() {
        let model = RegionModel::new(vec![code(0x1000, 0x2000), code(0x5000, 0x6000)]);
        // ip in libc, [sp] in the caller, then a frame-pointer walk that
        // finds one frame and then data.
        let ev = event(
            &[0x1100, 0x5100, 0x5200, 0x4141_4141],
            FLAG_STACK | FLAG_SP_WORD,
        );
        let s = Stack::from_event(&ev, &model).expect("a stack");
        assert_eq!(s.frames, vec![0x1100, 0x5100, 0x5200]);
        assert!(s.truncated);
        // The word at sp repeating the walk's first frame is not doubled;
        // a word that is not code is left out.
        let ev = event(&[0x1100, 0x5200, 0x5200], FLAG_STACK | FLAG_SP_WORD);
        assert_eq!(
            Stack::from_event(&ev, &model).expect("a stack").frames,
            vec![0x1100, 0x5200]
        );
        let ev = event(&[0x1100, 0x9999, 0x5200], FLAG_STACK | FLAG_SP_WORD);
        assert_eq!(
            Stack::from_event(&ev, &model).expect("a stack").frames,
            vec![0x1100, 0x5200]
        );
        assert!(Stack::from_event(&event(&[], 0), &model).is_none());
    }

    #[test]
    fn allocator_frames_are_not_call_sites() {
        for f in [
            "malloc+0x1a [libc.so.6]",
            "_int_malloc+0x3 [libc.so.6]",
            "sysmalloc+0x10 [libc.so.6]",
            "__mmap+0x5 [a.out]",
            "operator new(unsigned long)+0x1c [libstdc++.so.6]",
            "je_malloc+0x2 [libjemalloc.so.2]",
            "__libc_malloc+0x2 [libc.so.6]",
        ] {
            assert!(is_allocator(f), "{f}");
        }
        for f in [
            "app_make_cache+0x9 [cache]",
            "main+0x10 (x.c:3) [a.out]",
            "mallocate_things+0x1 [a.out]",
            "0x7f00 [anon]",
        ] {
            assert!(!is_allocator(f), "{f}");
        }
    }

    #[test]
    fn cached_names_are_dropped_when_new_lines_arrive() {
        let mut ev = event(&[0x1100, 0x5100], FLAG_STACK | FLAG_SP_WORD);
        // Words past stack_len are not part of the stack.
        ev.stack[5] = 0xdead;
        let key = StackCache::key(&ev).expect("a stack");
        assert_eq!(
            key,
            StackCache::key(&event(&[0x1100, 0x5100], ev.flags)).expect("a stack")
        );
        assert!(StackCache::key(&event(&[], 0)).is_none());
        let mut cache = StackCache::default();
        let note = Rc::new(StackNote::default());
        cache.insert(key, note.clone());
        assert_eq!(cache.get(&key, 0), Some(note));
        assert_eq!(
            cache.get(&key, 1),
            None,
            "a line arrived: names may lack it"
        );
    }

    #[test]
    fn a_stack_is_complete_only_when_the_walk_reached_the_outermost_frame() {
        let model = RegionModel::new(vec![code(0x1000, 0x2000), code(0x5000, 0x6000)]);
        let frames = [0x1100, 0x5100, 0x5200, 0x5300];
        let ended = Stack::from_event(
            &event(&frames, FLAG_STACK | FLAG_SP_WORD | FLAG_STACK_END),
            &model,
        )
        .expect("a stack");
        assert_eq!(ended.frames, frames);
        assert!(!ended.truncated);
        // The kernel stopped at a frame pointer that was not one (or at the
        // depth limit): every frame is code, and the stack is still cut.
        let stopped =
            Stack::from_event(&event(&frames, FLAG_STACK | FLAG_SP_WORD), &model).expect("a stack");
        assert_eq!(stopped.frames, frames);
        assert!(stopped.truncated);
        // Only the wrapper's caller: truncated unless the walk ended.
        let short = Stack::from_event(&event(&frames[..2], FLAG_STACK | FLAG_SP_WORD), &model)
            .expect("a stack");
        assert!(short.truncated);
    }
}
