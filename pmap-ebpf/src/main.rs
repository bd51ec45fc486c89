//! Kernel side of `pmap trace`.
//!
//! One generic program is attached to the `sys_exit_*` tracepoints of
//! every memory-mapping syscall (the syscall number is in the record, so
//! one program serves all of them): it reads the call's arguments from the
//! user registers saved at entry, which the call leaves as they were, so no
//! entry program and no map carry them from entry to exit. Three more
//! watch exec, exit and task creation. Only tasks whose process id is in `TARGETS` are
//! reported, so nothing about other processes crosses the ring buffer.
#![no_std]
#![no_main]
// `atomic_or`/`atomic_and` on the kernel filter's words: the BPF target has
// the instructions but no atomic read-modify-write types.
#![feature(core_intrinsics)]
#![allow(internal_features)]

use core::intrinsics::AtomicOrdering;

/// `pmap exporter`'s per-process counters.
mod counters;
/// The map a new program starts with, read at its execve.
mod exec_map;

use aya_ebpf::cty::c_void;
use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task_btf, bpf_ktime_get_ns,
        bpf_probe_read_user,
        generated::{self as raw, bpf_find_vma, bpf_task_pt_regs},
    },
    macros::{map, tracepoint},
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
    programs::TracePointContext,
};
use pmap_common::{
    Capture, Event, EventCapture, EventHead, FLAG_NO_ARGS, FLAG_SP_WORD, FLAG_STACK,
    FLAG_STACK_END, KernelOffsets, MAX_CAPTURE, MAX_STACK_BYTES, MAX_STACK_DEPTH, STACK_COPY_ALIGN,
    STACK_COPY_MAGIC, STACK_COPY_SIZE, STACK_NEED_ENTRIES, StackCopy, TARGET_WORDS, Vma, capture,
    capture_len, config, counter, fork, kind, matched, walk_plan,
};

/// Process ids (init namespace) to report, one bit each. Filled by
/// userspace. A bitmap rather than a hash: every memory-mapping call of
/// every process on the machine is tested against it, and an array lookup
/// is a bounds check the verifier inlines, where a hash lookup hashes.
#[map]
static TARGETS: Array<u64> = Array::with_max_entries(TARGET_WORDS, 0);

/// Records for userspace. The size is set by userspace at load time.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// `--stack-bytes`: how many bytes of stack a process's calls need, by
/// process id, learned by userspace from its unwinds (absent: all of
/// `STACK_BYTES`). Least recently used entries go first when it is full.
#[map]
static STACK_NEED: LruHashMap<u32, u64> = LruHashMap::with_max_entries(STACK_NEED_ENTRIES, 0);

