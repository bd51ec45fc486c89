//! The ring buffer record decoder: any bytes the kernel side could hand over
//! decode to an event or are refused, never a crash; a decoded event
//! re-encodes to the same bytes; exactly the well-formed records decode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmap_cli::source::kernel::records::decode;
use pmap_common::{
    EVENT_CAPTURE_SIZE, EVENT_HEAD_SIZE, EVENT_SIZE, Event, MAX_CAPTURE, capture_len,
};

/// Where a syscall record without a stack keeps its capture's region count
/// (the capture's header: brk u64, status u32, count u32).
const COUNT_AT: usize = EVENT_HEAD_SIZE + 12;

/// Whether `data` is a well-formed record: a scheduler record's head, a
/// syscall record cut after the regions its capture claims, or a whole
/// event with its stack; only the last may claim a stack.
fn well_formed(data: &[u8]) -> bool {
    let n = data.len();
    let claims_stack =
        n >= EVENT_HEAD_SIZE && data[EVENT_HEAD_SIZE - 8..EVENT_HEAD_SIZE - 4] != [0; 4];
    if n == EVENT_SIZE {
        return true;
    }
    if n == EVENT_HEAD_SIZE {
        return !claims_stack;
    }
    if n < COUNT_AT + 4 || n > EVENT_CAPTURE_SIZE || claims_stack {
        return false;
    }
    let count = u32::from_ne_bytes(data[COUNT_AT..COUNT_AT + 4].try_into().expect("4 bytes"));
    count as usize <= MAX_CAPTURE && capture_len(count) == n
}

fuzz_target!(|data: &[u8]| {
    let Some(ev) = decode(data) else {
        assert!(!well_formed(data), "a well-formed record was refused");
        return;
    };
    assert!(well_formed(data), "a malformed record was accepted");
    // SAFETY: Event is repr(C), Copy, of integer fields with explicit padding,
    // so viewing it as EVENT_SIZE bytes reads only initialised memory.
    let bytes =
        unsafe { std::slice::from_raw_parts((&ev as *const Event).cast::<u8>(), EVENT_SIZE) };
    // A shorter record (a scheduler record's head, a syscall record
    // without a stack, cut after its regions) is the start of an Event; the
    // rest reads as zeros.
    assert_eq!(&bytes[..data.len()], data, "decode changed the record");
    assert!(bytes[data.len()..].iter().all(|&b| b == 0));
});
