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
        buf.push(b'{');
        Obj { buf, first: true }
    }

    /// `"key":`, after a comma unless first. `key` must need no escaping
    /// (checked in debug builds).
    fn key(&mut self, key: &'static str) -> &mut Vec<u8> {
        debug_assert!(
            key.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        );
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        self.buf.push(b'"');
        // Byte by byte, as in `hex`.
        for &b in key.as_bytes() {
            self.buf.push(b);
        }
        self.buf.push(b'"');
        self.buf.push(b':');
        self.buf
    }

    pub(super) fn uint(&mut self, key: &'static str, v: u64) {
        let mut b = itoa::Buffer::new();
        let s = b.format(v);
        self.key(key).extend_from_slice(s.as_bytes());
    }

    pub(super) fn int(&mut self, key: &'static str, v: i64) {
        let mut b = itoa::Buffer::new();
        let s = b.format(v);
        self.key(key).extend_from_slice(s.as_bytes());
    }

    pub(super) fn bool(&mut self, key: &'static str, v: bool) {
        self.key(key)
            .extend_from_slice(if v { b"true" } else { b"false" });
    }

    /// A string known to need no escaping (a constant of ours, a
    /// permission string).
    pub(super) fn word(&mut self, key: &'static str, v: &str) {
        debug_assert!(!v.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20));
        let buf = self.key(key);
        buf.push(b'"');
        buf.extend_from_slice(v.as_bytes());
        buf.push(b'"');
    }

    /// The buffer after `"key":`, for a value written by the caller.
    pub(super) fn raw(&mut self, key: &'static str) -> &mut Vec<u8> {
        self.key(key)
    }

    /// `"0x7f0000000000"`.
    pub(super) fn hex(&mut self, key: &'static str, v: u64) {
        hex(self.key(key), v);
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
/// (Byte by byte: a `memcpy` call for a dozen bytes costs more.)
pub(super) fn hex(buf: &mut Vec<u8>, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digits = (64 - v.leading_zeros()).div_ceil(4).max(1);
    buf.reserve(digits as usize + 4);
    buf.push(b'"');
    buf.push(b'0');
    buf.push(b'x');
    for i in (0..digits).rev() {
        buf.push(DIGITS[((v >> (4 * i)) & 0xf) as usize]);
    }
    buf.push(b'"');
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
        o.value("name", "a \"quoted\"\n\\ name");
        o.value("t", &1.5f64);
        o.array("args", [1u64, 2], |b, v| {
            b.extend_from_slice(itoa::Buffer::new().format(v).as_bytes())
        });
        o.end();
        let v: serde_json::Value = serde_json::from_slice(&b).expect("valid JSON");
        assert_eq!(
            v,
            serde_json::json!({"type": "delta", "pid": 7, "ret": -12, "exact": true,
                "start": "0x1000", "name": "a \"quoted\"\n\\ name", "t": 1.5, "args": [1, 2]})
        );
    }
}
