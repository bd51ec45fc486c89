//! The map a traced process's new program starts with, read at its
//! execve (`sched_process_exec`), before the program runs an instruction:
//! the deltas of the loader's first calls then start from the kernel's own
//! map, not from one read later by userspace (which holds their effect
//! already).
//!
//! `bpf_find_vma` only finds the region holding an address, so the walk
//! starts from anchors the kernel keeps for a new program (its code and
//! data, its stack, and from the auxiliary vector the loader's base, the
//! vDSO, the program headers and the entry point). From each it goes down
//! to the first region of the run of adjacent regions around it, then up
//! to its last, storing them. Runs already walked are skipped. Userspace
//! takes the map only if the walk found as many regions as the address
//! space holds (`mm->map_count`): an anchor-less run makes it fall back.

use aya_ebpf::{
    bindings::BPF_RB_NO_WAKEUP,
    cty::c_void,
    helpers::{bpf_get_current_task_btf, bpf_ktime_get_ns, generated as raw},
    macros::map,
    maps::PerCpuArray,
};
use pmap_common::{
    MAX_CAPTURE, Vma, capture, capture_len,
    exec_map::{
        ANCHORS, ARG_MAP_COUNT, ARG_PART, ARG_START_BRK, ARG_START_STACK, ARG_TOTAL, ARG_VDSO,
        MAX_PARTS, MAX_REGIONS,
    },
    kind,
};

use crate::{EBUSY, EVENTS, LOCK_WAIT_NS, SCRATCH, bump, counter, fill_head, kernel_u64, offsets};

/// Where the next step of the walk goes.
const NEXT_ANCHOR: u32 = 0;
const DOWN: u32 = 1;
const UP: u32 = 2;

/// Steps the walk may take: a lookup each (about two per region, one per
/// run's ends, one per anchor), far more than a new program needs.
const MAX_STEPS: u32 = 256;

/// Auxiliary vector entries (`AT_*`) used as anchors, and how many pairs
/// are read at most (`saved_auxv` holds fewer on x86_64).
const AT_NULL: u64 = 0;
const AT_PHDR: u64 = 3;
const AT_BASE: u64 = 7;
const AT_ENTRY: u64 = 9;
const AT_SYSINFO_EHDR: u64 = 33;
const AUXV_PAIRS: usize = 24;
/// Where the auxiliary vector's anchors go in `ExecWalk::anchors` (the
/// first four are the mm's own).
const PHDR_ANCHOR: usize = 4;
const BASE_ANCHOR: usize = 5;
const ENTRY_ANCHOR: usize = 6;
const VDSO_ANCHOR: usize = 7;

/// The walk's state, in a per-CPU map value: too large for the 512-byte
/// stack, and `bpf_loop`'s callback reaches it by a lookup of its own.
#[repr(C)]
pub struct ExecWalk {
    anchors: [u64; ANCHORS],
    /// Runs walked, as [lo, hi).
    runs: [[u64; 2]; ANCHORS],
    regions: [Vma; MAX_REGIONS],
    /// The address the next lookup asks for.
    addr: u64,
    /// The lowest region of the current run found so far.
    first: u64,
    /// Until when a busy map lock is waited for.
    deadline: u64,
    runs_walked: u32,
    anchor: u32,
    step: u32,
    count: u32,
    status: u32,
    _pad: u32,
}

#[map]
static EXEC_WALK: PerCpuArray<ExecWalk> = PerCpuArray::with_max_entries(1, 0);

/// Whether `addr` lies in a run already walked.
#[inline(always)]
fn walked(w: &ExecWalk, addr: u64) -> bool {
    let mut i = 0;
    while i < ANCHORS {
        if (i as u32) < w.runs_walked && w.runs[i][0] <= addr && addr < w.runs[i][1] {
            return true;
        }
        i += 1;
    }
    false
}

/// `bpf_loop`'s callback: one step of the walk; 1 ends it.
#[inline(never)]
extern "C" fn walk_step(_i: u64, _ctx: *mut c_void) -> i64 {
    let Some(w) = EXEC_WALK.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's slot, used by this program run only.
    let w = unsafe { &mut *w };
    if w.step == NEXT_ANCHOR {
        let a = w.anchor as usize;
        if a >= ANCHORS {
            return 1;
        }
        w.anchor += 1;
        let addr = w.anchors[a & (ANCHORS - 1)];
        if addr != 0 && !walked(w, addr) {
            (w.addr, w.first, w.step) = (addr, 0, DOWN);
        }
        return 0;
    }
    let mut v = Vma::default();
    // SAFETY: the callback and its context (a Vma on this stack) are what
    // bpf_find_vma expects; the current task is valid for the whole run.
    let r = unsafe {
        raw::bpf_find_vma(
            bpf_get_current_task_btf(),
            w.addr,
            crate::on_vma as *mut c_void,
            (&raw mut v).cast(),
            0,
        )
    };
    if r == -EBUSY {
        // SAFETY: no arguments.
        if unsafe { bpf_ktime_get_ns() } < w.deadline {
            return 0;
        }
        w.status = capture::BUSY;
        return 1;
    }
    if w.step == DOWN {
        if r == 0 {
            w.first = v.start;
            if v.start > 0 {
                w.addr = v.start - 1;
                return 0;
            }
        }
        // Below the run (or the anchor is in no region).
        if w.first == 0 {
            w.step = NEXT_ANCHOR;
        } else {
            (w.addr, w.step) = (w.first, UP);
        }
        return 0;
    }
    if r != 0 {
        // Above the run.
        let i = w.runs_walked as usize;
        if i < ANCHORS {
            w.runs[i & (ANCHORS - 1)] = [w.first, w.addr];
            w.runs_walked += 1;
        }
        w.step = NEXT_ANCHOR;
        return 0;
    }
    let n = w.count as usize;
    if n >= MAX_REGIONS || v.end <= w.addr {
        w.status = capture::FULL;
        return 1;
    }
    w.regions[n & (MAX_REGIONS - 1)] = v;
    w.count += 1;
    w.addr = v.end;
    0
}

