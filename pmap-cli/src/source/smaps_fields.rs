//! The fast paths of the smaps reader (`source::smaps`): field lines read
//! straight from the buffer, eight bytes at a time. Each answers only for
//! the shapes it knows and agrees there with `smaps::field_line`; anything
//! else takes the general path.

use std::sync::Arc;

use crate::map::smaps::SmapsField;

/// Eight bytes from `b[i..]`, little-endian, if there are eight.
fn load8(b: &[u8], i: usize) -> Option<u64> {
    let bytes: [u8; 8] = b.get(i..i + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// A mask whose lowest set bit is in the first byte of `w` equal to `c`
/// (bits above it may be spurious), or 0 if there is none.
fn bytes_equal(w: u64, c: u8) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let v = w ^ (ONES * u64::from(c));
    v.wrapping_sub(ONES) & !v & (ONES << 7)
}

/// The usual shape of a field line, `Name:   1234 kB\n` (or without ` kB`),
/// parsed straight from the buffer: the name's length, the value, and the
/// length of the line with its newline. `None` for anything else (which
/// then takes the general path, `classify`); when it answers, it agrees
/// with `field_line`.
pub(super) fn fast_field(rest: &[u8]) -> Option<(usize, u64, usize)> {
    // Eight bytes at a time: the first ':' or '\n' among the first 32.
    let mut colon = None;
    for k in 0..4 {
        let w = load8(rest, k * 8)?;
        let m = bytes_equal(w, b':') | bytes_equal(w, b'\n');
        if m != 0 {
            colon = Some(k * 8 + (m.trailing_zeros() / 8) as usize);
            break;
        }
    }
    let colon = colon?;
    if colon == 0 || rest[colon] != b':' || rest[0] == 0 {
        return None;
    }
    let mut j = colon + 1;
    // Skip the blanks eight at a time.
    loop {
        let Some(w) = load8(rest, j) else {
            while rest.get(j) == Some(&b' ') {
                j += 1;
            }
            break;
        };
        let other = w ^ 0x2020_2020_2020_2020;
        if other == 0 {
            j += 8;
        } else {
            j += (other.trailing_zeros() / 8) as usize;
            break;
        }
    }
    let digits = j;
    let mut value: u64 = 0;
    while let Some(&c) = rest.get(j) {
        if !c.is_ascii_digit() {
            break;
        }
        value = value.saturating_mul(10).saturating_add(u64::from(c - b'0'));
        j += 1;
    }
    if j == digits || j - digits > 20 {
        return None;
    }
    match rest.get(j..j + 4) {
        Some(b" kB\n") => Some((colon, value, j + 4)),
        _ if rest.get(j) == Some(&b'\n') => Some((colon, value, j + 1)),
        _ => None,
    }
}

/// The kernel's own layout of a field line: the name, ':' and blanks
/// padded to 16 bytes (`KEY`), the value right-aligned in 8 (wider only
/// past 99,999,999), then ` kB\n` (or just `\n`).
///
/// Reads the fields at the start of `rest` in this layout whose first 16
/// bytes are `keys[n]`, `keys[n + 1]`... (as in the last entry), into
/// `fields` from position `n` (names from `schema`), without looking for
/// their parts: returns the position after them and the bytes read. Stops
/// at anything else (which then takes `fast_field`); what it reads agrees
/// with `field_line` (each key came from a line `field_line` read).
pub(super) fn fixed_fields(
    rest: &[u8],
    keys: &[[u64; 2]],
    schema: &[Arc<str>],
    fields: &mut Vec<SmapsField>,
    mut n: usize,
) -> (usize, usize) {
    const KB: u32 = u32::from_le_bytes(*b" kB\n");
    let mut at = 0;
    // Four loads of eight bytes a line: the key's two, the value, the tail.
    while let (Some(&[k0, k1]), Some(name), Some(line)) = (
        keys.get(n),
        schema.get(n),
        rest.get(at..at + 32)
            .and_then(|l| <&[u8; 32]>::try_from(l).ok()),
    ) {
        if k0 == 0 || word(line, 0) != k0 || word(line, 8) != k1 {
            break;
        }
        let tail = word(line, KEY + 8);
        let used = if tail as u32 == KB {
            KEY + 12
        } else if tail as u8 == b'\n' {
            KEY + 9
        } else {
            break;
        };
        let Some(value) = eight_digits(word(line, KEY)) else {
            break;
        };
        match fields.get_mut(n) {
            Some(f) if Arc::ptr_eq(&f.name, name) => f.value = value,
            _ => {
                fields.truncate(n);
                fields.push(SmapsField {
                    name: name.clone(),
                    value,
                });
            }
        }
        n += 1;
        at += used;
    }
    (n, at)
}

/// Bytes `i..i + 8` of `line`, little-endian.
fn word(line: &[u8; 32], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&line[i..i + 8]);
    u64::from_le_bytes(w)
}