/// Per-CPU counters, indexed by `pmap_common::counter`.
/// Where a syscall record without a stack is built before it is sent
/// (see `try_sys_exit`).
#[map]
static SCRATCH: PerCpuArray<EventCapture> = PerCpuArray::with_max_entries(1, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// `pmap_common::config` bits, set by userspace at load time.
#[unsafe(no_mangle)]
static CONFIG: u64 = 0;

/// `--comm`: the thread name to match, NUL-padded as the kernel keeps it
/// (16 bytes, read as two words); set by userspace at load time.
#[unsafe(no_mangle)]
static COMM_NAME: [u64; 2] = [0; 2];

/// `--cgroup`: the group's id (its directory's inode number) and its depth
/// below the root, set by userspace at load time.
#[unsafe(no_mangle)]
static CGROUP_ID: u64 = 0;
#[unsafe(no_mangle)]
static CGROUP_LEVEL: u32 = 0;

/// The tracer's own process id: never picked up by `--comm`/`--cgroup`
/// (its own output would feed its trace).
#[unsafe(no_mangle)]
static TRACER_TGID: u32 = 0;

/// `--stack-bytes`: bytes of user stack copied per event with `--stacks`
/// (0: none, the frame-pointer walk only), at most `MAX_STACK_BYTES`; set
/// by userspace at load time.
#[unsafe(no_mangle)]
static STACK_BYTES: u64 = 0;

/// A quarter of the ring buffer's size in bytes, set by userspace at load
/// time (a constant costs less than asking the ring for its size).
#[unsafe(no_mangle)]
static WAKE_AT: u64 = 0;

/// Where the capture finds the kernel's fields, from its BTF; set by
/// userspace at load time.
#[unsafe(no_mangle)]
static OFFSETS: KernelOffsets = KernelOffsets {
    vm_start: 0,
    vm_end: 0,
    vm_flags: 0,
    vm_pgoff: 0,
    vm_file: 0,
    task_mm: 0,
    f_inode: 0,
    i_ino: 0,
    i_sb: 0,
    s_dev: 0,
    mm_brk: 0,
    mm_start_brk: 0,
    mm_start_code: 0,
    mm_start_data: 0,
    mm_end_data: 0,
    mm_start_stack: 0,
    mm_map_count: 0,
    mm_saved_auxv: 0,
};

// Offsets in the tracepoint records (see events/*/format in tracefs).
const SYSCALL_NR: usize = 8;
const SYSCALL_RET: usize = 16;
const EXEC_PID: usize = 12;
const EXEC_OLD_PID: usize = 16;
const EXIT_PID: usize = 24;
const EXIT_GROUP_DEAD: usize = 32;
const FORK_CHILD_PID: usize = 20;
/// Index of `bp` in x86_64's `struct pt_regs` (8-byte fields), where
/// [`UserRegs`] starts; `ip` and `sp` are at the indices below, from it.
const PT_REGS_BP: usize = 4;
const REGS_IP: usize = 16 - PT_REGS_BP;
const REGS_SP: usize = 19 - PT_REGS_BP;
/// The syscall argument registers (di, si, dx, r10, r8, r9), in argument
/// order, as indices into [`UserRegs`].
const REGS_ARGS: [usize; 6] = [
    14 - PT_REGS_BP,
    13 - PT_REGS_BP,
    12 - PT_REGS_BP,
    7 - PT_REGS_BP,
    9 - PT_REGS_BP,
    8 - PT_REGS_BP,
];

/// `bp` through `sp` of the user registers saved at syscall entry.
type UserRegs = [u64; 16];

/// How far above the stack pointer a frame pointer may lie and still be
/// followed: the default thread stack size (8 MiB). Farther, it is not a
/// frame pointer into this stack but whatever the code (built without frame
/// pointers) kept in the register, and reading it would likely fault.
const MAX_FRAME_SPAN: u64 = 8 << 20;

/// The user registers of the current task as saved at syscall entry. The
/// syscall ABI preserves every register but ax, cx and r11 for the caller,
/// so at exit the argument registers, ip, sp and bp are still what the call
/// was made with.
#[inline(always)]
fn user_regs() -> Option<UserRegs> {
    // SAFETY: both helpers take the current task, which is valid for the
    // whole program run; a null result is checked.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) };
    if regs == 0 {
        return None;
    }
    // The helper's result is a typed kernel pointer (BTF), so the verifier
    // lets the program load its fields directly (each load guarded by the
    // kernel's exception table), which costs far less than a probe read
    // of the whole block.
    let base = (regs as usize + PT_REGS_BP * 8) as *const u64;
    let mut out: UserRegs = [0; 16];
    for (i, slot) in out.iter_mut().enumerate() {
        // SAFETY: within `struct pt_regs`, whose fields are all u64.
        *slot = unsafe { core::ptr::read_volatile(base.add(i)) };
    }
    Some(out)
}

/// Fills `stack` with the user stack of the current syscall; returns the
/// number of entries and the `FLAG_*` bits that describe them.
///
/// `stack[0]` is the user instruction pointer and `stack[1]` the word at the
/// user stack pointer (`FLAG_SP_WORD`): in a leaf libc wrapper (mmap,
/// mprotect, ...) the return address into its caller, which is all there is
/// to go on when libc has no frame pointers (Debian's has none). Then the
/// frame-pointer chain from `bp`, followed only while it is plausible: each
/// frame above the last, within [`MAX_FRAME_SPAN`] of the stack pointer,
/// 8-byte aligned. Code built without frame pointers uses `bp` as a general
/// register; `bpf_get_stack` would follow such garbage and fault on it (the
/// fault handling was most of the cost of `--stacks`), this stops instead.
/// `FLAG_STACK_END` says the chain ended at the outermost frame (a null
/// frame pointer or return address), so the stack is complete.
#[inline(always)]
fn capture_stack(stack: &mut [u64; MAX_STACK_DEPTH], regs: &UserRegs) -> (u32, u32) {
    let sp = regs[REGS_SP];
    stack[0] = regs[REGS_IP];
    // SAFETY: a probe read checks its address; 0 stands for unreadable.
    stack[1] = unsafe { bpf_probe_read_user(sp as *const u64) }.unwrap_or(0);
    let mut flags = FLAG_STACK | FLAG_SP_WORD;
    let mut len = 2u32;
    let mut bp = regs[0];
    let mut lo = sp;
    for slot in stack.iter_mut().skip(2) {
        if bp < lo || bp - sp > MAX_FRAME_SPAN || bp & 7 != 0 {
            break;
        }
        // SAFETY: as above; [saved bp, return address] at the frame pointer.
        let Ok([next, ret]) = (unsafe { bpf_probe_read_user(bp as *const [u64; 2]) }) else {
            break;
        };
        if ret == 0 {
            flags |= FLAG_STACK_END;
            break;
        }
        *slot = ret;
        len += 1;
        if next == 0 {
            flags |= FLAG_STACK_END;
            break;
        }
        // Frames lie at increasing addresses; anything else is not a chain.
        lo = bp + 16;
        bp = next;
    }
    (len, flags)
}

/// Copies up to `want` bytes (at most `MAX_STACK_BYTES`, a multiple of
/// `STACK_COPY_ALIGN`) of user stack from `sp` to `dst`; returns how many.
/// A probe read fails whole when its range runs past the top of the stack
/// (a shallow main thread: the stack ends a few KiB above `sp`), so a
/// failed read is retried with half the length, then with the rest of
/// sp's page.
///
/// SAFETY: `dst` must be valid for `want` bytes of writes.
#[inline(always)]
unsafe fn copy_user_stack(dst: *mut u8, sp: u64, want: u64) -> u64 {
    let mut n = want;
    for _ in 0..3 {
        if n == 0 {
            break;
        }
        // SAFETY: a probe read checks the user range and writes at most
        // `n` <= `want` bytes to `dst`.
        let r = unsafe { raw::bpf_probe_read_user(dst.cast(), n as u32, sp as *const c_void) };
        if r == 0 {
            return n;
        }
        n >>= 1;
    }
    // The rest of sp's page is there (the stack pointer points into it).
    let n = (4096 - (sp & 4095)).min(n) & ALIGN_DOWN;
    // SAFETY: as above.
    let r = unsafe { raw::bpf_probe_read_user(dst.cast(), n as u32, sp as *const c_void) };
    if r == 0 { n } else { 0 }
}

/// The first two words of [`capture_stack`] (the instruction pointer and
/// the word at the stack pointer), without the walk: with a stack copy.
#[inline(always)]
fn capture_stack_head(stack: &mut [u64; MAX_STACK_DEPTH], regs: &UserRegs) -> (u32, u32) {
    stack[0] = regs[REGS_IP];
    // SAFETY: a probe read checks its address; 0 stands for unreadable.
    stack[1] = unsafe { bpf_probe_read_user(regs[REGS_SP] as *const u64) }.unwrap_or(0);
    (2, FLAG_STACK | FLAG_SP_WORD)
}

/// `bpf_find_vma`'s callback for the stack copy: the end of the region
/// holding the stack pointer, into the u64 at `ctx`.
#[inline(never)]
extern "C" fn on_stack_vma(_task: *mut c_void, vma: *mut c_void, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the caller's u64, on its stack, for this call.
    unsafe { *ctx.cast::<u64>() = kernel_u64(vma as u64, offsets().vm_end) };
    0
}

/// Rounds down to a multiple of `STACK_COPY_ALIGN`.
const ALIGN_DOWN: u64 = !(STACK_COPY_ALIGN as u64 - 1);

/// Sends the copy of the user stack that goes with the syscall record
/// just reserved (`--stack-bytes`), for userspace to unwind with the
/// modules' call-frame information: a record of its own, so that the
/// syscall record keeps its shape. The stack is read straight into the
/// ring (no copy through scratch memory: the copy is most of what the
/// option costs). At most `STACK_BYTES`, no further than the stack's
/// region, no more than the process's calls need (`STACK_NEED`); the
/// record is sized to a class above that (a constant per branch, as the
/// verifier wants), and the header says how much was copied. Sent before
/// the syscall record is
/// submitted: userspace reads records in the order they were reserved,
/// and a record only once it is submitted, so this copy is read right
/// after its syscall record, in the same pass.
///
/// Not inlined, and given scalars only: verified once, apart from the
/// capture (inlined, the two made the verifier lose track of registers).
#[inline(never)]
fn send_stack_copy(tid: u32, sp: u64, bp: u64, wake: u64) -> u32 {
    // The process of the calling thread (the record's, whichever way it
    // joined the trace): read here rather than passed, to keep the
    // caller's registers as they were (see `find_waiting`).
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: as for CONFIG.
    let want =
        unsafe { core::ptr::read_volatile(&STACK_BYTES) }.min(MAX_STACK_BYTES as u64) & ALIGN_DOWN;
    // What this process's calls have needed so far: the record keeps its
    // room (its size must be a constant), only the copy is shorter.
    // SAFETY: a value of this map is a plain u64, read once.
    let need = unsafe { STACK_NEED.get(&tgid) }.copied().unwrap_or(want);
    // Where the stack's region ends: reading past it would fault (a fault
    // costs more than the copy), and a shallow main thread's stack ends a
    // few KiB above sp. Unknown (lock busy, no region): the copy is tried
    // whole and shortened on failure.
    let mut end: u64 = 0;
    // SAFETY: the callback has the signature bpf_find_vma expects and
    // writes only the u64 it is given.
    unsafe {
        bpf_find_vma(
            bpf_get_current_task_btf(),
            sp,
            on_stack_vma as *mut c_void,
            (&raw mut end).cast(),
            0,
        )
    };
    let room = if end > sp {
        (end - sp) & ALIGN_DOWN
    } else {
        want
    };
    let room = room.min(need).min(want) & ALIGN_DOWN;
    // The record is as big as the next size class above the copy: its
    // size must be a constant (one per branch), and a record much bigger
    // than its copy still costs the ring (and its cache) its room.
    let rec = match room {
        0..=512 => EVENTS.reserve_bytes(STACK_COPY_SIZE + 512, 0),
        513..=1024 => EVENTS.reserve_bytes(STACK_COPY_SIZE + 1024, 0),
        1025..=2048 => EVENTS.reserve_bytes(STACK_COPY_SIZE + 2048, 0),
        2049..=4096 => EVENTS.reserve_bytes(STACK_COPY_SIZE + 4096, 0),
        4097..=8192 => EVENTS.reserve_bytes(STACK_COPY_SIZE + 8192, 0),
        _ => EVENTS.reserve_bytes(STACK_COPY_SIZE + MAX_STACK_BYTES, 0),
    };
    let Some(mut rec) = rec else {
        bump(counter::LOST);
        return 1;
    };
    let cap = (rec.len() - STACK_COPY_SIZE) as u64;
    let base = rec.as_mut_ptr();
    // SAFETY: the reserved record is STACK_COPY_SIZE + `cap` bytes.
    let copied = unsafe { copy_user_stack(base.add(STACK_COPY_SIZE), sp, room.min(cap)) };
    let head = StackCopy {
        magic: STACK_COPY_MAGIC,
        tid: u64::from(tid),
        sp,
        bp,
        len: copied,
    };
    // SAFETY: the record's first STACK_COPY_SIZE bytes; unaligned writes
    // are fine (ring records are 8-byte aligned anyway).
    unsafe { core::ptr::write_unaligned(base.cast::<StackCopy>(), head) };
    rec.submit(wake);
    0
}

#[inline(always)]
fn config() -> u64 {
    // SAFETY: CONFIG is a plain integer written only by the loader; the
    // volatile read stops the compiler from folding in the initial 0.
    unsafe { core::ptr::read_volatile(&CONFIG) }
}

#[inline(always)]
fn current() -> Option<(u32, u32)> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let word = TARGETS.get(tgid / 64)?;
    (word >> (tgid % 64) & 1 != 0).then_some((tgid, pid_tgid as u32))
}