/// Reads the new program's map and sends it as `kind::EXEC_MAP` records,
/// ahead of the exec record itself.
#[inline(always)]
pub fn send(tgid: u32, tid: u32) -> Option<()> {
    let w = EXEC_WALK.get_ptr_mut(0)?;
    let o = offsets();
    // SAFETY: the current task, valid for the whole program run.
    let task = unsafe { bpf_get_current_task_btf() } as u64;
    let mm = kernel_u64(task, o.task_mm);
    if mm == 0 {
        return None;
    }
    let start_stack = kernel_u64(mm, o.mm_start_stack);
    // SAFETY: this CPU's slot, used by this program run only (tracepoint
    // programs do not nest on a CPU).
    unsafe {
        let w = &mut *w;
        w.anchors = [
            kernel_u64(mm, o.mm_start_code),
            kernel_u64(mm, o.mm_start_data),
            kernel_u64(mm, o.mm_end_data).saturating_sub(1),
            start_stack,
            0,
            0,
            0,
            0,
        ];
        let mut i = 0;
        while i < AUXV_PAIRS {
            let at = o.mm_saved_auxv + 16 * i as u64;
            let (key, value) = (kernel_u64(mm, at), kernel_u64(mm, at + 8));
            match key {
                AT_NULL => break,
                AT_PHDR => w.anchors[PHDR_ANCHOR] = value,
                AT_BASE => w.anchors[BASE_ANCHOR] = value,
                AT_ENTRY => w.anchors[ENTRY_ANCHOR] = value,
                AT_SYSINFO_EHDR => w.anchors[VDSO_ANCHOR] = value,
                _ => {}
            }
            i += 1;
        }
        (w.runs_walked, w.anchor, w.step, w.count) = (0, 0, NEXT_ANCHOR, 0);
        w.status = capture::OK;
        w.deadline = bpf_ktime_get_ns() + LOCK_WAIT_NS;
        raw::bpf_loop(
            MAX_STEPS,
            walk_step as *mut c_void,
            core::ptr::null_mut(),
            0,
        );
        // Out of steps before the last anchor: not the whole map.
        if w.status == capture::OK && (w.anchor as usize) < ANCHORS {
            w.status = capture::FULL;
        }
    }
    // `map_count` is an int: the low half of the 8 bytes read.
    let map_count = kernel_u64(mm, o.mm_map_count) & 0xffff_ffff;
    let brk = kernel_u64(mm, o.mm_brk);
    let start_brk = kernel_u64(mm, o.mm_start_brk);
    // SAFETY: as above.
    let vdso = unsafe { (*w).anchors[VDSO_ANCHOR] };
    let mut part = 0;
    while part < MAX_PARTS {
        // SAFETY: as above.
        let (count, status) = unsafe { ((*w).count as usize, (*w).status) };
        // The first part always goes: it carries the walk's status.
        if part > 0 && part * MAX_CAPTURE >= count {
            break;
        }
        let ev = SCRATCH.get_ptr_mut(0)?;
        // SAFETY: this CPU's scratch slot and walk state, used by this
        // program run only; indices are masked to the regions' bounds.
        let len = unsafe {
            let mut args = [0u64; 6];
            args[ARG_PART] = part as u64;
            args[ARG_TOTAL] = count as u64;
            args[ARG_MAP_COUNT] = map_count;
            args[ARG_START_BRK] = start_brk;
            args[ARG_START_STACK] = start_stack;
            args[ARG_VDSO] = vdso;
            fill_head(
                &raw mut (*ev).head,
                tgid,
                tid,
                kind::EXEC_MAP,
                0,
                Some(args),
            );
            let c = &mut (*ev).capture;
            (c.brk, c.status) = (brk, status);
            let mut n = 0;
            while n < MAX_CAPTURE {
                let i = part * MAX_CAPTURE + n;
                if i >= count {
                    break;
                }
                c.vmas[n] = (*w).regions[i & (MAX_REGIONS - 1)];
                n += 1;
            }
            c.count = n as u32;
            capture_len(c.count)
        };
        // SAFETY: `len` is at most size_of::<EventCapture>(), the scratch
        // slot's size.
        let bytes = unsafe { core::slice::from_raw_parts(ev.cast::<u8>(), len) };
        // The exec record that follows wakes the reader.
        if EVENTS
            .output::<[u8]>(bytes, BPF_RB_NO_WAKEUP as u64)
            .is_err()
        {
            bump(counter::LOST);
            return None;
        }
        part += 1;
    }
    Some(())
}
