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
    bindings::BPF_F_USER_STACK,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task_btf, bpf_get_stack, bpf_ktime_get_ns,
        bpf_probe_read_kernel, bpf_probe_read_user, generated::bpf_task_pt_regs,
    },
    macros::{map, tracepoint},
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::TracePointContext,
};
use pmap_common::{
    Event, FLAG_NO_ENTER, FLAG_SP_WORD, FLAG_STACK, MAX_STACK_DEPTH, Pending, config, counter, kind,
};

/// Process ids (init namespace) to report. Filled by userspace.
#[map]
static TARGETS: HashMap<u32, u32> = HashMap::with_max_entries(256, 0);

/// Syscall arguments seen at entry, by thread id, until the exit. LRU so that
/// a thread that dies inside a call cannot leak a slot for good.
#[map]
static PENDING: LruHashMap<u32, Pending> = LruHashMap::with_max_entries(16384, 0);

/// Records for userspace. The size is set by userspace at load time.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// Per-CPU counters, indexed by `pmap_common::counter`.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Per-CPU room to build a `Pending` (too large for the 512-byte stack).
#[map]
static SCRATCH: PerCpuArray<Pending> = PerCpuArray::with_max_entries(1, 0);

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

#[tracepoint]
pub fn sys_enter(ctx: TracePointContext) -> u32 {
    try_sys_enter(&ctx);
    0
}

#[inline(always)]
fn try_sys_enter(ctx: &TracePointContext) -> Option<()> {
    let (_, tid) = current()?;
    let slot = SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch slot, used only within this program run.
    let p = unsafe { &mut *slot };
    p.nr = read::<i32>(ctx, SYSCALL_NR)? as u32;
    // Syscalls with fewer than six arguments leave garbage in the rest;
    // userspace reads only as many as the syscall takes.
    let mut i = 0;
    while i < 6 {
        p.args[i] = read::<u64>(ctx, SYSCALL_ARGS + 8 * i).unwrap_or(0);
        i += 1;
    }
    p.enter_ns = unsafe { bpf_ktime_get_ns() };
    p.stack_len = 0;
    if config() & config::STACKS != 0 {
        // The frame-pointer walk goes to stack[1..]; then stack[0] gets the
        // instruction pointer and stack[1] the word at the stack pointer
        // (see FLAG_SP_WORD).
        // SAFETY: the buffer is the scratch slot's array from index 1, of
        // the size given.
        let n = unsafe {
            bpf_get_stack(
                ctx.as_ptr(),
                addr_of_mut!(p.stack[1]).cast::<c_void>(),
                (size_of::<u64>() * (MAX_STACK_DEPTH - 1)) as u32,
                BPF_F_USER_STACK as u64,
            )
        };
        if n > 0 {
            p.stack[0] = p.stack[1];
            p.stack[1] = word_at_user_sp();
            p.stack_len = (n as u32) / 8 + 1;
        }
    }
    PENDING.insert(&tid, &*p, 0).ok()
}

#[tracepoint]
pub fn sys_exit(ctx: TracePointContext) -> u32 {
    try_sys_exit(&ctx);
    0
}

#[inline(always)]
fn try_sys_exit(ctx: &TracePointContext) -> Option<()> {
    let (tgid, tid) = current()?;
    let nr = read::<i32>(ctx, SYSCALL_NR)? as u32;
    let ret = read::<i64>(ctx, SYSCALL_RET)?;
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        bump(counter::LOST);
        let _ = PENDING.remove(&tid);
        return None;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at a reserved, exclusively owned ring buffer slot
    // of size_of::<Event>() bytes; every field is written before submit.
    unsafe {
        (*ev).exit_ns = bpf_ktime_get_ns();
        (*ev).ret = ret;
        (*ev).tgid = tgid;
        (*ev).tid = tid;
        (*ev).kind = nr;
        (*ev)._pad = 0;
        match PENDING.get_ptr(&tid) {
            Some(p) if (*p).nr == nr => {
                (*ev).enter_ns = (*p).enter_ns;
                (*ev).args = (*p).args;
                (*ev).stack = (*p).stack;
                (*ev).stack_len = (*p).stack_len;
                (*ev).flags = if (*p).stack_len > 0 {
                    FLAG_STACK | FLAG_SP_WORD
                } else {
                    0
                };
            }
            _ => {
                (*ev).enter_ns = 0;
                (*ev).args = [0; 6];
                (*ev).stack = [0; MAX_STACK_DEPTH];
                (*ev).stack_len = 0;
                (*ev).flags = FLAG_NO_ENTER;
                bump(counter::UNPAIRED);
            }
        }
    }
    entry.submit(0);
    let _ = PENDING.remove(&tid);
    Some(())
}

/// Sends a scheduler record (`kind::*`) with two arguments.
#[inline(always)]
fn emit(tgid: u32, tid: u32, what: u32, a0: u64, a1: u64) {
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        bump(counter::LOST);
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: as in try_sys_exit.
    unsafe {
        (*ev).enter_ns = 0;
        (*ev).exit_ns = bpf_ktime_get_ns();
        (*ev).args = [a0, a1, 0, 0, 0, 0];
        (*ev).ret = 0;
        (*ev).stack = [0; MAX_STACK_DEPTH];
        (*ev).tgid = tgid;
        (*ev).tid = tid;
        (*ev).kind = what;
        (*ev).flags = 0;
        (*ev).stack_len = 0;
        (*ev)._pad = 0;
    }
    entry.submit(0);
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
