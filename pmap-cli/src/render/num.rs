//! printf-style padding of numbers and strings into a byte buffer, without
//! `fmt` machinery (these run once per region, tens of thousands of times).

/// Digits of `v` in decimal.
pub fn dec_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 10 {
        v /= 10;
        n += 1;
    }
    n
}

/// Hex digits of `v` (at least one).
pub fn hex_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(4)
}

/// Widths up to this are padded in place: the digits are written into the
/// tail of a padded buffer and copied out once (one call into `memcpy`
/// instead of a `memset` and a `memcpy` per number).
const PADDED: usize = 24;

/// Writes `v` in decimal so that it ends at `end` of `out`; returns where
/// it starts, or `None` (some digits written) if it does not fit after
/// `from`.
pub fn put_dec(out: &mut [u8], from: usize, end: usize, mut v: u64) -> Option<usize> {
    let mut i = end;
    loop {
        if i == from {
            return None;
        }
        i -= 1;
        out[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return Some(i);
        }
    }
}

/// [`put_dec`] in lower-case hex, with at least `digits` digits (zeros in
/// front).
pub fn put_hex(
    out: &mut [u8],
    from: usize,
    end: usize,
    mut v: u64,
    digits: usize,
) -> Option<usize> {
    let mut i = end;
    loop {
        if i == from {
            return None;
        }
        i -= 1;
        out[i] = b"0123456789abcdef"[(v & 0xf) as usize];
        v >>= 4;
        if v == 0 && end - i >= digits {
            return Some(i);
        }
    }
}

/// `%0*lx` (lower case).
pub fn hex_zero(buf: &mut Vec<u8>, v: u64, width: usize) {
    let mut text = [b'0'; PADDED];
    // A u64 has at most 16 hex digits: it fits.
    let first = put_hex(&mut text, 0, PADDED, v, 1).unwrap_or(0);
    push_padded(buf, &text, first, width, b'0');
}

/// `%*lu` (right-justified, blank padded).
pub fn dec_right(buf: &mut Vec<u8>, v: u64, width: usize) {
    let mut text = [b' '; PADDED];
    // A u64 has at most 20 decimal digits: it fits.
    let first = put_dec(&mut text, 0, PADDED, v).unwrap_or(0);
    push_padded(buf, &text, first, width, b' ');
}

/// The digits `text[first..]`, padded on the left with `fill` (which the
/// rest of `text` holds) to `width`.
fn push_padded(buf: &mut Vec<u8>, text: &[u8; PADDED], first: usize, width: usize, fill: u8) {
    if width <= PADDED {
        buf.extend_from_slice(&text[first.min(PADDED - width)..]);
    } else {
        let len = PADDED - first;
        buf.extend(std::iter::repeat_n(fill, width.saturating_sub(len)));
        buf.extend_from_slice(&text[first..]);
    }
}

/// `%lu`.
pub fn dec(buf: &mut Vec<u8>, v: u64) {
    dec_right(buf, v, 0);
}

/// `%*s`.
pub fn str_right(buf: &mut Vec<u8>, s: &[u8], width: usize) {
    buf.extend(std::iter::repeat_n(b' ', width.saturating_sub(s.len())));
    buf.extend_from_slice(s);
}

/// `%-*s`.
pub fn str_left(buf: &mut Vec<u8>, s: &[u8], width: usize) {
    buf.extend_from_slice(s);
    buf.extend(std::iter::repeat_n(b' ', width.saturating_sub(s.len())));
}

/// procps-ng's `justify_print`: the heading padded to `width` (never cut)
/// and a blank; with `width < 1` the heading and a newline. Returns the
/// width used.
pub fn justify(buf: &mut Vec<u8>, s: &[u8], width: usize, right: bool) -> usize {
    if width < 1 {
        buf.extend_from_slice(s);
        buf.push(b'\n');
        return width;
    }
    let width = width.max(s.len());
    if right {
        str_right(buf, s, width);
    } else {
        str_left(buf, s, width);
    }
    buf.push(b' ');
    width
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut b = Vec::new();
        f(&mut b);
        String::from_utf8(b).expect("ascii")
    }

    #[test]
    fn numbers() {
        for v in [0u64, 1, 9, 10, 15, 16, 255, 4096, u64::MAX, 1 << 63] {
            assert_eq!(dec_len(v), v.to_string().len());
            assert_eq!(run(|b| hex_zero(b, v, 16)), format!("{v:016x}"));
            assert_eq!(run(|b| dec_right(b, v, 7)), format!("{v:7}"));
        }
        assert_eq!(run(|b| hex_zero(b, 0x12345, 2)), "12345");
        // Wider than the padded buffer.
        assert_eq!(run(|b| dec_right(b, 42, 30)), format!("{:30}", 42));
        assert_eq!(run(|b| hex_zero(b, 0xab, 30)), format!("{:030x}", 0xab));
    }

    #[test]
    fn strings() {
        assert_eq!(run(|b| str_right(b, b"ab", 4)), "  ab");
        assert_eq!(run(|b| str_left(b, b"ab", 4)), "ab  ");
        assert_eq!(run(|b| str_left(b, b"abcdef", 4)), "abcdef");
        assert_eq!(
            run(|b| assert_eq!(justify(b, b"Address", 16, false), 16)),
            "Address          "
        );
        assert_eq!(
            run(|b| assert_eq!(justify(b, b"Kbytes", 3, true), 6)),
            "Kbytes "
        );
        assert_eq!(
            run(|b| assert_eq!(justify(b, b"Mapping", 0, false), 0)),
            "Mapping\n"
        );
    }
}
