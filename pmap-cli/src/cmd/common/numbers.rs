//! Number arguments, read the way procps-ng reads them: C's `strtoul` (base
//! 0 for PIDs: `0x1f`, `017`, `31`; base 16 for `-A`), which skips leading
//! blanks, takes a sign, saturates on overflow, and reports where it stopped.

use crate::render::Range;

/// A PID argument procps-ng refuses (it then prints its usage text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadPid;

/// An `-A` argument that is not `hex[,hex]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadRange;

/// C `strtoul(s, &end, base)` for base 0 or 16: the value and the number of
/// bytes consumed (0 when no number was found).
pub fn strtoul(s: &[u8], base: u32) -> (u64, usize) {
    let mut i = s
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r'))
        .count();
    let mut negative = false;
    if let Some(&c @ (b'+' | b'-')) = s.get(i) {
        negative = c == b'-';
        i += 1;
    }
    let mut base = base;
    let hex_prefix = s.get(i) == Some(&b'0')
        && s.get(i + 1).is_some_and(|c| c | 0x20 == b'x')
        && s.get(i + 2).is_some_and(|c| c.is_ascii_hexdigit());
    if (base == 0 || base == 16) && hex_prefix {
        i += 2;
        base = 16;
    } else if base == 0 {
        base = if s.get(i) == Some(&b'0') { 8 } else { 10 };
    }
    let digits_start = i;
    let mut v: u64 = 0;
    let mut overflow = false;
    while let Some(d) = s.get(i).and_then(|&c| (c as char).to_digit(base)) {
        match v
            .checked_mul(u64::from(base))
            .and_then(|v| v.checked_add(u64::from(d)))
        {
            Some(n) => v = n,
            None => overflow = true,
        }
        i += 1;
    }
    if i == digits_start {
        return (0, 0);
    }
    let v = if overflow {
        u64::MAX
    } else if negative {
        v.wrapping_neg()
    } else {
        v
    };
    (v, i)
}

/// A PID argument: `N`, `0xN`, `0N` (octal), or `/proc/N`. `Ok(None)` for a
/// `/proc/...` argument that is not a number (procps-ng skips those);
/// `Err(BadPid)` for anything else it refuses with its usage text.
pub fn parse_pid(arg: &[u8]) -> Result<Option<u32>, BadPid> {
    let mut walk = arg;
    if let Some(rest) = arg.strip_prefix(b"/proc/") {
        walk = rest;
        if !walk.first().is_some_and(u8::is_ascii_digit) {
            return Ok(None);
        }
    }
    if !walk.first().is_some_and(u8::is_ascii_digit) {
        return Err(BadPid);
    }
    let (pid, used) = strtoul(walk, 0);
    if !(1..=0x7fff_ffff).contains(&pid) || used != walk.len() {
        return Err(BadPid);
    }
    u32::try_from(pid).map(Some).map_err(|_| BadPid)
}

/// `-A low[,high]` (hex). Each side may be empty (keeps the bound given so
/// far); without a comma both bounds are the one number. `Err` if a side is
/// not entirely a number.
pub fn parse_range(arg: &[u8], mut range: Range) -> Result<Range, BadRange> {
    let (low, high) = match arg.iter().position(|&c| c == b',') {
        Some(comma) => (&arg[..comma], &arg[comma + 1..]),
        None => (arg, arg),
    };
    let mut ok = true;
    if !low.is_empty() {
        let (v, used) = strtoul(low, 16);
        range.low = v;
        ok &= used == low.len();
    }
    if !high.is_empty() {
        let (v, used) = strtoul(high, 16);
        range.high = v;
        ok &= used == high.len();
    }
    if ok { Ok(range) } else { Err(BadRange) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtoul_like_c() {
        assert_eq!(strtoul(b"123", 0), (123, 3));
        assert_eq!(strtoul(b"0x1f", 0), (31, 4));
        assert_eq!(strtoul(b"0X1F", 0), (31, 4));
        assert_eq!(strtoul(b"017", 0), (15, 3));
        assert_eq!(strtoul(b"08", 0), (0, 1));
        assert_eq!(strtoul(b"0x", 0), (0, 1));
        assert_eq!(strtoul(b"0xg", 16), (0, 1));
        assert_eq!(strtoul(b"x", 0), (0, 0));
        assert_eq!(strtoul(b"", 16), (0, 0));
        assert_eq!(strtoul(b" -1", 16), (u64::MAX, 3));
        assert_eq!(strtoul(b"+ff", 16), (255, 3));
        assert_eq!(strtoul(b"ffffffffffffffffff", 16), (u64::MAX, 18));
        assert_eq!(strtoul(b"7fffffff", 16), (0x7fffffff, 8));
    }

    #[test]
    fn pids() {
        assert_eq!(parse_pid(b"42"), Ok(Some(42)));
        assert_eq!(parse_pid(b"0x2a"), Ok(Some(42)));
        assert_eq!(parse_pid(b"052"), Ok(Some(42)));
        assert_eq!(parse_pid(b"/proc/42"), Ok(Some(42)));
        assert_eq!(parse_pid(b"/proc/self"), Ok(None));
        assert_eq!(parse_pid(b"/proc/"), Ok(None));
        assert_eq!(parse_pid(b"2147483647"), Ok(Some(0x7fff_ffff)));
        for bad in [
            &b"0"[..],
            b"2147483648",
            b"99999999999999999999999",
            b"abc",
            b"1x",
            b"+1",
            b" 1",
            b"",
            b"/proc/1x",
            b"08",
        ] {
            assert_eq!(
                parse_pid(bad),
                Err(BadPid),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn ranges() {
        let d = Range::default();
        assert_eq!(
            parse_range(b"10", d),
            Ok(Range {
                low: 0x10,
                high: 0x10
            })
        );
        assert_eq!(
            parse_range(b"10,20", d),
            Ok(Range {
                low: 0x10,
                high: 0x20
            })
        );
        assert_eq!(
            parse_range(b"10,", d),
            Ok(Range {
                low: 0x10,
                high: u64::MAX
            })
        );
        assert_eq!(parse_range(b",20", d), Ok(Range { low: 0, high: 0x20 }));
        assert_eq!(parse_range(b"", d), Ok(d));
        assert_eq!(
            parse_range(b"0x10,0x20", d),
            Ok(Range {
                low: 0x10,
                high: 0x20
            })
        );
        assert_eq!(parse_range(b"1g", d), Err(BadRange));
        assert_eq!(parse_range(b"1,2,3", d), Err(BadRange));
    }
}
