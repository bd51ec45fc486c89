//! Unwinding this test's own stack, copied as the kernel program copies a
//! traced thread's: registers and the bytes from the stack pointer up.

use std::fs::File;

use pmap_common::{Event, FLAG_SP_WORD, FLAG_STACK, FLAG_STACK_END, FLAG_UNWOUND, StackCopy};

use super::StackUnwinder;
use crate::{map::model::RegionModel, source::maps};

/// ip, sp, bp and a copy of `len` bytes of stack from sp, taken here.
#[inline(never)]
fn capture(len: usize) -> (u64, u64, u64, Vec<u8>) {
    let (ip, sp, bp): (u64, u64, u64);
    // SAFETY: reads three registers, writes nothing else.
    unsafe {
        std::arch::asm!(
            "lea {ip}, [rip]",
            "mov {sp}, rsp",
            "mov {bp}, rbp",
            ip = out(reg) ip,
            sp = out(reg) sp,
            bp = out(reg) bp,
        );
    }
    // SAFETY: the `len` bytes above this frame's stack pointer are this
    // thread's stack (`outer` keeps 32 KiB of room above; `len` is less).
    let bytes = unsafe { std::slice::from_raw_parts(sp as *const u8, len) }.to_vec();
    (ip, sp, bp, bytes)
}

#[inline(never)]
fn middle(len: usize) -> (u64, u64, u64, Vec<u8>) {
    std::hint::black_box(capture(std::hint::black_box(len)))
}

/// Keeps 32 KiB of its own stack above the capture, so that the copy
/// never runs past the top of the test thread's stack.
#[inline(never)]
fn outer(len: usize) -> (u64, u64, u64, Vec<u8>) {
    let room = std::hint::black_box([0u8; 32 << 10]);
    let got = std::hint::black_box(middle(std::hint::black_box(len)));
    std::hint::black_box(&room);
    got
}

fn own_map() -> RegionModel {
    let f = File::open("/proc/self/maps").expect("open /proc/self/maps");
    RegionModel::new(maps::read(f).expect("read /proc/self/maps"))
}

fn event(ip: u64) -> Event {
    let mut ev = Event {
        tgid: std::process::id(),
        flags: FLAG_STACK | FLAG_SP_WORD,
        stack_len: 1,
        ..Event::default()
    };
    ev.stack[0] = ip;
    ev
}

/// Whether `addr` lies in the first `span` bytes of function `f`.
fn within(addr: u64, f: usize, span: u64) -> bool {
    addr > f as u64 && addr < f as u64 + span
}

#[test]
fn the_callers_of_a_copied_stack_are_found_with_call_frame_information() {
    let (ip, sp, bp, bytes) = outer(16 << 10);
    let model = own_map();
    let mut ev = event(ip);
    let copy = StackCopy {
        sp,
        bp,
        len: bytes.len() as u64,
        ..StackCopy::default()
    };
    let mut unwinder = StackUnwinder::new(16 << 10);
    unwinder.unwind(&mut ev, &copy, &bytes, &model);
    let frames = &ev.stack[..ev.stack_len as usize];
    assert_ne!(ev.flags & FLAG_UNWOUND, 0, "not unwound: {frames:x?}");
    assert_eq!(ev.flags & FLAG_SP_WORD, 0);
    assert_eq!(frames[0], ip);
    // capture <- middle <- outer: return addresses into each; outer's
    // own return address lies beyond its 32 KiB, past the copy, so the
    // unwind stops there and says the stack is cut.
    assert_eq!(frames.len(), 3, "{frames:x?}");
    assert_eq!(ev.flags & FLAG_STACK_END, 0);
    assert!(
        within(frames[1], middle as *const () as usize, 0x400),
        "{frames:x?}"
    );
    assert!(
        within(frames[2], outer as *const () as usize, 0x400),
        "{frames:x?}"
    );
}

#[test]
fn a_short_copy_keeps_the_kernels_walk_and_says_nothing_it_does_not_know() {
    let (ip, sp, bp, bytes) = outer(16 << 10);
    let model = own_map();
    // The kernel's walk had found two frames; a copy of 8 bytes cannot
    // get past the first frame, so the walk is kept as it was.
    let mut ev = event(ip);
    ev.stack[1] = 0x1234;
    ev.stack_len = 2;
    let copy = StackCopy {
        sp,
        bp,
        len: 8,
        ..StackCopy::default()
    };
    let before = ev;
    StackUnwinder::new(16 << 10).unwind(&mut ev, &copy, &bytes[..8], &model);
    assert_eq!(ev, before);
    assert_eq!(ev.flags & (FLAG_UNWOUND | FLAG_STACK_END), 0);
}

#[test]
fn the_copy_is_shortened_to_what_unwinds_read_and_lengthened_when_short() {
    let mut need = super::Need::default();
    let asked = 8192;
    for _ in 1..super::LEARN {
        assert_eq!(need.learn(700, false, asked), None);
    }
    // The deepest read (1000) plus the margin (256), in 512-byte steps.
    assert_eq!(need.learn(1000, false, asked), Some(1536));
    assert_eq!(need.learn(900, false, asked), None);
    // An unwind that ran out of copy doubles it, up to --stack-bytes.
    assert_eq!(need.learn(1536, true, asked), Some(3072));
    assert_eq!(need.learn(3072, true, asked), Some(6144));
    assert_eq!(need.learn(6144, true, asked), Some(8192));
    assert_eq!(need.learn(8192, true, asked), None);
    // Stacks as deep as the copy: nothing to shorten.
    let mut deep = super::Need::default();
    for _ in 0..super::LEARN {
        assert_eq!(deep.learn(7900, false, asked), None);
    }
}

#[test]
fn a_process_starts_with_a_short_copy_that_doubles_when_short() {
    let mut u = StackUnwinder::new(8192);
    assert_eq!(u.first_copy(7), Some(super::FIRST_COPY));
    let need = &mut u.procs.get_mut(&7).expect("remembered").need;
    // A first unwind that wanted more than the short copy doubles it.
    assert_eq!(
        need.learn(super::FIRST_COPY, true, 8192),
        Some(2 * super::FIRST_COPY)
    );
    // Copies already that short, or none: nothing to set.
    assert_eq!(StackUnwinder::new(1024).first_copy(7), None);
    assert_eq!(StackUnwinder::new(0).first_copy(7), None);
}
