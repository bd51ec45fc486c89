//! The physical frames behind a region's pages, for `pmap -s`'s page-size
//! runs (`map::page_runs`): `/proc/PID/pagemap` gives each page's frame,
//! `/proc/kpageflags` whether the frame is part of a huge page, and sysfs
//! the size of a PMD-mapped huge page. Root only: without CAP_SYS_ADMIN the
//! kernel hides frame numbers.

use std::os::unix::fs::FileExt;

use super::pid_dir::PidDir;
use crate::map::page_runs::Frame;

const PRESENT: u64 = 1 << 63;
const PFN_MASK: u64 = (1 << 55) - 1;
const KPF_HUGE: u64 = 1 << 17;
const KPF_THP: u64 = 1 << 22;

/// Each 4 KiB page of `[start, end)` in the process of `dir`: its frame, or
/// `None` if not present. `None` overall if the files cannot be read (not
/// root, or frame numbers hidden) or the region is over 16 GiB (too slow to
/// walk page by page).
pub fn read(dir: &PidDir, start: u64, end: u64) -> Option<Vec<Option<Frame>>> {
    let pages = usize::try_from((end - start) / 4096).ok()?;
    if pages > (1 << 22) {
        return None;
    }
    let pagemap = dir.open_file("pagemap").ok()?;
    let kflags = std::fs::File::open("/proc/kpageflags").ok()?;
    let mut raw = vec![0u8; pages * 8];
    pagemap.read_exact_at(&mut raw, start / 4096 * 8).ok()?;
    let mut frames: Vec<Option<Frame>> = Vec::with_capacity(pages);
    for e in raw.chunks_exact(8) {
        let e = u64::from_ne_bytes(e.try_into().ok()?);
        if e & PRESENT == 0 {
            frames.push(None);
            continue;
        }
        let pfn = e & PFN_MASK;
        if pfn == 0 {
            return None; // Frame numbers hidden (no CAP_SYS_ADMIN).
        }
        frames.push(Some(Frame { pfn, huge: false }));
    }
    // kpageflags, one read per run of consecutive frames.
    let mut i = 0;
    let mut flags = Vec::new();
    while i < pages {
        let Some(Frame { pfn: pfn0, .. }) = frames[i] else {
            i += 1;
            continue;
        };
        let mut n = 1;
        while i + n < pages
            && matches!(frames[i + n], Some(Frame { pfn, .. }) if pfn == pfn0 + n as u64)
        {
            n += 1;
        }
        flags.resize(n * 8, 0);
        kflags.read_exact_at(&mut flags, pfn0 * 8).ok()?;
        for (k, f) in flags.chunks_exact(8).enumerate() {
            let f = u64::from_ne_bytes(f.try_into().ok()?);
            if let Some(frame) = &mut frames[i + k] {
                frame.huge = f & (KPF_THP | KPF_HUGE) != 0;
            }
        }
        i += n;
    }
    Some(frames)
}

/// The size of a PMD-mapped huge page in KiB (2048 if sysfs does not say).
pub fn pmd_size_kb() -> u64 {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or(2048, |b| b / 1024)
}
