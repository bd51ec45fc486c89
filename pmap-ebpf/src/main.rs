//! Kernel side of `pmap trace`.
//!
//! Two generic programs are attached to the `sys_enter_*` / `sys_exit_*`
//! tracepoints of every memory-mapping syscall (the syscall number is in the
//! record, so one program serves all of them); three more watch exec, exit
//! and task creation. Only tasks whose process id is in `TARGETS` are
//! reported, so nothing about other processes crosses the ring buffer.
#![no_std]
#![no_main]

use core::{ffi::c_void, mem::size_of, ptr::addr_of_mut};

use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_F_USER_STACK, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP,
        BPF_RB_RING_SIZE,
    },
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task_btf, bpf_get_stack, bpf_ktime_get_ns,
        bpf_probe_read_kernel, bpf_probe_read_user, generated::bpf_task_pt_regs,
    },
    macros::{map, tracepoint},
    maps::{HashMap, PerCpuArray, RingBuf},
    programs::TracePointContext,
};
use pmap_common::{
    Event, EventHead, FLAG_NO_ENTER, FLAG_SP_WORD, FLAG_STACK, MAX_STACK_DEPTH, Pending, Stack,
    config, counter, kind,
};

/// Process ids (init namespace) to report. Filled by userspace.
#[map]
static TARGETS: HashMap<u32, u32> = HashMap::with_max_entries(256, 0);

/// Syscall arguments seen at entry, by thread id, until the exit. A plain
/// (preallocated) hash: cheaper per call than an LRU one; the slot of a
/// thread that dies inside a call is freed by `sched_exit`.
#[map]
static PENDING: HashMap<u32, Pending> = HashMap::with_max_entries(16384, 0);

/// With `--stacks`: the user stack seen at entry, by thread id.
#[map]
static PENDING_STACKS: HashMap<u32, Stack> = HashMap::with_max_entries(16384, 0);

/// Records for userspace. The size is set by userspace at load time.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// Per-CPU counters, indexed by `pmap_common::counter`.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Per-CPU room to capture a `Stack` (too large for the 512-byte stack).
#[map]
static SCRATCH: PerCpuArray<Stack> = PerCpuArray::with_max_entries(1, 0);

/// `pmap_common::config` bits, set by userspace at load time.
#[unsafe(no_mangle)]
static CONFIG: u64 = 0;

// Offsets in the tracepoint records (see events/*/format in tracefs).
const SYSCALL_NR: usize = 8;
const SYSCALL_ARGS: usize = 16;
const SYSCALL_RET: usize = 16;
const EXEC_PID: usize = 12;
const EXEC_OLD_PID: usize = 16;
const EXIT_PID: usize = 24;
const EXIT_GROUP_DEAD: usize = 32;
const FORK_CHILD_PID: usize = 20;
/// Offset of `sp` in x86_64's `struct pt_regs` (the 20th 8-byte field).
const PT_REGS_SP: usize = 19 * 8;

/// The 8 bytes at the user stack pointer at syscall entry: in a leaf libc
/// wrapper (mmap, mprotect, ...) the return address into its caller, which
/// a frame-pointer walk misses when libc has no frame pointers. 0 if
/// unreadable.
#[inline(always)]
fn word_at_user_sp() -> u64 {
    // SAFETY: both helpers take the current task, which is valid for the
    // whole program run; a null result is checked.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) };
    if regs == 0 {
        return 0;
    }
    // SAFETY: probe reads check their addresses; a failure is an error.
    unsafe {
        let Ok(sp) = bpf_probe_read_kernel((regs as usize + PT_REGS_SP) as *const u64) else {
            return 0;
        };
        bpf_probe_read_user(sp as *const u64).unwrap_or(0)
    }
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
    // SAFETY: only presence is tested; the value is never read.
    unsafe { TARGETS.get(&tgid) }?;
    Some((tgid, pid_tgid as u32))
}

