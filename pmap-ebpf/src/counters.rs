//! Kernel side of `pmap exporter`: per-process counters in a hash map keyed
//! by process id, updated in place at the memory-mapping syscall
//! tracepoints. Nothing crosses a ring buffer; userspace reads the map when
//! it is scraped. Unlike `pmap trace`'s programs these count every process
//! on the machine (the exporter chooses what to show).

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    cty::c_void,
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task_btf, generated::bpf_find_vma},
    macros::{map, tracepoint},
    maps::{HashMap, LruHashMap, PerCpuArray},
    programs::TracePointContext,
};
use pmap_common::{
    Vma,
    counters::{MAX_PROCS, ProcCounters, lost, slot},
};

/// Counters by process id (tgid). Allocated on a process's first counted
/// call (`BPF_F_NO_PREALLOC`: memory follows the processes that map, not
/// the limit) and removed when its last thread exits.
#[map]
static PROC_COUNTERS: HashMap<u32, ProcCounters> =
    HashMap::with_max_entries(MAX_PROCS, BPF_F_NO_PREALLOC);

/// The `vm_flags` of the region an mprotect starts at, from its entry to
/// its exit, by thread id. LRU: an entry whose exit was never seen (the
/// exporter attached mid-call) is evicted rather than kept for good.
#[map]
static PENDING_PROT: LruHashMap<u32, u64> = LruHashMap::with_max_entries(4096, 0);

/// Updates that could not be made, by `pmap_common::counters::lost`.
#[map]
static COUNTER_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(lost::COUNT, 0);

const BPF_F_NO_PREALLOC: u32 = 1;
const VM_WRITE: u64 = 2;
const VM_EXEC: u64 = 4;
const PROT_WRITE: u64 = 2;
const PROT_EXEC: u64 = 4;
/// `sys_enter_mprotect`/`sys_enter_pkey_mprotect`: start @16, prot @32.
const ENTER_START: usize = 16;
const ENTER_PROT: usize = 32;

/// Adds one to a counter of a map value. Not atomic: core has no atomic
/// add for the BPF target on stable terms, so two threads of one process
/// counting the same call at the same instant on two CPUs may count it
/// once. A per-CPU map would avoid that at the cost of one value per CPU
/// per process, and cannot hold the shared last region count.
#[inline(always)]
fn add(counter: &mut u64) {
    *counter += 1;
}

#[inline(always)]
fn bump_lost(index: u32) {
    if let Some(slot) = COUNTER_LOST.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, and a BPF program is not preempted on its CPU.
        unsafe { *slot += 1 };
    }
}

/// The current process's regions now (`current->mm->map_count`); 0 if
/// unreadable.
#[inline(always)]
fn map_count() -> u64 {
    let at = crate::offsets().mm_map_count;
    // SAFETY: the current task, valid for the whole program run.
    let task = unsafe { bpf_get_current_task_btf() } as u64;
    let mm = crate::kernel_u64(task, crate::offsets().task_mm);
    if mm == 0 {
        return 0;
    }
    // `map_count` is an int: the low half of the 8 bytes read.
    crate::kernel_u64(mm, at) & 0xffff_ffff
}

/// The counters of process `tgid`, created zeroed on first use.
#[inline(always)]
fn counters(tgid: u32) -> Option<*mut ProcCounters> {
    if let Some(p) = PROC_COUNTERS.get_ptr_mut(&tgid) {
        return Some(p);
    }
    // Another thread may insert it first: NOEXIST fails then, and the
    // lookup below finds that thread's entry.
    let zero = ProcCounters::default();
    if let Err(e) = PROC_COUNTERS.insert(&tgid, &zero, BPF_NOEXIST as u64) {
        const EEXIST: i64 = 17;
        if i64::from(e) != -EEXIST {
            bump_lost(lost::PROC_FULL);
            return None;
        }
    }
    PROC_COUNTERS.get_ptr_mut(&tgid)
}

#[tracepoint]
pub fn count_sys_exit(ctx: TracePointContext) -> u32 {
    try_count_sys_exit(&ctx);
    0
}

#[inline(always)]
fn try_count_sys_exit(ctx: &TracePointContext) -> Option<()> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let nr = crate::field::<i32>(ctx, crate::SYSCALL_NR) as u32;
    let slot = slot(nr)?;
    let p = counters(tgid)?;
    // SAFETY: a value of PROC_COUNTERS, allocated while the program runs.
    let c = unsafe { &mut *p };
    add(c.syscalls.get_mut(slot)?);
    let now = map_count();
    // Raced by other threads of the process (the last writer wins), so a
    // split made between two threads' calls may be credited to either.
    let before = c.map_count;
    c.map_count = now;
    if before != 0 && now > before {
        add(&mut c.splits);
    }
    if nr == pmap_common::nr::MPROTECT || nr == pmap_common::nr::PKEY_MPROTECT {
        let tid = pid_tgid as u32;
        // SAFETY: the value is copied out at once.
        let old = unsafe { PENDING_PROT.get(&tid) }.copied();
        let _ = PENDING_PROT.remove(&tid);
        let ret = crate::field::<i64>(ctx, crate::SYSCALL_RET);
        if let Some(old) = old
            && ret == 0
            && old & FLIP != 0
        {
            add(&mut c.wx_flips);
        }
    }
    Some(())
}

/// Bit kept in `PENDING_PROT` when the call flips W^X (see below).
const FLIP: u64 = 1 << 63;

/// mprotect and pkey_mprotect entry: looks up the region at the start
/// address while its protection is still the old one, and remembers
/// whether the new protection makes a writable region executable or an
/// executable one writable. Only the first region of the range is looked
/// at: a W^X flip (JIT code, trampolines) is nearly always one region.
#[tracepoint]
pub fn count_mprotect_enter(ctx: TracePointContext) -> u32 {
    let prot = crate::field::<u64>(&ctx, ENTER_PROT);
    // Neither bit asked for: no flip possible, nothing to look up.
    if prot & (PROT_WRITE | PROT_EXEC) == 0 {
        return 0;
    }
    let start = crate::field::<u64>(&ctx, ENTER_START);
    let mut v = Vma::default();
    // SAFETY: the current task; the callback has the signature
    // bpf_find_vma expects and its context is the Vma on this stack.
    let r = unsafe {
        bpf_find_vma(
            bpf_get_current_task_btf(),
            start,
            crate::on_vma as *mut c_void,
            (&raw mut v).cast(),
            0,
        )
    };
    if r != 0 {
        // -ENOENT: no region there, the call fails. -EBUSY: unknown.
        const EBUSY: i64 = 16;
        if r == -EBUSY {
            bump_lost(lost::WX_UNKNOWN);
        }
        return 0;
    }
    let flip = (v.flags & VM_WRITE != 0 && prot & PROT_EXEC != 0)
        || (v.flags & VM_EXEC != 0 && prot & PROT_WRITE != 0);
    let tid = bpf_get_current_pid_tgid() as u32;
    let value = if flip { FLIP | v.flags } else { v.flags };
    if PENDING_PROT.insert(&tid, &value, 0).is_err() {
        bump_lost(lost::WX_UNKNOWN);
    }
    0
}

/// Process exit: the last thread's exit removes the process's counters.
#[tracepoint]
pub fn count_sched_exit(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let _ = PENDING_PROT.remove(&(pid_tgid as u32));
    if crate::read::<u8>(&ctx, crate::EXIT_GROUP_DEAD).unwrap_or(0) != 0 {
        let _ = PROC_COUNTERS.remove(&((pid_tgid >> 32) as u32));
    }
    0
}
