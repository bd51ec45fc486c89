//! The user stack of a traced call (`--stacks`): the frame-pointer walk
//! the syscall record carries, and the copy of the stack's top that goes
//! in a record of its own for userspace to unwind with the modules'
//! call-frame information (`--stack-bytes`).

use aya_ebpf::{
    cty::c_void,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task_btf, bpf_probe_read_user,
        generated::{self as raw, bpf_find_vma},
    },
};
use pmap_common::{
    FLAG_SP_WORD, FLAG_STACK, FLAG_STACK_END, MAX_STACK_BYTES, MAX_STACK_DEPTH, STACK_COPY_ALIGN,
    STACK_COPY_MAGIC, STACK_COPY_SIZE, StackCopy,
};

use crate::{
    EVENTS, REGS_IP, REGS_SP, STACK_BYTES, STACK_NEED, UserRegs, bump, counter,
    walk::{kernel_u64, offsets},
};

/// How far above the stack pointer a frame pointer may lie and still be
/// followed: the default thread stack size (8 MiB). Farther, it is not a
/// frame pointer into this stack but whatever the code (built without frame
/// pointers) kept in the register, and reading it would likely fault.
const MAX_FRAME_SPAN: u64 = 8 << 20;

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
pub(crate) fn capture_stack(stack: &mut [u64; MAX_STACK_DEPTH], regs: &UserRegs) -> (u32, u32) {
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
pub(crate) fn capture_stack_head(
    stack: &mut [u64; MAX_STACK_DEPTH],
    regs: &UserRegs,
) -> (u32, u32) {
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
pub(crate) fn send_stack_copy(tid: u32, sp: u64, bp: u64, wake: u64) -> u32 {
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