#[inline(always)]
fn bump(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, and a BPF program is not preempted on its CPU.
        unsafe { *slot += 1 };
    }
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
    let size = EVENTS.query(BPF_RB_RING_SIZE as u64);
    if avail.saturating_mul(4) >= size {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

#[tracepoint]
pub fn sys_enter(ctx: TracePointContext) -> u32 {
    try_sys_enter(&ctx);
    0
}

#[inline(always)]
fn try_sys_enter(ctx: &TracePointContext) -> Option<()> {
    let (_, tid) = current()?;
    // Syscalls with fewer than six arguments leave garbage in the rest;
    // userspace reads only as many as the syscall takes.
    let p = Pending {
        // SAFETY: bpf_ktime_get_ns has no preconditions.
        enter_ns: unsafe { bpf_ktime_get_ns() },
        args: read::<[u64; 6]>(ctx, SYSCALL_ARGS).unwrap_or([0; 6]),
        nr: read::<i32>(ctx, SYSCALL_NR)? as u32,
        _pad: 0,
    };
    if config() & config::STACKS != 0 {
        capture_stack(ctx, tid);
    }
    PENDING.insert(&tid, &p, 0).ok()
}

/// Saves the user stack of the current syscall entry in PENDING_STACKS.
#[inline(always)]
fn capture_stack(ctx: &TracePointContext, tid: u32) -> Option<()> {
    let slot = SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch slot, used only within this program run.
    let st = unsafe { &mut *slot };
    st.len = 0;
    // The frame-pointer walk goes to frames[1..]; then frames[0] gets the
    // instruction pointer and frames[1] the word at the stack pointer (see
    // FLAG_SP_WORD).
    // SAFETY: the buffer is the scratch slot's array from index 1, of the
    // size given.
    let n = unsafe {
        bpf_get_stack(
            ctx.as_ptr(),
            addr_of_mut!(st.frames[1]).cast::<c_void>(),
            (size_of::<u64>() * (MAX_STACK_DEPTH - 1)) as u32,
            BPF_F_USER_STACK as u64,
        )
    };
    if n > 0 {
        st.frames[0] = st.frames[1];
        st.frames[1] = word_at_user_sp();
        st.len = (n as u32) / 8 + 1;
    }
    PENDING_STACKS.insert(&tid, &*st, 0).ok()
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
    p: Option<&Pending>,
) {
    unsafe {
        (*h).exit_ns = bpf_ktime_get_ns();
        (*h).ret = ret;
        (*h).tgid = tgid;
        (*h).tid = tid;
        (*h).kind = nr;
        (*h).stack_len = 0;
        (*h)._pad = 0;
        match p {
            Some(p) => {
                (*h).enter_ns = p.enter_ns;
                (*h).args = p.args;
                (*h).flags = 0;
            }
            None => {
                (*h).enter_ns = 0;
                (*h).args = [0; 6];
                (*h).flags = FLAG_NO_ENTER;
            }
        }
    }
}

#[inline(always)]
fn try_sys_exit(ctx: &TracePointContext) -> Option<()> {
    let (tgid, tid) = current()?;
    let nr = read::<i32>(ctx, SYSCALL_NR)? as u32;
    let ret = read::<i64>(ctx, SYSCALL_RET)?;
    // SAFETY: the value is copied out at once; only this thread writes its
    // own slot, and it is inside this syscall.
    let pending = unsafe { PENDING.get(&tid) }.copied().filter(|p| p.nr == nr);
    if pending.is_none() {
        bump(counter::UNPAIRED);
    }
    let _ = PENDING.remove(&tid);
    let stack = if config() & config::STACKS != 0 {
        // SAFETY: as above.
        let st = unsafe { PENDING_STACKS.get(&tid) }.copied();
        let _ = PENDING_STACKS.remove(&tid);
        st.filter(|_| pending.is_some())
    } else {
        None
    };
    let flags = wakeup_flags();
    match stack {
        None => {
            let Some(mut entry) = EVENTS.reserve::<EventHead>(0) else {
                bump(counter::LOST);
                return None;
            };
            // SAFETY: a reserved slot of size_of::<EventHead>() bytes.
            unsafe { fill_head(entry.as_mut_ptr(), tgid, tid, nr, ret, pending.as_ref()) };
            entry.submit(flags);
        }
        Some(st) => {
            let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
                bump(counter::LOST);
                return None;
            };
            let ev = entry.as_mut_ptr();
            // SAFETY: a reserved slot of size_of::<Event>() bytes, whose
            // first size_of::<EventHead>() bytes are laid out as an
            // EventHead (asserted in pmap-common).
            unsafe {
                fill_head(ev.cast::<EventHead>(), tgid, tid, nr, ret, pending.as_ref());
                (*ev).stack = st.frames;
                (*ev).stack_len = st.len;
                (*ev).flags = if st.len > 0 {
                    FLAG_STACK | FLAG_SP_WORD
                } else {
                    0
                };
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
        (*h).enter_ns = 0;
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
        emit(tgid, tid, kind::EXEC, pid, old);
    }
    0
}

#[tracepoint]
pub fn sched_exit(ctx: TracePointContext) -> u32 {
    if let Some((tgid, tid)) = current() {
        let dead = read::<u8>(&ctx, EXIT_GROUP_DEAD).unwrap_or(0) as u64;
        let pid = read::<i32>(&ctx, EXIT_PID).unwrap_or(0) as u64;
        // A thread that dies inside a call never reaches its exit.
        let _ = PENDING.remove(&tid);
        let _ = PENDING_STACKS.remove(&tid);
        emit(tgid, tid, kind::EXIT, dead, pid);
    }
    0
}

#[tracepoint]
pub fn sched_fork(ctx: TracePointContext) -> u32 {
    if let Some((tgid, tid)) = current() {
        let child = read::<i32>(&ctx, FORK_CHILD_PID).unwrap_or(0) as u64;
        emit(tgid, tid, kind::FORK, child, 0);
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
