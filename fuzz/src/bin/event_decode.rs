//! The ring buffer record decoder: any bytes the kernel side could hand over
//! decode to an event or are refused, never a crash; a decoded event
//! re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmap_cli::trace::probes::decode;
use pmap_common::{EVENT_HEAD_SIZE, EVENT_SIZE, Event};

fuzz_target!(|data: &[u8]| {
    let Some(ev) = decode(data) else {
        // stack_len sits in the head's last 8 bytes but one u32.
        let claims_stack = data.len() == EVENT_HEAD_SIZE
            && data[EVENT_HEAD_SIZE - 8..EVENT_HEAD_SIZE - 4] != [0; 4];
        assert!(
            claims_stack || (data.len() != EVENT_SIZE && data.len() != EVENT_HEAD_SIZE),
            "a well-formed record was refused"
        );
        return;
    };
    assert!(data.len() == EVENT_SIZE || data.len() == EVENT_HEAD_SIZE);
    // SAFETY: Event is repr(C), Copy, of integer fields with explicit padding,
    // so viewing it as EVENT_SIZE bytes reads only initialised memory.
    let bytes =
        unsafe { std::slice::from_raw_parts((&ev as *const Event).cast::<u8>(), EVENT_SIZE) };
    // A record without a stack is the head of an Event; the rest reads as
    // zeros (no stack) except stack_len, which is 0 as well.
    assert_eq!(&bytes[..data.len()], data, "decode changed the record");
    if data.len() == EVENT_HEAD_SIZE {
        assert!(bytes[EVENT_HEAD_SIZE..].iter().all(|&b| b == 0));
    }
});
