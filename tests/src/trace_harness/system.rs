//! The machine: test serialisation, eBPF objects a process holds, free
//! pids, where programs are.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use super::output::number_after;

/// Tests in one test binary run one at a time: they share the kernel's
/// tracepoints and two CPUs, and a tracer starved by a parallel test could
/// lose events for reasons that have nothing to do with it.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// eBPF objects a process holds through its descriptors.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BpfObjects {
    pub progs: Vec<u64>,
    pub links: Vec<u64>,
    pub maps: Vec<u64>,
}

impl BpfObjects {
    pub fn is_empty(&self) -> bool {
        self.progs.is_empty() && self.links.is_empty() && self.maps.is_empty()
    }
}

/// The eBPF programs, links and maps `pid` holds open (from
/// /proc/PID/fd and fdinfo).
pub fn bpf_objects_of(pid: u32) -> BpfObjects {
    let mut o = BpfObjects::default();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return o;
    };
    for e in dir.flatten() {
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            e.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        let (list, key) = match target.as_str() {
            "anon_inode:bpf-prog" => (&mut o.progs, "prog_id:"),
            "anon_inode:bpf_link" => (&mut o.links, "link_id:"),
            "anon_inode:bpf-map" => (&mut o.maps, "map_id:"),
            _ => continue,
        };
        if let Some(id) = number_after(&info, key) {
            list.push(id);
        }
    }
    for l in [&mut o.progs, &mut o.links, &mut o.maps] {
        l.sort_unstable();
        l.dedup();
    }
    o
}

fn bpftool_path() -> PathBuf {
    for p in ["/usr/sbin/bpftool", "/usr/bin/bpftool", "/sbin/bpftool"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("bpftool is not installed: `apt-get install bpftool` (`cargo xtask deps` installs it)")
}

/// Ids listed by `bpftool -j KIND show` (KIND: prog, link, map).
pub fn bpftool_ids(kind: &str) -> Vec<u64> {
    let out = Command::new(bpftool_path())
        .args(["-j", kind, "show"])
        .output()
        .unwrap_or_else(|e| panic!("running bpftool {kind} show: {e}"));
    assert!(
        out.status.success(),
        "bpftool -j {kind} show failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bpftool -j {kind} show printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let mut ids: Vec<u64> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o.get("id").and_then(serde_json::Value::as_u64))
                .collect()
        })
        .unwrap_or_default();
    ids.sort_unstable();
    ids
}

/// A pid no process has now.
pub fn unused_pid() -> u32 {
    let max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(32768);
    (1000..max)
        .rev()
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .expect("a free pid")
}

/// The first ELF executable called `name`: /usr/bin first, then `$PATH`
/// (skipping wrapper scripts such as pyenv shims, which would make the
/// launched program a shell rather than the interpreter).
pub fn find_elf(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::iter::once(PathBuf::from("/usr/bin"))
        .chain(std::env::split_paths(&path))
        .map(|d| d.join(name))
        .find(|p| {
            let mut magic = [0u8; 4];
            std::fs::File::open(p)
                .and_then(|mut f| f.read_exact(&mut magic))
                .is_ok()
                && magic == *b"\x7fELF"
        })
}
