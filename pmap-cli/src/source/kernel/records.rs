//! The records the kernel programs send through the ring buffer, decoded:
//! a scheduler record's `EventHead`, a syscall record's `EventCapture` cut
//! after its captured regions, a whole `Event` with its stack, and the
//! stack copies of `--stacks`. Untrusted bytes: a record of any other
//! shape is refused, never misread (fuzzed: `fuzz/src/bin/event_decode.rs`).

use pmap_common::{
    EVENT_CAPTURE_SIZE, EVENT_HEAD_SIZE, EVENT_SIZE, Event, EventCapture, EventHead, MAX_CAPTURE,
    STACK_COPY_MAGIC, STACK_COPY_MIN_RECORD, STACK_COPY_SIZE, StackCopy, capture_len,
};

/// Decodes one ring buffer record (a scheduler record's `EventHead`, a
/// syscall record's `EventCapture` cut after its captured regions, see
/// `capture_len`, or a whole `Event` with its stack); `None` if its size is
/// none of these, a record without a stack claims one, or a capture claims
/// more regions than its record holds.
pub fn decode(bytes: &[u8]) -> Option<Event> {
    match bytes.len() {
        // SAFETY: the length is exactly size_of::<EventHead>(), a repr(C)
        // struct of integers only (any bit pattern is valid), and
        // read_unaligned does not require the slice to be aligned.
        // A record without a stack that claims one is malformed.
        EVENT_HEAD_SIZE => {
            Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<EventHead>()) })
                .filter(|h| h.stack_len == 0)
                .map(Event::from)
        }
        // SAFETY: as above, for size_of::<Event>().
        EVENT_SIZE => Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<Event>()) }),
        n if is_capture_size(n) => {
            // The regions not sent stay zero.
            let mut full = [0u8; EVENT_CAPTURE_SIZE];
            full[..n].copy_from_slice(bytes);
            // SAFETY: as above, for size_of::<EventCapture>().
            let c = unsafe { std::ptr::read_unaligned(full.as_ptr().cast::<EventCapture>()) };
            let fits = c.capture.count as usize <= MAX_CAPTURE && capture_len(c.capture.count) == n;
            (c.head.stack_len == 0 && fits).then(|| Event::from(c))
        }
        _ => None,
    }
}

/// Whether `n` is the size of a syscall record without a stack, cut after
/// its captured regions (see `capture_len`).
fn is_capture_size(n: usize) -> bool {
    n > EVENT_HEAD_SIZE && n <= EVENT_CAPTURE_SIZE && (n - EVENT_HEAD_SIZE) % 48 == 16
}

/// Whether `n` is the size of an event record (not a stack copy).
fn is_event_size(n: usize) -> bool {
    n == EVENT_HEAD_SIZE || n == EVENT_SIZE || is_capture_size(n)
}

