//! A target for the exporter tests; prints its pid, does what its first
//! argument says, prints `ready`, and then waits to be killed:
//!
//! - `hold`: nothing more.
//! - `maps N`: maps N one-page regions that cannot merge (alternating
//!   protections), so it ranks first by mappings.
//! - `wx N`: N rounds of a JIT's W^X dance on one page: write code, make it
//!   read-execute, call it, make it read-write again; 2 flips a round.

use std::{ffi::c_void, ptr};

const PAGE: usize = 4096;

fn map(prot: i32) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            PAGE,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "mmap failed");
    p.cast()
}

fn protect(p: *mut u8, prot: i32) {
    // SAFETY: `p` is a page this program mapped and still holds.
    let r = unsafe { libc::mprotect(p.cast::<c_void>(), PAGE, prot) };
    assert_eq!(r, 0, "mprotect failed: {}", std::io::Error::last_os_error());
}

fn wx(rounds: u32) {
    let code = map(libc::PROT_READ | libc::PROT_WRITE);
    for i in 0..rounds {
        // mov eax, i; ret
        let mut insn = [0xb8u8, 0, 0, 0, 0, 0xc3];
        insn[1..5].copy_from_slice(&i.to_le_bytes());
        // SAFETY: the page is writable and 4096 bytes long.
        unsafe { ptr::copy_nonoverlapping(insn.as_ptr(), code, insn.len()) };
        protect(code, libc::PROT_READ | libc::PROT_EXEC);
        // SAFETY: the page holds a complete function of this type and is
        // executable.
        let f: extern "C" fn() -> u32 = unsafe { std::mem::transmute(code) };
        assert_eq!(f(), i);
        protect(code, libc::PROT_READ | libc::PROT_WRITE);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "hold".into());
    let n: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    println!("{}", std::process::id());
    match mode.as_str() {
        "hold" => {}
        "maps" => {
            for i in 0..n {
                let prot = if i % 2 == 0 {
                    libc::PROT_READ
                } else {
                    libc::PROT_READ | libc::PROT_WRITE
                };
                map(prot);
            }
        }
        "wx" => wx(n),
        other => panic!("unknown mode {other:?}: hold, maps N or wx N"),
    }
    println!("ready");
    loop {
        // SAFETY: pause has no preconditions; it returns on a signal.
        unsafe { libc::pause() };
    }
}