/// Adds process `pid` to the kernel filter, so that its calls are traced
/// from now on.
#[inline(always)]
fn add_target(pid: u32) {
    if let Some(word) = TARGETS.get_ptr_mut(pid / 64) {
        // SAFETY: an 8-byte aligned slot of the map's value memory. Other
        // CPUs may change other bits of it at once, hence an atomic or (the
        // BPF target has no atomic types, only the instruction).
        unsafe {
            core::intrinsics::atomic_or::<u64, u64, { AtomicOrdering::Relaxed }>(
                word,
                1 << (pid % 64),
            )
        };
    }
}

/// Takes process `pid` out of the kernel filter (it exited): done here,
/// not by userspace, which would have to read and write back a word whose
/// other bits this program may be setting at the same moment.
#[inline(always)]
fn remove_target(pid: u32) {
    if let Some(word) = TARGETS.get_ptr_mut(pid / 64) {
        // SAFETY: as in `add_target`.
        unsafe {
            core::intrinsics::atomic_and::<u64, u64, { AtomicOrdering::Relaxed }>(
                word,
                !(1 << (pid % 64)),
            )
        };
    }
}

/// A process not traced yet that matches `--comm` or `--cgroup`: added to
/// the filter (its later calls are traced from the filter alone), and a
/// record tells userspace to read its map. Runs only when one of the two
/// is given, for a mapping call of a process that is not traced: one
/// helper call and a comparison.
///
/// Not inlined, and returning the ids as one word (0: not joined): inlined
/// into the exit program, LLVM left a register unwritten on a path the
/// verifier walks.
#[inline(never)]
fn joined() -> u64 {
    let c = config();
    if c & (config::COMM | config::CGROUP) == 0 {
        return 0;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tgid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    // SAFETY: plain integers written only by the loader.
    if tgid == unsafe { core::ptr::read_volatile(&TRACER_TGID) } {
        return 0;
    }
    let mut why = 0;
    if c & config::COMM != 0 {
        // SAFETY: as above.
        let want = unsafe { core::ptr::read_volatile(&COMM_NAME) };
        if let Ok(comm) = bpf_get_current_comm() {
            let lo = u64::from_ne_bytes([
                comm[0], comm[1], comm[2], comm[3], comm[4], comm[5], comm[6], comm[7],
            ]);
            let hi = u64::from_ne_bytes([
                comm[8], comm[9], comm[10], comm[11], comm[12], comm[13], comm[14], comm[15],
            ]);
            if [lo, hi] == want {
                why = matched::COMM;
            }
        }
    }
    if why == 0 && c & config::CGROUP != 0 {
        // SAFETY: as above; the helper only reads the current task.
        let (id, level) = unsafe {
            (
                core::ptr::read_volatile(&CGROUP_ID),
                core::ptr::read_volatile(&CGROUP_LEVEL),
            )
        };
        // SAFETY: no pointers.
        if unsafe { raw::bpf_get_current_ancestor_cgroup_id(level as i32) } == id {
            why = matched::CGROUP;
        }
    }
    if why == 0 {
        return 0;
    }
    add_target(tgid);
    emit(tgid, tid, kind::MATCHED, why, 0);
    pid_tgid
}

#[inline(always)]
fn bump(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, and a BPF program is not preempted on its CPU.
        unsafe { *slot += 1 };
    }
}

