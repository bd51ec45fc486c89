//! The ring buffer record decoder: any bytes the kernel side could hand over
//! decode to an event or are refused, never a crash; a decoded event
//! re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmap_cli::cmd::trace::probes::decode;
use pmap_common::{EVENT_CAPTURE_SIZE, EVENT_HEAD_SIZE, EVENT_SIZE, Event};

fuzz_target!(|data: &[u8]| {
    let Some(ev) = decode(data) else {
        // stack_len sits in the head's last 8 bytes but one u32.
        let short = data.len() == EVENT_HEAD_SIZE || data.len() == EVENT_CAPTURE_SIZE;
        let claims_stack = short && data[EVENT_HEAD_SIZE - 8..EVENT_HEAD_SIZE - 4] != [0; 4];
        assert!(
            claims_stack || (data.len() != EVENT_SIZE && !short),
            "a well-formed record was refused"
        );
        return;
    };
    assert!([EVENT_HEAD_SIZE, EVENT_CAPTURE_SIZE, EVENT_SIZE].contains(&data.len()));
    // SAFETY: Event is repr(C), Copy, of integer fields with explicit padding,
    // so viewing it as EVENT_SIZE bytes reads only initialised memory.
    let bytes =
        unsafe { std::slice::from_raw_parts((&ev as *const Event).cast::<u8>(), EVENT_SIZE) };
    // A shorter record (a scheduler record's head, a syscall record
    // without a stack) is the start of an Event; the rest reads as zeros.
    assert_eq!(&bytes[..data.len()], data, "decode changed the record");
    assert!(bytes[data.len()..].iter().all(|&b| b == 0));
});
