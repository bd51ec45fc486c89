//! The command line of a core's process, for the header, as the live
//! header prints it (`PID:   command args`, escaped as procps-ng does).
//!
//! A kernel core holds it in `NT_PRPSINFO`'s `pr_psargs`, cut at 79 bytes;
//! gdb's gcore puts only `argv[0]` there. The whole `argv` is on the
//! initial stack, which both dump: the auxiliary vector (of which `NT_AUXV`
//! is a copy) follows `argc`, `argv[]`, NULL, `envp[]`, NULL there, so
//! finding it finds `argv`.

use super::memory::CoreMem;
use super::notes::AT_EXECFN;
use crate::map::core::CoreProcess;
use crate::source::link_map::read_c_string;

/// The header's command: `argv` from the stack when it is there and agrees
/// with `pr_psargs`, else `pr_psargs`, else `pr_fname`; escaped like a live
/// `/proc/PID/cmdline`.
pub fn command(mem: Option<&CoreMem>, process: &CoreProcess) -> Vec<u8> {
    let from_stack = mem
        .and_then(argv_from_stack)
        .filter(|argv| joined(argv).starts_with(&process.psargs));
    let raw = match from_stack {
        Some(argv) => argv
            .iter()
            .flat_map(|a| a.iter().chain([&0]))
            .copied()
            .collect(),
        None if !process.psargs.is_empty() => process.psargs.clone(),
        None => process.fname.clone(),
    };
    crate::source::process::escape_cmdline(raw).unwrap_or_default()
}

fn joined(argv: &[Vec<u8>]) -> Vec<u8> {
    argv.join(&b' ')
}

/// `argv` as it lies on the dumped initial stack, if it can be found.
fn argv_from_stack(mem: &CoreMem) -> Option<Vec<Vec<u8>>> {
    let execfn = mem.auxv.iter().find(|&&(t, _)| t == AT_EXECFN)?.1;
    let (base, stack) = mem.segment_bytes(execfn)?;
    // The vector up to and including its AT_NULL entry.
    let len = (mem.auxv.len() + 1) * 16;
    let needle = mem.auxv_raw.get(..len)?;
    let word = |at: usize| -> Option<u64> {
        Some(u64::from_ne_bytes(stack.get(at..at + 8)?.try_into().ok()?))
    };
    // `memchr`'s own search, not `sys::bytes`: a needle of hundreds of
    // bytes in a whole stack segment, where its SIMD pays for the one
    // question about the CPU it asks.
    let at = memchr::memmem::find_iter(&stack, needle).find(|p| p % 8 == 0)?;
    // envp's NULL, then envp back to argv's NULL.
    let mut p = at.checked_sub(8)?;
    if word(p)? != 0 {
        return None;
    }
    loop {
        p = p.checked_sub(8)?;
        if word(p)? == 0 {
            break;
        }
    }
    // argv back to argc, which equals the number of pointers walked.
    let mut pointers = Vec::new();
    loop {
        p = p.checked_sub(8)?;
        let v = word(p)?;
        if v == pointers.len() as u64 {
            break;
        }
        if v < base || pointers.len() > 4096 {
            return None; // Not a pointer into the stack: not argv.
        }
        pointers.push(v);
    }
    pointers.reverse();
    if pointers.is_empty() {
        return None;
    }
    // At most what a live /proc/PID/cmdline gives (128 KiB).
    let mut argv = Vec::new();
    let mut total = 0;
    for a in pointers {
        let arg = read_c_string(mem, a);
        total += arg.len() + 1;
        argv.push(arg);
        if total >= 128 * 1024 {
            break;
        }
    }
    Some(argv)
}
