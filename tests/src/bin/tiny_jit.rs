//! A tiny JIT for the insight tests: maps a page read-write, writes a
//! function into it (`mov eax, N; ret`), flips it to read-execute, calls
//! it, flips it back to write the next one, calls that, and unmaps the
//! page; `ROUNDS` times (argument 1, default 20; argument 2: milliseconds
//! to pause after each call, default 10), then lives half a second
//! more. Each flip goes through its own non-inlined function, so a call
//! site can name it.

use std::{ffi::c_void, ptr};

const PAGE: usize = 4096;

#[inline(never)]
fn jit_alloc_rw() -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "mmap failed");
    p.cast()
}

#[inline(never)]
fn jit_make_executable(code: *mut u8) {
    // SAFETY: `code` is the page mapped by jit_alloc_rw.
    let r = unsafe {
        libc::mprotect(
            code.cast::<c_void>(),
            PAGE,
            libc::PROT_READ | libc::PROT_EXEC,
        )
    };
    assert_eq!(r, 0, "mprotect r-x failed");
}

#[inline(never)]
fn jit_make_writable(code: *mut u8) {
    // SAFETY: as above.
    let r = unsafe {
        libc::mprotect(
            code.cast::<c_void>(),
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
        )
    };
    assert_eq!(r, 0, "mprotect rw- failed");
}

#[inline(never)]
fn jit_free(code: *mut u8) {
    // SAFETY: as above; the page is not used after this.
    let r = unsafe { libc::munmap(code.cast::<c_void>(), PAGE) };
    assert_eq!(r, 0, "munmap failed");
}

/// Writes `mov eax, value; ret` at `code`.
fn emit(code: *mut u8, value: u32) {
    let mut insn = [0xb8u8, 0, 0, 0, 0, 0xc3];
    insn[1..5].copy_from_slice(&value.to_le_bytes());
    // SAFETY: the page is writable and 4096 bytes long.
    unsafe { ptr::copy_nonoverlapping(insn.as_ptr(), code, insn.len()) };
}

fn call(code: *mut u8) -> u32 {
    // SAFETY: the page holds a complete function of this type and is
    // executable (jit_make_executable was called after emit).
    let f: extern "C" fn() -> u32 = unsafe { std::mem::transmute(code) };
    f()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let pause_ms: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    // Paced, so that the tracer, which asks the kernel what each call did
    // when it processes the event, sees every state before the next call.
    let pause = || std::thread::sleep(std::time::Duration::from_millis(pause_ms));
    for i in 0..rounds {
        let code = jit_alloc_rw();
        pause();
        emit(code, i);
        jit_make_executable(code);
        pause();
        assert_eq!(call(code), i);
        jit_make_writable(code);
        pause();
        emit(code, i + 1000);
        jit_make_executable(code);
        pause();
        assert_eq!(call(code), i + 1000);
        jit_free(code);
        pause();
    }
    println!("tiny_jit: {rounds} rounds");
    // Stay alive until the tracer has looked at everything.
    std::thread::sleep(std::time::Duration::from_millis(500));
}
