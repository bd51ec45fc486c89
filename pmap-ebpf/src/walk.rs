//! The regions a traced call changed, read in the kernel at the call's
//! exit (`bpf_find_vma` at the addresses the call names), so that each
//! delta is what the call did to the map: the walk, its wait for a busy
//! map lock, and the kernel memory it reads through the offsets userspace
//! found in BTF.

use aya_ebpf::{
    cty::c_void,
    helpers::{
        bpf_get_current_task_btf, bpf_ktime_get_ns,
        generated::{self as raw, bpf_find_vma},
    },
};
use pmap_common::{Capture, KernelOffsets, MAX_CAPTURE, Vma, capture, walk_plan};

use crate::OFFSETS;

/// Reads a u64 at `base + offset` of kernel memory; 0 if unreadable (the
/// helper zeroes its destination on failure). No branch on the result:
/// every branch here multiplies the paths the verifier walks, once per
/// lookup of the walk.
#[inline(always)]
pub(crate) fn kernel_u64(base: u64, offset: u64) -> u64 {
    let mut v: u64 = 0;
    // SAFETY: a probe read checks its address and writes only `v`.
    unsafe {
        raw::bpf_probe_read_kernel(
            (&raw mut v).cast(),
            8,
            (base.wrapping_add(offset)) as *const c_void,
        )
    };
    v
}

/// The offsets userspace found in BTF.
#[inline(always)]
pub(crate) fn offsets() -> KernelOffsets {
    // SAFETY: as for CONFIG.
    unsafe { core::ptr::read_volatile(&OFFSETS) }
}

/// `bpf_find_vma`'s callback: copies the fields of the region holding the
/// address into the walk's [`Vma`] (on the caller's stack). Called with
/// the map lock held for reading, so the region cannot change under it.
/// For an anonymous region `vm_file` is null and the reads through it
/// fail, leaving inode and device 0.
#[inline(never)]
pub(crate) extern "C" fn on_vma(_task: *mut c_void, vma: *mut c_void, ctx: *mut c_void) -> i64 {
    let o = offsets();
    let base = vma as u64;
    let file = kernel_u64(base, o.vm_file);
    let inode = kernel_u64(file, o.f_inode);
    let sb = kernel_u64(inode, o.i_sb);
    // SAFETY: `ctx` is the walk's Vma, on its stack, for this call.
    unsafe {
        *ctx.cast::<Vma>() = Vma {
            start: kernel_u64(base, o.vm_start),
            end: kernel_u64(base, o.vm_end),
            flags: kernel_u64(base, o.vm_flags),
            pgoff: kernel_u64(base, o.vm_pgoff),
            ino: kernel_u64(inode, o.i_ino),
            dev: kernel_u64(sb, o.s_dev) as u32,
            _pad: 0,
        };
    }
    0
}

pub(crate) const EBUSY: i64 = 16;
pub(crate) const PAGE: u64 = 4096;
/// How long one call's walk waits, in all, for another thread to release
/// the map lock (`bpf_find_vma` only tries it). Writers hold it for a few
/// microseconds; a call not captured costs the tracer a read of the kernel
/// later and leaves the deltas near it uncertain.
pub(crate) const LOCK_WAIT_NS: u64 = 100_000;
/// Tries of the lock per lookup; the deadline ends the wait first.
const LOCK_TRIES: u32 = 1 << 16;

/// One lookup that waits out a busy map lock (see [`find_waiting`]).
#[repr(C)]
pub(crate) struct Lookup {
    addr: u64,
    deadline: u64,
    ret: i64,
    vma: Vma,
}

/// `bpf_loop`'s callback: one try of the lookup; goes on only while the
/// lock is busy and the deadline is not reached.
#[inline(never)]
extern "C" fn try_lookup(_i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the caller's Lookup, on its stack, for this loop.
    let l = unsafe { &mut *ctx.cast::<Lookup>() };
    // SAFETY: as in `capture_regions`; the callback and its context are
    // what bpf_find_vma expects.
    l.ret = unsafe {
        bpf_find_vma(
            bpf_get_current_task_btf(),
            l.addr,
            on_vma as *mut c_void,
            (&raw mut l.vma).cast(),
            0,
        )
    };
    // SAFETY: no arguments.
    let waiting = l.ret == -EBUSY && unsafe { bpf_ktime_get_ns() } < l.deadline;
    i64::from(!waiting)
}

