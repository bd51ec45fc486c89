//! Where a region is backed by huge pages: its pages cut into runs of one
//! page size (Solaris's `pmap -s` rows), from each page's frame as
//! `source::page_frames` read it. Pure: the frames come in as numbers.

/// The physical frame behind one present page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    pub pfn: u64,
    /// The kernel flags the frame part of a huge folio (THP or hugetlb).
    pub huge: bool,
}

/// A run of pages of one size within a region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub start: u64,
    pub end: u64,
    /// Page size in KiB, or `None` where nothing is mapped.
    pub page_kb: Option<u64>,
}

const PAGE: u64 = 4096;

/// The runs of the region starting at `start` whose 4 KiB pages are
/// backed by `frames` (`None`: not present).
///
/// A page counts as part of a huge page only when its whole huge-page-sized,
/// aligned block is present with physically contiguous, aligned frames
/// flagged huge: smaller large folios (page-cache folios, mTHP) count as
/// base pages (`base_kb`).
pub fn runs(start: u64, frames: &[Option<Frame>], base_kb: u64, huge_kb: u64) -> Vec<Run> {
    let per_huge = (huge_kb / 4).max(1);
    let mut sizes: Vec<Option<u64>> = frames.iter().map(|p| p.map(|_| base_kb)).collect();
    // The first page on a huge-page boundary.
    let mut i = (start / PAGE).next_multiple_of(per_huge) - start / PAGE;
    while let Some(block) = usize::try_from(i)
        .ok()
        .zip(usize::try_from(i + per_huge).ok())
        .and_then(|(a, b)| frames.get(a..b))
    {
        let huge = match block[0] {
            Some(Frame {
                pfn: pfn0,
                huge: true,
            }) if pfn0 % per_huge == 0 => (0u64..)
                .zip(block)
                .all(|(k, p)| matches!(p, Some(Frame { pfn, huge: true }) if *pfn == pfn0 + k)),
            _ => false,
        };
        if huge {
            for s in &mut sizes[i as usize..(i + per_huge) as usize] {
                *s = Some(huge_kb);
            }
        }
        i += per_huge;
    }
    let mut runs: Vec<Run> = Vec::new();
    for (at, size) in (0u64..).map(|k| start + k * PAGE).zip(sizes) {
        match runs.last_mut() {
            Some(r) if r.page_kb == size => r.end = at + PAGE,
            _ => runs.push(Run {
                start: at,
                end: at + PAGE,
                page_kb: size,
            }),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_aligned_contiguous_blocks_are_huge() {
        // Huge pages of 16 KiB (4 base pages) to keep the test small; the
        // region starts one page before a 16 KiB boundary.
        let start = 0x10000 - PAGE;
        let f = |pfn, huge| Some(Frame { pfn, huge });
        let frames = [
            f(7, false),
            // An aligned, contiguous, flagged block: huge.
            f(40, true),
            f(41, true),
            f(42, true),
            f(43, true),
            // Flagged but not contiguous: base pages.
            f(80, true),
            f(81, true),
            f(90, true),
            f(91, true),
            None,
        ];
        let r = runs(start, &frames, 4, 16);
        let got: Vec<(u64, u64, Option<u64>)> =
            r.iter().map(|r| (r.start, r.end, r.page_kb)).collect();
        assert_eq!(
            got,
            vec![
                (start, 0x10000, Some(4)),
                (0x10000, 0x14000, Some(16)),
                (0x14000, 0x18000, Some(4)),
                (0x18000, 0x19000, None),
            ]
        );
    }
}
