//! Records that cross the ring buffer from `pmap-ebpf` to `pmap-cli`.
//!
//! Every field has a fixed width, the largest come first and padding is
//! explicit, so both sides agree on the layout byte for byte; the `const`
//! assertions below stop the build if that ever changes.
#![no_std]

pub mod counters;

/// What a record describes. Syscall records carry the syscall's number
/// (x86_64 numbering, as `__syscall_nr` in the tracepoint); the scheduler
/// records use numbers above any syscall.
pub mod kind {
    /// The target (a thread of it) replaced its program with execve.
    pub const EXEC: u32 = 0x1_0000;
    /// A thread of the target exited; `args[0]` is 1 when it was the last
    /// one (the whole process is gone).
    pub const EXIT: u32 = 0x1_0001;
    /// A thread of the target created a task; `args[0]` is the new task's
    /// id, `args[1]` holds [`super::fork`] bits.
    pub const FORK: u32 = 0x1_0002;
    /// A process not traced so far matched `--comm` or `--cgroup` at one of
    /// its mapping calls and was added to the kernel filter; `args[0]` is
    /// [`super::matched`]`::COMM` or `::CGROUP`. Its calls follow.
    pub const MATCHED: u32 = 0x1_0003;
    /// Part of the map the target's new program starts with, read at its
    /// execve before it ran an instruction: sent in parts of at most
    /// [`super::MAX_CAPTURE`] regions (the record's capture) right before
    /// the [`EXEC`] record. See [`super::exec_map`] for its `args`.
    pub const EXEC_MAP: u32 = 0x1_0004;
}

/// The map at an execve ([`kind::EXEC_MAP`] records).
pub mod exec_map {
    /// Most regions the kernel program reads at an execve (a new program
    /// has about 10 to 16: its own segments, the loader's, the stack and
    /// the vDSO's). A power of two: the walk indexes with a mask.
    pub const MAX_REGIONS: usize = 32;
    /// Parts a whole map takes at most.
    pub const MAX_PARTS: usize = MAX_REGIONS.div_ceil(super::MAX_CAPTURE);
    /// Addresses the walk starts from: each finds the run of adjacent
    /// regions around it (the program's segments, the loader's, the
    /// stack, the vDSO's).
    pub const ANCHORS: usize = 8;
    /// `args` of a part: its index (from 0), ...
    pub const ARG_PART: usize = 0;
    /// ... the regions read in all, ...
    pub const ARG_TOTAL: usize = 1;
    /// ... the regions the address space holds (`mm->map_count`: the map
    /// is whole only if the walk found as many), ...
    pub const ARG_MAP_COUNT: usize = 2;
    /// ... where the program break starts (`mm->start_brk`; where it is,
    /// `mm->brk`, is the capture's `brk`), ...
    pub const ARG_START_BRK: usize = 3;
    /// ... the start of the stack (`mm->start_stack`), and ...
    pub const ARG_START_STACK: usize = 4;
    /// ... the vDSO's address (`AT_SYSINFO_EHDR`, 0 if none). The
    /// record's `capture.status` is that of the whole walk.
    pub const ARG_VDSO: usize = 5;
}

/// Why a process joined the trace ([`kind::MATCHED`]'s `args[0]`).
pub mod matched {
    pub const COMM: u64 = 1;
    pub const CGROUP: u64 = 2;
}

/// Bits of a [`kind::FORK`] record's `args[1]`.
pub mod fork {
    /// The new task is a process (created without `CLONE_THREAD`), as the
    /// creating call's flags say. Unset for a thread, and when the call is
    /// not one whose flags the program reads (a task the kernel creates on
    /// the process's behalf, such as an io_uring worker, is a thread).
    pub const PROCESS: u64 = 1;
    /// The new process was added to the kernel filter at its creation
    /// (`config::FOLLOW`): it is traced from its first instruction.
    pub const FOLLOWED: u64 = 2;
}

/// Bit in [`Event::flags`]: the user registers holding the call's arguments
/// could not be read at its exit, so `args` are zero (unknown).
pub const FLAG_NO_ARGS: u32 = 1;
/// Bit in [`Event::flags`]: `stack` holds a user stack (see `stack_len`).
pub const FLAG_STACK: u32 = 2;

