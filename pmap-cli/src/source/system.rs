//! Small facts about the system and a process that are not its map:
//! `vm.max_map_count` and resident memory (`statm`).

/// `vm.max_map_count`: the most regions a process may have, or `None` if
/// it cannot be read.
pub fn max_map_count() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Resident memory of process `pid` in bytes (`/proc/PID/statm`), or `None`
/// if it cannot be read (the process is gone).
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    Some(pages * page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_the_limit() {
        assert!(max_map_count().is_some_and(|m| m > 0));
        let rss = resident_bytes(std::process::id()).expect("our own statm");
        assert!(rss > 0 && rss.is_multiple_of(4096), "{rss}");
        assert_eq!(resident_bytes(u32::MAX), None);
    }
}