/// The number in eight bytes (little-endian, the first byte the most
/// significant digit) of blanks then at least one digit.
fn eight_digits(w: u64) -> Option<u64> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let blanks = ((w ^ (ONES * 0x20)).trailing_zeros() / 8) as usize;
    if blanks == 8 {
        return None;
    }
    // Blanks (0x20) become '0' (0x30); then every byte must be a digit:
    // high nibble 3, and low nibble + 6 not carrying into it.
    let d = w | ((ONES * 0x10) & ((1u64 << (8 * blanks)) - 1));
    let high = ONES * 0xf0;
    if d & high != ONES * 0x30 || d.wrapping_add(ONES * 6) & high != ONES * 0x30 {
        return None;
    }
    // Pairs, quads, then all eight digits, each step one multiply.
    let v = d & (ONES * 0x0f);
    let v = (v.wrapping_mul(10 * 256 + 1) >> 8) & 0x00ff_00ff_00ff_00ff;
    let v = (v.wrapping_mul(100 * 65536 + 1) >> 16) & 0x0000_ffff_0000_ffff;
    Some(v.wrapping_mul(10000 * (1 << 32) + 1) >> 32)
}

/// Bytes of a field line before its value, in the kernel's layout.
const KEY: usize = 16;

/// The first KEY bytes of `line` as two words if they are a name, ':' and
/// blanks only (the kernel's layout, see `fixed_fields`); else zeros (no
/// name starts with a NUL).
pub(super) fn layout_key(line: &[u8], name_len: usize) -> [u64; 2] {
    let Some(key) = line.get(..KEY) else {
        return [0; 2];
    };
    if name_len < KEY && key[name_len] == b':' && key[name_len + 1..].iter().all(|&c| c == b' ') {
        let half = |h: &[u8]| h.iter().rev().fold(0u64, |w, &b| (w << 8) | u64::from(b));
        [half(&key[..8]), half(&key[8..])]
    } else {
        [0; 2]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::smaps::field_line;

    #[test]
    fn fast_path_agrees_with_field_line() {
        let cases: &[&[u8]] = &[
            b"Size:                  8 kB\nRss:",
            b"THPeligible:           0\nVmFlags: rd\n",
            b"Big:  123456789012345678901 kB\n                    ",
            b"Rss:\t 8 kB\n                           ",
            b"Odd key: 7 kB\n                           ",
            b"x:1\n                                     ",
            b"NoValue:        kB\n                      ",
            b"7f0000000000-7f0000001000 rw-p 00000000 00:00 0\n",
            b"AVeryLongKeyThatIsMoreThan31Bytes: 5 kB\n",
        ];
        for c in cases {
            let line = &c[..c.iter().position(|&b| b == b'\n').unwrap_or(c.len())];
            if let Some((name_len, value, used)) = fast_field(c) {
                assert_eq!(field_line(line), Some((&line[..name_len], value)));
                assert_eq!(used, line.len() + 1);
            }
        }
        assert!(fast_field(cases[0]).is_some());
        assert!(fast_field(cases[1]).is_some());
    }

    #[test]
    fn eight_digits_reads_blanks_then_digits_only() {
        let w = |b: &[u8; 8]| u64::from_le_bytes(*b);
        assert_eq!(eight_digits(w(b"       0")), Some(0));
        assert_eq!(eight_digits(w(b"      42")), Some(42));
        assert_eq!(eight_digits(w(b"12345678")), Some(12_345_678));
        assert_eq!(eight_digits(w(b"99999999")), Some(99_999_999));
        for bad in [
            b"        ",
            b"   12a45",
            b"  1 2345",
            b"1234567 ",
            b"   -1234",
            b"\t  12345",
        ] {
            assert_eq!(
                eight_digits(w(bad)),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
