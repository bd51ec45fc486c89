//! Per-process counters that `pmap exporter`'s kernel programs keep in a
//! hash map keyed by process id (tgid): counted in the kernel, read by
//! userspace at each scrape, no ring buffer record per call.

/// The counted syscalls (x86_64 numbers) and their `syscall` label, in
/// slot order: the memory-mapping syscalls `pmap trace` attaches to.
pub const SYSCALLS: [(u32, &str); SYSCALL_SLOTS] = [
    (9, "mmap"),
    (11, "munmap"),
    (10, "mprotect"),
    (329, "pkey_mprotect"),
    (12, "brk"),
    (25, "mremap"),
    (28, "madvise"),
    (30, "shmat"),
    (67, "shmdt"),
    (462, "mseal"),
    (149, "mlock"),
    (325, "mlock2"),
    (150, "munlock"),
    (151, "mlockall"),
    (152, "munlockall"),
    (237, "mbind"),
    (216, "remap_file_pages"),
];

/// Number of counted syscalls.
pub const SYSCALL_SLOTS: usize = 17;

/// The slot of syscall `nr` in [`ProcCounters::syscalls`]. A `match`
/// rather than a search of [`SYSCALLS`]: the kernel program calls it on
/// every counted call, and the verifier accepts a match without a loop.
#[inline(always)]
pub const fn slot(nr: u32) -> Option<usize> {
    Some(match nr {
        9 => 0,
        11 => 1,
        10 => 2,
        329 => 3,
        12 => 4,
        25 => 5,
        28 => 6,
        30 => 7,
        67 => 8,
        462 => 9,
        149 => 10,
        325 => 11,
        150 => 12,
        151 => 13,
        152 => 14,
        237 => 15,
        216 => 16,
        _ => return None,
    })
}

/// One process's counters, the value of the kernel's `PROC_COUNTERS` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcCounters {
    /// Calls per syscall, by [`slot`] (failed calls included).
    pub syscalls: [u64; SYSCALL_SLOTS],
    /// Calls after which the process had more regions (`mm->map_count`)
    /// than after its previous counted call: new and split mappings.
    pub splits: u64,
    /// mprotect/pkey_mprotect calls that succeeded in making a writable
    /// region executable, or an executable region writable.
    pub wx_flips: u64,
    /// `mm->map_count` after the last counted call (0 before the first).
    pub map_count: u64,
}

/// Indices into the exporter's per-CPU `COUNTER_LOST` array.
pub mod lost {
    /// A new process could not be added because `PROC_COUNTERS` was full.
    pub const PROC_FULL: u32 = 0;
    /// An mprotect's old protection could not be kept from entry to exit
    /// (the pending map was full or the region lookup was busy).
    pub const WX_UNKNOWN: u32 = 1;
    /// Number of counters.
    pub const COUNT: u32 = 2;
}

/// Most processes `PROC_COUNTERS` holds at once (entries are allocated on
/// first use and freed when the process exits).
pub const MAX_PROCS: u32 = 65536;

const _: () = assert!(SYSCALLS.len() == SYSCALL_SLOTS);
const _: () = assert!(core::mem::size_of::<ProcCounters>() == 8 * (SYSCALL_SLOTS + 3));
const _: () = {
    let mut i = 0;
    while i < SYSCALL_SLOTS {
        assert!(matches!(slot(SYSCALLS[i].0), Some(s) if s == i));
        i += 1;
    }
};