/// A field of a `sys_exit` record, loaded directly: the record is the
/// program's context, which the verifier lets it read without a helper.
#[inline(always)]
fn field<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    // SAFETY: callers pass the offset of an aligned field of type T within
    // the record (see the tracepoint's format file).
    unsafe { core::ptr::read_volatile(ctx.as_ptr().cast::<u8>().add(offset).cast::<T>()) }
}

#[inline(always)]
fn read<T>(ctx: &TracePointContext, offset: usize) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel checks the address; a failure is an error.
    unsafe { ctx.read_at::<T>(offset) }.ok()
}

/// Submit flags: wake the reader only once the ring is a quarter full.
/// Waking it for every record costs the traced thread a self-IPI and a
/// preemption per syscall; the reader also drains on a short timer, so
/// records never wait long.
#[inline(always)]
fn wakeup_flags() -> u64 {
    let avail = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    // SAFETY: as for CONFIG.
    let wake_at = unsafe { core::ptr::read_volatile(&WAKE_AT) };
    if avail >= wake_at {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Reads a u64 at `base + offset` of kernel memory; 0 if unreadable (the
/// helper zeroes its destination on failure). No branch on the result:
/// every branch here multiplies the paths the verifier walks, once per
/// lookup of the walk.
#[inline(always)]
fn kernel_u64(base: u64, offset: u64) -> u64 {
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
fn offsets() -> KernelOffsets {
    // SAFETY: as for CONFIG.
    unsafe { core::ptr::read_volatile(&OFFSETS) }
}

/// `bpf_find_vma`'s callback: copies the fields of the region holding the
/// address into the walk's [`Vma`] (on the caller's stack). Called with
/// the map lock held for reading, so the region cannot change under it.
/// For an anonymous region `vm_file` is null and the reads through it
/// fail, leaving inode and device 0.
#[inline(never)]
extern "C" fn on_vma(_task: *mut c_void, vma: *mut c_void, ctx: *mut c_void) -> i64 {
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

const EBUSY: i64 = 16;
const PAGE: u64 = 4096;
/// How long one call's walk waits, in all, for another thread to release
/// the map lock (`bpf_find_vma` only tries it). Writers hold it for a few
/// microseconds; a call not captured costs the tracer a read of the kernel
/// later and leaves the deltas near it uncertain.
const LOCK_WAIT_NS: u64 = 100_000;
/// Tries of the lock per lookup; the deadline ends the wait first.
const LOCK_TRIES: u32 = 1 << 16;

/// One lookup that waits out a busy map lock (see [`find_waiting`]).
#[repr(C)]
struct Lookup {
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
fn find_waiting(l: &mut Lookup) -> i64 {
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
fn capture_regions(c: &mut Capture, nr: u32, args: &[u64; 6], ret: i64) {
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

#[tracepoint]
pub fn sys_exit(ctx: TracePointContext) -> u32 {
    try_sys_exit(&ctx);
    0
}

/// Fills the fields every record has.
///
/// SAFETY: `h` must point at a reserved, exclusively owned ring buffer slot
/// at least `size_of::<EventHead>()` bytes long.
#[inline(always)]
unsafe fn fill_head(
    h: *mut EventHead,
    tgid: u32,
    tid: u32,
    nr: u32,
    ret: i64,
    args: Option<[u64; 6]>,
) {
    unsafe {
        (*h).exit_ns = bpf_ktime_get_ns();
        (*h).ret = ret;
        (*h).tgid = tgid;
        (*h).tid = tid;
        (*h).kind = nr;
        (*h).stack_len = 0;
        (*h)._pad = 0;
        match args {
            Some(args) => {
                (*h).args = args;
                (*h).flags = 0;
            }
            None => {
                (*h).args = [0; 6];
                (*h).flags = FLAG_NO_ARGS;
            }
        }
    }
}

#[inline(always)]
fn try_sys_exit(ctx: &TracePointContext) -> Option<()> {
    let (tgid, tid) = match current() {
        Some(ids) => ids,
        None => match joined() {
            0 => return None,
            ids => ((ids >> 32) as u32, ids as u32),
        },
    };
    let nr = field::<i32>(ctx, SYSCALL_NR) as u32;
    let ret = field::<i64>(ctx, SYSCALL_RET);
    // Zeros, not an absent value, when there are no registers: every
    // register the verifier sees must be written on every path, and the
    // compiler may otherwise hoist a use of the block out of its branch.
    let (have_regs, regs) = match user_regs() {
        Some(r) => (true, r),
        None => (false, [0; 16]),
    };
    // Syscalls with fewer than six arguments leave garbage in the rest;
    // userspace reads only as many as the syscall takes.
    // Without them the record says so (`FLAG_NO_ARGS`), and userspace
    // asks the kernel about the whole map.
    let args = have_regs.then(|| REGS_ARGS.map(|i| regs[i]));
    let flags = wakeup_flags();
    // The stack is read at exit, straight into the record: the user
    // registers and stack are as they were at entry (the calling thread is
    // inside the syscall), and no map has to carry it from entry to exit.
    match config() & config::STACKS != 0 {
        false => {
            // Built in a per-CPU scratch record and sent with only the
            // regions captured (`capture_len`): most calls capture one to
            // three of the six slots, and a full-size record would fill the
            // ring twice as fast (the ring, not the reader, is what a burst
            // overflows).
            let ev = SCRATCH.get_ptr_mut(0)?;
            // SAFETY: this CPU's scratch slot, used by this program run only
            // (tracepoint programs do not nest on a CPU).
            let len = unsafe {
                fill_head(&raw mut (*ev).head, tgid, tid, nr, ret, args);
                capture_regions(&mut (*ev).capture, nr, &(*ev).head.args, ret);
                capture_len((*ev).capture.count)
            };
            // SAFETY: `len` is at most size_of::<EventCapture>(), the
            // scratch slot's size.
            let bytes = unsafe { core::slice::from_raw_parts(ev.cast::<u8>(), len) };
            if EVENTS.output::<[u8]>(bytes, flags).is_err() {
                bump(counter::LOST);
                return None;
            }
        }
        true => {
            // SAFETY: as for CONFIG.
            let copy = unsafe { core::ptr::read_volatile(&STACK_BYTES) } != 0;
            let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
                bump(counter::LOST);
                return None;
            };
            let ev = entry.as_mut_ptr();
            // SAFETY: a reserved slot of size_of::<Event>() bytes, whose
            // first size_of::<EventHead>() bytes are laid out as an
            // EventHead (asserted in pmap-common).
            unsafe {
                fill_head(ev.cast::<EventHead>(), tgid, tid, nr, ret, args);
                capture_regions(&mut (*ev).capture, nr, &(*ev).args, ret);
                (*ev).stack = [0; MAX_STACK_DEPTH];
                let (len, stack_flags) = match (have_regs, copy) {
                    (false, _) => (0, 0),
                    // Userspace unwinds the copy (frame pointers
                    // included): the walk would only repeat it. The first
                    // two words stay, for when the unwind fails.
                    (true, true) => capture_stack_head(&mut (*ev).stack, &regs),
                    (true, false) => capture_stack(&mut (*ev).stack, &regs),
                };
                (*ev).stack_len = len;
                (*ev).flags |= stack_flags;
            }
            if have_regs && copy {
                send_stack_copy(tid, regs[REGS_SP], regs[0], flags);
            }
            entry.submit(flags);
        }
    }
    Some(())
}

/// Sends a scheduler record (`kind::*`) with two arguments. These are rare
/// and change what the reader must do (re-seed, stop), so they wake it.
#[inline(always)]
fn emit(tgid: u32, tid: u32, what: u32, a0: u64, a1: u64) {
    let Some(mut entry) = EVENTS.reserve::<EventHead>(0) else {
        bump(counter::LOST);
        return;
    };
    let h = entry.as_mut_ptr();
    // SAFETY: a reserved slot of size_of::<EventHead>() bytes.
    unsafe {
        (*h).exit_ns = bpf_ktime_get_ns();
        (*h).args = [a0, a1, 0, 0, 0, 0];
        (*h).ret = 0;
        (*h).tgid = tgid;
        (*h).tid = tid;
        (*h).kind = what;
        (*h).flags = 0;
        (*h).stack_len = 0;
        (*h)._pad = 0;
    }
    entry.submit(BPF_RB_FORCE_WAKEUP as u64);
}

#[tracepoint]
pub fn sched_exec(ctx: TracePointContext) -> u32 {
    if let Some((tgid, tid)) = current() {
        let pid = read::<i32>(&ctx, EXEC_PID).unwrap_or(0) as u64;
        let old = read::<i32>(&ctx, EXEC_OLD_PID).unwrap_or(0) as u64;
        // Userspace finds the map incomplete if this fails part way.
        let _ = exec_map::send(tgid, tid);
        emit(tgid, tid, kind::EXEC, pid, old);
    }
    0
}

#[tracepoint]
pub fn sched_exit(ctx: TracePointContext) -> u32 {
    if let Some((tgid, tid)) = current() {
        let dead = read::<u8>(&ctx, EXIT_GROUP_DEAD).unwrap_or(0) as u64;
        let pid = read::<i32>(&ctx, EXIT_PID).unwrap_or(0) as u64;
        if dead != 0 {
            remove_target(tgid);
        }
        emit(tgid, tid, kind::EXIT, dead, pid);
    }
    0
}

/// Syscall numbers (x86_64) of the calls that create tasks, and the flag
/// that makes a task a thread.
const NR_CLONE: u64 = 56;
const NR_FORK: u64 = 57;
const NR_VFORK: u64 = 58;
const NR_CLONE3: u64 = 435;
const CLONE_THREAD: u64 = 0x10000;
/// Index of `orig_ax` (the syscall number) in [`UserRegs`].
const REGS_NR: usize = 15 - PT_REGS_BP;

/// Whether the task being created by the current call is a process, from
/// the call's own flags (the tracepoint gives only the new task's id).
#[inline(always)]
fn creates_process() -> bool {
    let Some(regs) = user_regs() else {
        return false;
    };
    let a0 = regs[REGS_ARGS[0]];
    let flags = match regs[REGS_NR] {
        NR_FORK | NR_VFORK => 0,
        NR_CLONE => a0,
        // clone3(struct clone_args *): `flags` is its first field.
        NR_CLONE3 => {
            let mut f: u64 = CLONE_THREAD;
            // SAFETY: a probe read checks the user address and writes only
            // `f`, which stays CLONE_THREAD if it fails.
            unsafe {
                raw::bpf_probe_read_user((&raw mut f).cast(), 8, a0 as *const c_void);
            }
            f
        }
        _ => CLONE_THREAD,
    };
    flags & CLONE_THREAD == 0
}

#[tracepoint]
pub fn sched_fork(ctx: TracePointContext) -> u32 {
    if let Some((tgid, tid)) = current() {
        let child = read::<i32>(&ctx, FORK_CHILD_PID).unwrap_or(0) as u32;
        let mut how = 0;
        if creates_process() {
            how = fork::PROCESS;
            // The child cannot run before this returns (it is woken after
            // it is fully made), so it is traced from its first
            // instruction.
            if config() & config::FOLLOW != 0 && child != 0 {
                add_target(child);
                how |= fork::FOLLOWED;
            }
        }
        emit(tgid, tid, kind::FORK, u64::from(child), how);
    }
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