/// Bit in [`Event::flags`] (set with `FLAG_STACK`): `stack[1]` is not from
/// the frame-pointer walk but the 8 bytes at the user stack pointer at
/// syscall entry (0 if unreadable). In a leaf syscall wrapper that is the
/// return address into its caller, which the walk misses when the wrapper's
/// library has no frame pointers; it may repeat `stack[2]`, or be data.
pub const FLAG_SP_WORD: u32 = 4;
/// Bit in [`Event::flags`] (set with `FLAG_STACK`): the frame-pointer walk
/// reached the outermost frame (a null frame pointer or return address), so
/// the stack is complete. Without it the walk stopped early: at a frame
/// pointer that was not one (code built without frame pointers), or at
/// [`MAX_STACK_DEPTH`].
pub const FLAG_STACK_END: u32 = 8;

/// Bit in [`Event::flags`] (set with `FLAG_STACK`): `stack` holds frames
/// unwound in userspace from a copy of the user stack ([`StackCopy`]) with
/// the modules' call-frame information, not the kernel's walk: no word at
/// the stack pointer, every entry a frame. `FLAG_STACK_END` then says the
/// unwind reached the outermost frame.
pub const FLAG_UNWOUND: u32 = 16;

/// Deepest user stack the kernel program captures per event.
pub const MAX_STACK_DEPTH: usize = 16;

/// Most bytes of user stack the kernel program copies per event
/// (`--stack-bytes`), for unwinding in userspace.
pub const MAX_STACK_BYTES: usize = 16 << 10;

/// A ring buffer record of its own, sent right after the syscall record
/// it belongs to (same thread) when the kernel program copies the user
/// stack (`config::STACKS` with `STACK_BYTES` > 0): the registers
/// unwinding starts from (the instruction pointer is the syscall record's
/// `stack[0]`), then `len` bytes of the user stack from `sp` up.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackCopy {
    /// [`STACK_COPY_MAGIC`].
    pub magic: u64,
    pub tid: u64,
    pub sp: u64,
    pub bp: u64,
    /// Bytes copied, a multiple of [`STACK_COPY_ALIGN`] (fewer than asked
    /// near the top of the stack; 0 if the stack could not be read). The
    /// record has room for all that was asked; what follows `len` is not
    /// stack.
    pub len: u64,
}

/// Processes whose stack need the kernel program keeps (`STACK_NEED`).
pub const STACK_NEED_ENTRIES: u32 = 4096;

/// Marks a [`StackCopy`] record ("STKCOPY!").
pub const STACK_COPY_MAGIC: u64 = u64::from_le_bytes(*b"STKCOPY!");
/// Byte size of a [`StackCopy`].
pub const STACK_COPY_SIZE: usize = 40;
/// A stack copy's length is a multiple of this, so that no stack copy
/// record has the size of a syscall or scheduler record (asserted below).
pub const STACK_COPY_ALIGN: usize = 64;
/// The smallest stack copy record the kernel program sends (its first size
/// class, 512 bytes of stack): larger than any syscall record without a
/// stack, so that the two never share a size.
pub const STACK_COPY_MIN_RECORD: usize = STACK_COPY_SIZE + 512;
const _: () = assert!(STACK_COPY_MIN_RECORD > EVENT_CAPTURE_SIZE);
const _: () = assert!(core::mem::size_of::<StackCopy>() == STACK_COPY_SIZE);
const _: () = assert!(!(EVENT_HEAD_SIZE - STACK_COPY_SIZE).is_multiple_of(STACK_COPY_ALIGN));
const _: () = assert!(!(EVENT_CAPTURE_SIZE - STACK_COPY_SIZE).is_multiple_of(STACK_COPY_ALIGN));
const _: () = assert!(!(EVENT_SIZE - STACK_COPY_SIZE).is_multiple_of(STACK_COPY_ALIGN));

