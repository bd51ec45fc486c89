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
/// The user stack of a traced call (`--stacks`).
mod stack;
/// The regions a traced call changed, read at its exit.
mod walk;

use stack::{capture_stack, capture_stack_head, send_stack_copy};
use walk::{EBUSY, LOCK_WAIT_NS, capture_regions, kernel_u64, offsets, on_vma};

use aya_ebpf::cty::c_void;
use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task_btf, bpf_ktime_get_ns,
        generated::{self as raw, bpf_task_pt_regs},
    },
    macros::{map, tracepoint},
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
    programs::TracePointContext,
};
use pmap_common::{
    Event, EventCapture, EventHead, FLAG_NO_ARGS, KernelOffsets, MAX_STACK_DEPTH,
    STACK_NEED_ENTRIES, TARGET_WORDS, capture_len, config, counter, fork, kind, matched,
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
