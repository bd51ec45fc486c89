//! Byte search that never asks the CPU what it can do.
//!
//! `memchr`'s own entry points choose AVX2 or SSE2 at run time, and asking
//! (`cpuid`) is trapped by hypervisors: about 7 µs per instruction on the
//! virtual machine of BENCHMARKS.md, 0.09 ms of each run of `pmap` (a
//! static program calling `memchr` once: 0.75 ms against 0.66 ms without),
//! 5% of a 1,000-region table. SSE2 is part of every x86-64 CPU and needs
//! no asking; the texts searched here are lines and names, short enough
//! that AVX2 would not pay. Other targets use `memchr`'s portable code.

/// The first `b` in `hay`.
#[inline]
pub fn find(b: u8, hay: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(s) = memchr::arch::x86_64::sse2::memchr::One::new(b) {
        return s.find(hay);
    }
    memchr::arch::all::memchr::One::new(b).find(hay)
}

/// The last `b` in `hay`.
#[inline]
pub fn rfind(b: u8, hay: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(s) = memchr::arch::x86_64::sse2::memchr::One::new(b) {
        return s.rfind(hay);
    }
    memchr::arch::all::memchr::One::new(b).rfind(hay)
}

/// Where `needle` first occurs in `hay` (0 for an empty needle). The
/// needles are a few bytes long: each place of their first byte is tried.
pub fn find_str(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let Some((&first, rest)) = needle.split_first() else {
        return Some(0);
    };
    let mut from = 0;
    while let Some(i) = find(first, &hay[from..]) {
        let at = from + i;
        if hay[at + 1..].starts_with(rest) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_memchr() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..20_000 {
            let len = next(200);
            let hay: Vec<u8> = (0..len).map(|_| b"ab/\n:x"[next(6)]).collect();
            let b = b"ab/\n:xz"[next(7)];
            assert_eq!(find(b, &hay), memchr::memchr(b, &hay));
            assert_eq!(rfind(b, &hay), memchr::memrchr(b, &hay));
            let nlen = next(4);
            let needle: Vec<u8> = (0..nlen).map(|_| b"ab/"[next(3)]).collect();
            assert_eq!(
                find_str(&hay, &needle),
                memchr::memmem::find(&hay, &needle),
                "{needle:?} in {hay:?}"
            );
        }
        assert_eq!(find_str(b"Name:\tx\nTgid:\t5\n", b"Tgid:"), Some(8));
        assert_eq!(find_str(b"Tgid", b"Tgid:"), None);
    }
}