/// One change-causing call (or scheduler event) of a traced process, as
/// the kernel sends it without a stack: the first [`EVENT_HEAD_SIZE`] bytes
/// of an [`Event`], field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHead {
    pub exit_ns: u64,
    pub args: [u64; 6],
    pub ret: i64,
    pub tgid: u32,
    pub tid: u32,
    pub kind: u32,
    pub flags: u32,
    pub stack_len: u32,
    pub _pad: u32,
}

/// Most regions the kernel program captures for one call. A call whose
/// range holds more regions than this is flagged [`capture::FULL`] and
/// userspace asks the kernel instead.
pub const MAX_CAPTURE: usize = 6;

/// One `vm_area_struct` as the kernel program read it at syscall exit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    /// `vm_flags` (VM_READ 1, VM_WRITE 2, VM_EXEC 4, VM_MAYSHARE 0x80...).
    pub flags: u64,
    /// `vm_pgoff`, in pages.
    pub pgoff: u64,
    /// The mapped file's inode number; 0 for anonymous memory (a file's
    /// inode number is never 0).
    pub ino: u64,
    /// The file's device (`s_dev`, kernel encoding: major << 20 | minor).
    pub dev: u32,
    pub _pad: u32,
}

/// What the kernel program captured at a call's exit: the regions covering
/// the call's range, read before the calling thread ran another instruction.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capture {
    /// `mm->brk` when the map was read (0 if no region was read). Used
    /// by userspace in [`kind::EXEC_MAP`] records only: a syscall's break
    /// is kept from the brk calls themselves, since this one, read at the
    /// end of the exit program, may hold another thread's later brk.
    /// (Leaving it out of the syscall program made LLVM emit code the
    /// verifier refused.)
    pub brk: u64,
    /// One of [`capture`].
    pub status: u32,
    /// Valid entries in `vmas`, in address order.
    pub count: u32,
    pub vmas: [Vma; MAX_CAPTURE],
}

/// [`Capture::status`] values.
pub mod capture {
    /// The call has no range the program walks (or it failed before one).
    pub const NONE: u32 = 0;
    /// Every region of the planned ranges was read.
    pub const OK: u32 = 1;
    /// The map lock was held by another thread (`bpf_find_vma` -EBUSY).
    pub const BUSY: u32 = 2;
    /// The ranges hold more than [`super::MAX_CAPTURE`] regions.
    pub const FULL: u32 = 3;
}

/// Syscall numbers (x86_64) the walk plan needs.
pub mod nr {
    pub const MMAP: u32 = 9;
    pub const MPROTECT: u32 = 10;
    pub const MUNMAP: u32 = 11;
    pub const BRK: u32 = 12;
    pub const MREMAP: u32 = 25;
    pub const MADVISE: u32 = 28;
    pub const SHMAT: u32 = 30;
    pub const MLOCK: u32 = 149;
    pub const MUNLOCK: u32 = 150;
    pub const MBIND: u32 = 237;
    pub const MLOCK2: u32 = 325;
    pub const PKEY_MPROTECT: u32 = 329;
    pub const MSEAL: u32 = 462;
}

/// `MREMAP_DONTUNMAP`: the old range stays mapped after a move.
pub const MREMAP_DONTUNMAP: u64 = 4;
const PAGE: u64 = 4096;

/// Whether a madvise `advice` can change regions (it sets or clears a
/// `vm_flags` bit, which splits and merges them: MADV_NORMAL, RANDOM,
/// SEQUENTIAL, and DONTFORK through KEEPONFORK). The others (DONTNEED,
/// FREE, WILLNEED, COLD, PAGEOUT, POPULATE_*, ...) work on pages only.
#[inline(always)]
pub const fn advice_changes_regions(advice: u64) -> bool {
    advice <= 2 || (advice >= 10 && advice <= 19)
}

/// `x` rounded up to a page (saturating).
#[inline(always)]
pub const fn page_up(x: u64) -> u64 {
    match x.checked_add(PAGE - 1) {
        Some(v) => v & !(PAGE - 1),
        None => !(PAGE - 1),
    }
}

/// Whether a raw syscall return value is an error (-4095..=-1).
#[inline(always)]
pub const fn failed(ret: i64) -> bool {
    ret < 0 && ret >= -4095
}

