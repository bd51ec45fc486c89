//! A JSON object written straight into a byte buffer, for the records the
//! tracer writes once per traced call.
//!
//! Why not serde here: through `serde_json`, a delta record cost about a
//! third of the tracer's time flat out, most of it escaping keys that are
//! constants and formatting addresses through `core::fmt`. Keys here are
//! `&'static str` known not to need escaping; only values that come from
//! outside (names, notes) go through `serde_json`'s escaping.

use serde::Serialize;

/// One JSON object being written into `buf`.
pub(super) struct Obj<'a> {
    buf: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Obj<'a> {
    pub(super) fn new(buf: &'a mut Vec<u8>) -> Obj<'a> {
        // A delta record is rarely over 1 KiB: one growth check here
        // instead of one per value.
        buf.reserve(1024);
        buf.push(b'{');
        Obj { buf, first: true }
    }

    /// `"key":`, after a comma unless first. `key` must need no escaping
    /// (checked in debug builds). Inlined into each caller so that the
    /// key's length is a constant and its copy a few moves, not a call.
    #[inline(always)]
    fn key(&mut self, key: &'static str) -> &mut Vec<u8> {
        debug_assert!(
            key.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        );
        let open: &[u8] = if self.first { b"\"" } else { b",\"" };
        self.first = false;
        self.buf.extend_from_slice(open);
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
        self.buf
    }

    #[inline(always)]
    pub(super) fn uint(&mut self, key: &'static str, v: u64) {
        let mut b = itoa::Buffer::new();
        let s = b.format(v);
        self.key(key).extend_from_slice(s.as_bytes());
    }

    #[inline(always)]
    pub(super) fn int(&mut self, key: &'static str, v: i64) {
        let mut b = itoa::Buffer::new();
        let s = b.format(v);
        self.key(key).extend_from_slice(s.as_bytes());
    }

    #[inline(always)]
    pub(super) fn bool(&mut self, key: &'static str, v: bool) {
        self.key(key)
            .extend_from_slice(if v { b"true" } else { b"false" });
    }

    /// A string known to need no escaping (a constant of ours, a
    /// permission string).
    #[inline(always)]
    pub(super) fn word(&mut self, key: &'static str, v: &str) {
        debug_assert!(!v.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20));
        let buf = self.key(key);
        buf.push(b'"');
        buf.extend_from_slice(v.as_bytes());
        buf.push(b'"');
    }

    /// The buffer after `"key":`, for a value written by the caller.
    #[inline(always)]
    pub(super) fn raw(&mut self, key: &'static str) -> &mut Vec<u8> {
        self.key(key)
    }

    /// `"0x7f0000000000"`.
    #[inline(always)]
    pub(super) fn hex(&mut self, key: &'static str, v: u64) {
        hex(self.key(key), v);
    }

    /// A string from outside (a region's name): copied as it is when
    /// nothing in it needs escaping (nearly always), else through serde.
    pub(super) fn str(&mut self, key: &'static str, v: &str) {
        if v.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
            self.value(key, v);
        } else {
            let buf = self.key(key);
            buf.push(b'"');
            buf.extend_from_slice(v.as_bytes());
            buf.push(b'"');
        }
    }

    /// Any other value, through serde (strings from outside, floats,
    /// notes).
    pub(super) fn value<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T) {
        let buf = self.key(key);
        // Writing into a Vec cannot fail, and our values serialize
        // without error.
        serde_json::to_writer(&mut *buf, v).expect("JSON into memory");
    }

    /// An array of `items`, each written by `each`.
    pub(super) fn array<T>(
        &mut self,
        key: &'static str,
        items: impl IntoIterator<Item = T>,
        mut each: impl FnMut(&mut Vec<u8>, T),
    ) {
        let buf = self.key(key);
        buf.push(b'[');
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            each(buf, item);
        }
        buf.push(b']');
    }

    pub(super) fn end(self) {
        self.buf.push(b'}');
    }
}

/// `"0x…"` into `buf`: lower-case hex without leading zeros, as `{:#x}`.
/// Formatted on the stack and copied once: one capacity check, not one
/// per digit.
pub(super) fn hex(buf: &mut Vec<u8>, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 20];
    let digits = (64 - v.leading_zeros()).div_ceil(4).max(1) as usize;
    out[..3].copy_from_slice(b"\"0x");
    for i in 0..digits {
        out[2 + digits - i] = DIGITS[((v >> (4 * i)) & 0xf) as usize];
    }
    out[3 + digits] = b'"';
    buf.extend_from_slice(&out[..4 + digits]);
}

/// `"fd:01"` into `buf`, as `{:02x}:{:02x}`.
pub(super) fn dev(buf: &mut Vec<u8>, major: u32, minor: u32) {
    buf.push(b'"');
    two_hex(buf, major);
    buf.push(b':');
    two_hex(buf, minor);
    buf.push(b'"');
}

/// `{:02x}`: at least two digits.
fn two_hex(buf: &mut Vec<u8>, v: u32) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digits = (32 - v.leading_zeros()).div_ceil(4).max(2);
    for i in (0..digits).rev() {
        buf.push(DIGITS[((v >> (4 * i)) & 0xf) as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_matches_the_standard_formatting() {
        for v in [0, 1, 0xf, 0x10, 0x7f00_0000_1000, u64::MAX] {
            let mut b = Vec::new();
            hex(&mut b, v);
            assert_eq!(String::from_utf8(b).expect("ASCII"), format!("\"{v:#x}\""));
        }
    }

    #[test]
    fn dev_matches_the_standard_formatting() {
        for (ma, mi) in [(0, 0), (0xfd, 1), (8, 0x10), (0x103, 0xfffff)] {
            let mut b = Vec::new();
            dev(&mut b, ma, mi);
            assert_eq!(
                String::from_utf8(b).expect("ASCII"),
                format!("\"{ma:02x}:{mi:02x}\"")
            );
        }
    }

    #[test]
    fn an_object_is_valid_json_with_escaped_values() {
        let mut b = Vec::new();
        let mut o = Obj::new(&mut b);
        o.word("type", "delta");
        o.uint("pid", 7);
        o.int("ret", -12);
        o.bool("exact", true);
        o.hex("start", 0x1000);
        o.str("name", "a \"quoted\"\n\\ name");
        o.str("plain", "/usr/lib/libc.so.6 (deleted)");
        o.value("t", &1.5f64);
        o.array("args", [1u64, 2], |b, v| {
            b.extend_from_slice(itoa::Buffer::new().format(v).as_bytes())
        });
        o.end();
        let v: serde_json::Value = serde_json::from_slice(&b).expect("valid JSON");
        assert_eq!(
            v,
            serde_json::json!({"type": "delta", "pid": 7, "ret": -12, "exact": true,
                "start": "0x1000", "name": "a \"quoted\"\n\\ name",
                "plain": "/usr/lib/libc.so.6 (deleted)", "t": 1.5, "args": [1, 2]})
        );
    }
}