/// `bpf_find_vma` at `l.addr`, tried again while another thread holds the
/// map lock, until `l.deadline`. A loop of the kernel's (`bpf_loop`), whose
/// body the verifier checks once, where an unrolled retry would multiply
/// the walk's paths. Not inlined: a call of its own keeps its registers
/// out of the caller's (inlined, LLVM left a register unwritten on a path
/// the verifier walks).
#[inline(never)]
pub(crate) fn find_waiting(l: &mut Lookup) -> i64 {
    l.ret = -EBUSY;
    // SAFETY: the callback has the signature bpf_loop expects, and its
    // context is the Lookup on this stack.
    unsafe {
        raw::bpf_loop(
            LOCK_TRIES,
            try_lookup as *mut c_void,
            (l as *mut Lookup).cast(),
            0,
        )
    };
    l.ret
}
/// Lookups one call's walk may make: a region each, or a page of a hole
/// (madvise).
const WALK_LOOKUPS: usize = 8;

/// Stores the `i`th captured region; constant offsets into the record,
/// which the verifier checks without tracking an index.
#[inline(always)]
fn store(c: &mut Capture, i: u32, v: Vma) -> bool {
    match i {
        0 => c.vmas[0] = v,
        1 => c.vmas[1] = v,
        2 => c.vmas[2] = v,
        3 => c.vmas[3] = v,
        4 => c.vmas[4] = v,
        5 => c.vmas[5] = v,
        _ => return false,
    }
    true
}
const _: () = assert!(MAX_CAPTURE == 6, "store() names each slot");

/// Reads the regions covering the call's ranges (`walk_plan`) as they are
/// at its exit: the calling thread is still in the kernel, so nothing it
/// does later can be in them. Userspace diffs its model against these
/// instead of asking the kernel later, when other calls may have run.
#[inline(always)]
pub(crate) fn capture_regions(c: &mut Capture, nr: u32, args: &[u64; 6], ret: i64) {
    let (lo, hi) = walk_plan(nr, args, ret);
    c.brk = 0;
    c.count = 0;
    if lo >= hi {
        c.status = capture::NONE;
        return;
    }
    c.status = capture::OK;
    let mut l = Lookup {
        addr: lo,
        // SAFETY: no arguments.
        deadline: unsafe { bpf_ktime_get_ns() } + LOCK_WAIT_NS,
        ret: 0,
        vma: Vma::default(),
    };
    let mut addr = lo;
    let mut count = 0u32;
    // madvise goes on past holes (and then fails with ENOMEM), and an
    // mremap may move several regions with holes between them (6.17+): their
    // walks step over holes, a page at a time. Every other call stops at
    // a hole.
    let skip_holes = nr == pmap_common::nr::MADVISE || nr == pmap_common::nr::MREMAP;
    // Every branch but storing a region or stepping over a hole's page
    // leaves the loop, which keeps the paths the verifier walks few.
    // SAFETY: the current task, valid for the whole program run.
    let task = unsafe { bpf_get_current_task_btf() };
    // Only the first lookup waits for the lock: once it is had, the next
    // lookups, microseconds later, rarely find it taken again (and a wait
    // inside the unrolled walk would multiply the paths the verifier
    // walks).
    let mut r = find_waiting(&mut l);
    for _ in 0..WALK_LOOKUPS {
        if r != 0 {
            if r == -EBUSY {
                c.status = capture::BUSY;
                break;
            }
            // -ENOENT: a hole.
            if !skip_holes {
                break;
            }
            addr = (addr | (PAGE - 1)) + 1;
        } else {
            let v = l.vma;
            if v.end <= addr || !store(c, count, v) {
                c.status = capture::FULL;
                break;
            }
            count += 1;
            addr = v.end;
        }
        if addr >= hi {
            break;
        }
        // SAFETY: the callback has the signature bpf_find_vma expects, and
        // its context is the Vma on this stack.
        r = unsafe {
            bpf_find_vma(
                task,
                addr,
                on_vma as *mut c_void,
                (&raw mut l.vma).cast(),
                0,
            )
        };
    }
    if addr < hi && skip_holes && c.status == capture::OK {
        c.status = capture::FULL;
    }
    c.count = count;
    let task = task as u64;
    c.brk = kernel_u64(kernel_u64(task, offsets().task_mm), offsets().mm_brk);
}