/// The address range whose regions the kernel program reads at a call's
/// exit, `(0, 0)` for none. It reads the region holding `lo`, then the one
/// starting where that ends, and so on until it passes `hi`; it stops at
/// the first gap. Shared by both sides: userspace uses it to know what a
/// capture covers. A call that only removes regions (munmap, a moving
/// mremap's old range, brk shrinking) needs no walk for that part: the
/// kernel never merges at an unmap, so its effect is known from the call.
#[inline(always)]
pub fn walk_plan(nr: u32, args: &[u64; 6], ret: i64) -> (u64, u64) {
    match nr {
        nr::MMAP if !failed(ret) => (ret as u64, ret as u64 + page_up(args[1])),
        nr::MADVISE if !advice_changes_regions(args[2]) => (0, 0),
        nr::MPROTECT
        | nr::PKEY_MPROTECT
        | nr::MADVISE
        | nr::MLOCK
        | nr::MUNLOCK
        | nr::MLOCK2
        | nr::MBIND
        | nr::MSEAL => (
            args[0] & !(PAGE - 1),
            page_up(args[0].saturating_add(args[1])),
        ),
        // The region just below the new break: the heap as it is now (or
        // whatever lies below an empty heap).
        nr::BRK => {
            let top = page_up(ret as u64);
            (top.saturating_sub(1), top)
        }
        nr::MREMAP if !failed(ret) => (ret as u64, ret as u64 + page_up(args[2])),
        nr::SHMAT if !failed(ret) => (ret as u64, ret as u64 + 1),
        _ => (0, 0),
    }
}

/// Byte offsets of the kernel fields the capture reads, found in the
/// running kernel's BTF at load time (they differ between kernels, and
/// Rust eBPF has no CO-RE field relocations).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub vm_start: u64,
    pub vm_end: u64,
    pub vm_flags: u64,
    pub vm_pgoff: u64,
    pub vm_file: u64,
    pub task_mm: u64,
    pub f_inode: u64,
    pub i_ino: u64,
    pub i_sb: u64,
    pub s_dev: u64,
    pub mm_brk: u64,
    pub mm_start_brk: u64,
    pub mm_start_code: u64,
    pub mm_start_data: u64,
    pub mm_end_data: u64,
    pub mm_start_stack: u64,
    pub mm_map_count: u64,
    pub mm_saved_auxv: u64,
}

/// One change-causing call (or scheduler event) of a traced process, with
/// room for a user stack. Records without a stack (the usual case) cross the
/// ring buffer as an [`EventHead`], and are read back into this type.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// `bpf_ktime_get_ns()` at syscall exit, or when the event happened.
    pub exit_ns: u64,
    /// The syscall's six raw arguments, from the user registers the call
    /// was made with.
    pub args: [u64; 6],
    /// The syscall's return value (negative errno on failure).
    pub ret: i64,
    /// Process id (thread group id) in the initial PID namespace.
    pub tgid: u32,
    /// Thread id in the initial PID namespace.
    pub tid: u32,
    /// A syscall number or one of [`kind`].
    pub kind: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Number of valid entries in `stack`.
    pub stack_len: u32,
    pub _pad: u32,
    /// The regions read at the call's exit (syscall records only).
    pub capture: Capture,
    /// The user stack, innermost first; `stack_len` entries are valid:
    /// the instruction pointer, the word at the stack pointer
    /// (`FLAG_SP_WORD`), then return addresses from the frame-pointer walk.
    pub stack: [u64; MAX_STACK_DEPTH],
}

