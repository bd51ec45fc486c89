//! Records that cross the ring buffer from `pmap-ebpf` to `pmap-cli`.
//!
//! Every field has a fixed width, the largest come first and padding is
//! explicit, so both sides agree on the layout byte for byte; the `const`
//! assertions below stop the build if that ever changes.
#![no_std]

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
    /// id. Whether it is a thread (same process) is decided in userspace.
    pub const FORK: u32 = 0x1_0002;
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

/// Deepest user stack the kernel program captures per event.
pub const MAX_STACK_DEPTH: usize = 16;

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
    /// The user stack, innermost first; `stack_len` entries are valid:
    /// the instruction pointer, the word at the stack pointer
    /// (`FLAG_SP_WORD`), then return addresses from the frame-pointer walk.
    pub stack: [u64; MAX_STACK_DEPTH],
}

/// Byte size of a record without a stack ([`EventHead`]).
pub const EVENT_HEAD_SIZE: usize = 8 + 8 * 6 + 8 + 4 * 6;
/// Byte size of a record with a stack ([`Event`]).
pub const EVENT_SIZE: usize = EVENT_HEAD_SIZE + 8 * MAX_STACK_DEPTH;
const _: () = assert!(core::mem::size_of::<EventHead>() == EVENT_HEAD_SIZE);
const _: () = assert!(core::mem::size_of::<Event>() == EVENT_SIZE);
const _: () = assert!(core::mem::offset_of!(Event, stack) == EVENT_HEAD_SIZE);
const _: () = assert!(core::mem::offset_of!(Event, _pad) == core::mem::offset_of!(EventHead, _pad));
const _: () = assert!(core::mem::align_of::<Event>() == 8);

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
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all are `repr(C)` with only integer fields and no implicit
    // padding (checked by the size assertions above), so every bit pattern
    // is a valid value.
    unsafe impl aya::Pod for super::Event {}
    unsafe impl aya::Pod for super::EventHead {}
}