/// Decodes a stack copy record (`pmap_common::StackCopy`): the registers
/// and the copied bytes; `None` for any other record, or one shorter than
/// it says.
pub fn decode_copy(bytes: &[u8]) -> Option<(StackCopy, &[u8])> {
    if bytes.len() < STACK_COPY_MIN_RECORD || is_event_size(bytes.len()) {
        return None;
    }
    let head = bytes.get(..STACK_COPY_SIZE)?;
    // SAFETY: exactly size_of::<StackCopy>() bytes of a repr(C) struct of
    // integers; read_unaligned does not require alignment.
    let copy = unsafe { std::ptr::read_unaligned(head.as_ptr().cast::<StackCopy>()) };
    // The record has room for the whole copy asked for; `len` says how
    // much of it was copied.
    let data = bytes[STACK_COPY_SIZE..].get(..usize::try_from(copy.len).ok()?)?;
    (copy.magic == STACK_COPY_MAGIC).then_some((copy, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stack_copy_record_decodes_only_when_marked_and_its_length_matches() {
        let mut raw = vec![0u8; STACK_COPY_MIN_RECORD];
        raw[..8].copy_from_slice(&pmap_common::STACK_COPY_MAGIC.to_ne_bytes());
        raw[8..16].copy_from_slice(&42u64.to_ne_bytes()); // tid
        raw[16..24].copy_from_slice(&0x7ff0u64.to_ne_bytes()); // sp
        raw[32..40].copy_from_slice(&64u64.to_ne_bytes()); // len
        raw[40..48].copy_from_slice(&0x1234u64.to_ne_bytes());
        let (copy, data) = decode_copy(&raw).expect("decodes");
        assert_eq!((copy.tid, copy.sp, copy.len), (42, 0x7ff0, 64));
        assert_eq!(&data[..8], &0x1234u64.to_ne_bytes());
        // Room for more than was copied: only what was copied is stack.
        let mut longer = raw.clone();
        longer.extend_from_slice(&[0xff; 64]);
        let (_, data) = decode_copy(&longer).expect("decodes");
        assert_eq!(data.len(), 64);
        // Shorter than the smallest copy record: a syscall record's size.
        assert!(decode_copy(&raw[..capture_len(0)]).is_none());
        assert!(
            decode_copy(&raw[..STACK_COPY_SIZE + 8]).is_none(),
            "shorter than it says"
        );
        raw[0] ^= 1;
        assert!(decode_copy(&raw).is_none(), "not marked");
        // A syscall record is never taken for a copy.
        assert!(decode_copy(&[0u8; EVENT_SIZE]).is_none());
    }

    #[test]
    fn decode_rejects_wrong_sizes() {
        assert!(decode(&[]).is_none());
        assert!(decode(&[0u8; EVENT_HEAD_SIZE - 1]).is_none());
        assert!(decode(&[0u8; EVENT_HEAD_SIZE + 8]).is_none());
        assert!(decode(&[0u8; EVENT_SIZE + 8]).is_none());
        let ev = decode(&[0u8; EVENT_SIZE]).expect("a zeroed record decodes");
        assert_eq!(ev.kind, 0);
    }

    #[test]
    fn a_capture_record_holds_exactly_its_regions() {
        let mut c = EventCapture::default();
        c.head.kind = 9;
        c.capture.count = 2;
        c.capture.vmas[0].start = 0x1000;
        c.capture.vmas[1].end = 0x3000;
        // SAFETY: a repr(C) struct of integers, viewed as its bytes.
        let bytes =
            unsafe { std::slice::from_raw_parts((&raw const c).cast::<u8>(), EVENT_CAPTURE_SIZE) };
        let n = capture_len(2);
        let ev = decode(&bytes[..n]).expect("a record cut after its regions decodes");
        assert_eq!((ev.kind, ev.capture.count), (9, 2));
        assert_eq!(
            (ev.capture.vmas[0].start, ev.capture.vmas[1].end),
            (0x1000, 0x3000)
        );
        assert_eq!(ev.capture.vmas[2], pmap_common::Vma::default());
        // Claiming a third region the record does not hold is malformed.
        assert!(decode(&bytes[..capture_len(1)]).is_none());
        assert!(decode(&bytes[..n + 8]).is_none());
        // The full size still decodes (count 2 of 6: not cut, malformed).
        assert!(decode(bytes).is_none());
        c.capture.count = 7;
        // SAFETY: as above.
        let bytes =
            unsafe { std::slice::from_raw_parts((&raw const c).cast::<u8>(), EVENT_CAPTURE_SIZE) };
        assert!(decode(bytes).is_none());
    }

    #[test]
    fn decode_reads_fields_in_order() {
        let mut raw = [0u8; EVENT_SIZE];
        raw[0..8].copy_from_slice(&7u64.to_ne_bytes()); // exit_ns
        raw[8..16].copy_from_slice(&0x1234u64.to_ne_bytes()); // args[0]
        let tgid_at = 8 + 8 * 6 + 8;
        raw[tgid_at..tgid_at + 4].copy_from_slice(&42u32.to_ne_bytes());
        raw[EVENT_HEAD_SIZE..EVENT_HEAD_SIZE + 8].copy_from_slice(&0x5000u64.to_ne_bytes()); // brk
        raw[EVENT_CAPTURE_SIZE..EVENT_CAPTURE_SIZE + 8].copy_from_slice(&0xabcu64.to_ne_bytes());
        let ev = decode(&raw).expect("decodes");
        assert_eq!(
            (ev.exit_ns, ev.args[0], ev.tgid, ev.capture.brk, ev.stack[0]),
            (7, 0x1234, 42, 0x5000, 0xabc)
        );
        // The same record without its stack (and with no region captured,
        // so cut after the capture's header).
        let capture = decode(&raw[..capture_len(0)]).expect("decodes");
        assert_eq!((capture.capture.brk, capture.stack[0]), (0x5000, 0));
        // The same record without its capture.
        let short = decode(&raw[..EVENT_HEAD_SIZE]).expect("decodes");
        assert_eq!((short.exit_ns, short.args[0], short.tgid), (7, 0x1234, 42));
        assert_eq!((short.stack_len, short.stack[0]), (0, 0));
    }
}