/// Byte size of a record without a stack ([`EventHead`]).
pub const EVENT_HEAD_SIZE: usize = 8 + 8 * 6 + 8 + 4 * 6;
/// Byte size of a [`Capture`].
pub const CAPTURE_SIZE: usize = 16 + 48 * MAX_CAPTURE;
/// Byte size of a syscall record without a stack ([`EventCapture`]).
pub const EVENT_CAPTURE_SIZE: usize = EVENT_HEAD_SIZE + CAPTURE_SIZE;
/// Byte size of a syscall record without a stack as sent: the head, the
/// capture's header and its first `count` regions (at most
/// [`MAX_CAPTURE`]). Between [`EVENT_HEAD_SIZE`] + 16 and
/// [`EVENT_CAPTURE_SIZE`], never [`EVENT_HEAD_SIZE`] itself.
#[inline(always)]
pub fn capture_len(count: u32) -> usize {
    let n = if count as usize > MAX_CAPTURE {
        MAX_CAPTURE
    } else {
        count as usize
    };
    EVENT_HEAD_SIZE + 16 + 48 * n
}
/// Byte size of a record with a stack ([`Event`]).
pub const EVENT_SIZE: usize = EVENT_CAPTURE_SIZE + 8 * MAX_STACK_DEPTH;
const _: () = assert!(core::mem::size_of::<Vma>() == 48);
const _: () = assert!(core::mem::size_of::<Capture>() == CAPTURE_SIZE);
const _: () = assert!(core::mem::size_of::<EventHead>() == EVENT_HEAD_SIZE);
const _: () = assert!(core::mem::size_of::<EventCapture>() == EVENT_CAPTURE_SIZE);
const _: () = assert!(core::mem::size_of::<Event>() == EVENT_SIZE);
const _: () = assert!(core::mem::offset_of!(Event, capture) == EVENT_HEAD_SIZE);
const _: () = assert!(core::mem::offset_of!(EventCapture, capture) == EVENT_HEAD_SIZE);
const _: () = assert!(core::mem::offset_of!(Event, stack) == EVENT_CAPTURE_SIZE);
const _: () = assert!(core::mem::offset_of!(Event, _pad) == core::mem::offset_of!(EventHead, _pad));
const _: () = assert!(core::mem::align_of::<Event>() == 8);

/// A syscall record without a stack: the head and the capture, the first
/// [`EVENT_CAPTURE_SIZE`] bytes of an [`Event`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventCapture {
    pub head: EventHead,
    pub capture: Capture,
}

impl From<EventCapture> for Event {
    fn from(c: EventCapture) -> Event {
        Event {
            capture: c.capture,
            ..Event::from(c.head)
        }
    }
}

impl From<EventHead> for Event {
    fn from(h: EventHead) -> Event {
        Event {
            exit_ns: h.exit_ns,
            args: h.args,
            ret: h.ret,
            tgid: h.tgid,
            tid: h.tid,
            kind: h.kind,
            flags: h.flags,
            stack_len: 0,
            _pad: h._pad,
            capture: Capture::default(),
            stack: [0; MAX_STACK_DEPTH],
        }
    }
}

/// Words of the kernel's `TARGETS` bitmap, one bit per process id: Linux
/// ids are below `PID_MAX_LIMIT`, 2^22 on 64-bit machines.
pub const TARGET_WORDS: u32 = (1 << 22) / 64;

/// Indices into the per-CPU `COUNTERS` array.
pub mod counter {
    /// Events that did not fit in the ring buffer.
    pub const LOST: u32 = 0;
    /// Number of counters.
    pub const COUNT: u32 = 1;
}

/// Bits of the kernel program's `CONFIG` global.
pub mod config {
    /// Capture the user stack of every syscall event.
    pub const STACKS: u64 = 1;
    /// Follow forks: a process a traced process creates is traced too,
    /// from the moment it is created (`pmap trace -f`).
    pub const FOLLOW: u64 = 2;
    /// Trace every process a thread of which, named `COMM_NAME`, makes a
    /// mapping call (`--comm`).
    pub const COMM: u64 = 4;
    /// Trace every process in the cgroup `CGROUP_ID` (at `CGROUP_LEVEL`) or
    /// below it that makes a mapping call (`--cgroup`).
    pub const CGROUP: u64 = 8;
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all are `repr(C)` with only integer fields and no implicit
    // padding (checked by the size assertions above), so every bit pattern
    // is a valid value.
    unsafe impl aya::Pod for super::Event {}
    unsafe impl aya::Pod for super::EventHead {}
    unsafe impl aya::Pod for super::EventCapture {}
    unsafe impl aya::Pod for super::KernelOffsets {}
    unsafe impl aya::Pod for super::StackCopy {}
    unsafe impl aya::Pod for super::counters::ProcCounters {}
}
