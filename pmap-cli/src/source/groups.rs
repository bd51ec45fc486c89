//! `--comm NAME` and `--cgroup PATH`: processes chosen by what they are,
//! not by id (`pmap trace`, `pmap exporter`). Here: the arguments checked,
//! and the processes that match now, found in `/proc`. (The tracer's
//! kernel program picks up those that come later, `kind::MATCHED`.)

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// The kernel keeps a thread's name in 16 bytes, NUL included.
const COMM_LEN: usize = 16;

/// `statfs` magic of a cgroup v2 file system.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// A cgroup v2 group, as `--cgroup` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    /// Its path below the hierarchy's root, as `/proc/PID/cgroup` prints it
    /// (`/system.slice/foo.service`; `/` for the root).
    pub path: String,
    /// The group's id: its directory's inode number.
    pub id: u64,
    /// Its depth below the root (the root is 0).
    pub level: u32,
}

/// Where the cgroup v2 hierarchy is mounted, from `/proc/self/mountinfo`.
fn cgroup2_root() -> Result<PathBuf, String> {
    let info = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("--cgroup: cannot read /proc/self/mountinfo ({e})"))?;
    info.lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split(' ').next()? == "cgroup2")
                .then(|| left.split(' ').nth(4).map(PathBuf::from))?
        })
        .ok_or_else(|| {
            "--cgroup: no cgroup v2 hierarchy is mounted here (this needs the unified \
             hierarchy, as systemd mounts it at /sys/fs/cgroup)"
                .to_string()
        })
}

fn is_cgroup2(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: a NUL-terminated path and a zeroed statfs to fill.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type == CGROUP2_SUPER_MAGIC
}

/// `--cgroup PATH`: a directory of the cgroup v2 hierarchy, given as a
/// file system path (`/sys/fs/cgroup/system.slice/foo.service`) or as its
/// path below the root (`/system.slice/foo.service`, `system.slice/...`).
pub fn parse_cgroup(arg: &str) -> Result<Cgroup, String> {
    let root = cgroup2_root()?;
    let given = Path::new(arg);
    let dir = if given.starts_with(&root) {
        given.to_path_buf()
    } else {
        root.join(arg.trim_start_matches('/'))
    };
    let meta = fs::metadata(&dir).map_err(|e| {
        format!(
            "--cgroup {arg}: {} is not a cgroup ({e}); give a directory of the cgroup v2 \
             hierarchy at {}, e.g. /system.slice/ssh.service",
            dir.display(),
            root.display()
        )
    })?;
    if !meta.is_dir() || !is_cgroup2(&dir) {
        return Err(format!(
            "--cgroup {arg}: {} is not a directory of the cgroup v2 hierarchy at {}",
            dir.display(),
            root.display()
        ));
    }
    let below = dir.strip_prefix(&root).map_err(|_| {
        format!(
            "--cgroup {arg}: {} is outside {}",
            dir.display(),
            root.display()
        )
    })?;
    let parts: Vec<String> = below
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    Ok(Cgroup {
        path: format!("/{}", parts.join("/")),
        id: meta.ino(),
        level: parts.len() as u32,
    })
}

/// `--comm NAME`: the name as the kernel keeps it, NUL-padded. A longer
/// name is cut to the 15 bytes the kernel keeps (said on stderr by the
/// caller, which gets the cut name back too).
pub fn parse_comm(arg: &str) -> Result<([u8; COMM_LEN], String), String> {
    if arg.is_empty() || arg.contains('/') {
        return Err(format!(
            "--comm '{arg}': give a command name as /proc/PID/comm shows it (e.g. python3), \
             not a path"
        ));
    }
    let bytes = arg.as_bytes();
    let kept = &bytes[..bytes.len().min(COMM_LEN - 1)];
    let mut out = [0u8; COMM_LEN];
    out[..kept.len()].copy_from_slice(kept);
    Ok((out, String::from_utf8_lossy(kept).into_owned()))
}

impl Cgroup {
    /// Whether the group at `path` (as `/proc/PID/cgroup` prints it) is
    /// this one or a group below it.
    pub fn holds(&self, path: &str) -> bool {
        path == self.path
            || self.path == "/"
            || path
                .strip_prefix(&self.path)
                .is_some_and(|r| r.starts_with('/'))
    }
}

/// The v2 group of a process, from the text of its `/proc/PID/cgroup` (the
/// `0::` line); None without one.
pub fn v2_path(cgroup_file: &str) -> Option<&str> {
    cgroup_file.lines().find_map(|l| l.strip_prefix("0::"))
}

/// Whether `pid`'s group is `g` or a group below it.
fn in_cgroup(pid: u32, g: &Cgroup) -> bool {
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .is_ok_and(|t| v2_path(&t).is_some_and(|p| g.holds(p)))
}

fn comm_is(pid: u32, name: &str) -> bool {
    fs::read(format!("/proc/{pid}/comm"))
        .is_ok_and(|c| c.strip_suffix(b"\n").unwrap_or(&c) == name.as_bytes())
}

/// The processes there now that match: `comm` (as cut by
/// [`parse_comm`]) or in `cgroup`; never the tracer itself.
pub fn members(comm: Option<&str>, cgroup: Option<&Cgroup>) -> Vec<u32> {
    let me = std::process::id();
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&p| p != me)
        .filter(|&p| comm.is_some_and(|c| comm_is(p, c)) || cgroup.is_some_and(|g| in_cgroup(p, g)))
        .collect();
    pids.sort_unstable();
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_is_cut_to_what_the_kernel_keeps() {
        let (raw, kept) = parse_comm("a-very-long-program-name").expect("a name");
        assert_eq!(kept, "a-very-long-pro");
        assert_eq!(&raw[..15], b"a-very-long-pro");
        assert_eq!(raw[15], 0);
        assert!(parse_comm("/usr/bin/python3").is_err());
        assert!(parse_comm("").is_err());
    }

    #[test]
    fn the_root_group_and_a_missing_one() {
        // Every Linux with systemd has the unified hierarchy mounted.
        let root = parse_cgroup("/").expect("the root group");
        assert_eq!((root.path.as_str(), root.level), ("/", 0));
        let e = parse_cgroup("/no/such/group").expect_err("missing");
        assert!(e.contains("is not a cgroup"), "{e}");
    }

    #[test]
    fn this_process_is_in_its_own_group() {
        let mine = fs::read_to_string("/proc/self/cgroup").expect("cgroup");
        let path = mine
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .expect("a v2 line");
        let g = parse_cgroup(path).expect("our group");
        assert!(in_cgroup(std::process::id(), &g));
    }
}
