//! Text output for `pmap CORE`, in the layouts of the live formats (default,
//! `-x`, `-d`) so that the two read alike, with what a core cannot tell
//! left out or marked:
//!
//! - default: `Address Kbytes Mode Mapping`, as live.
//! - `-x`: `Address Kbytes Dumped Mode Mapping`. RSS and Dirty are not in a
//!   core; `Dumped` is the KiB of the mapping stored in the core file (what
//!   `coredump_filter` or gcore chose to write; pages never touched count
//!   too, as holes of a sparse file).
//! - `-d`: `Address Kbytes Mode Offset Device Mapping`; the device is printed
//!   as `---:-----` (not recorded). Shared is `s` only where the name proves it
//!   (`/SYSV...`, `/dev/zero`), so `shared:` in the footer counts only those
//!   and `writeable/private:` may include mappings that were shared.

use std::io::{self, Write};

use crate::map::core::{Core, CoreRegion};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CoreFormat {
    #[default]
    Default,
    Extended,
    Device,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct CoreOptions {
    pub format: CoreFormat,
    /// `-q`: no header and no footer.
    pub quiet: bool,
    /// `-p`: full paths instead of base names.
    pub show_path: bool,
    /// `--names`: label thread stacks, guards, arenas, memfd, SysV shm.
    pub names: bool,
    /// `-l`: the dynamic linker's names, where the core holds its link map.
    pub link_names: bool,
}

/// `core 'FILE' of PID:   COMMAND`.
pub fn write_header(out: &mut dyn Write, core: &Core) -> io::Result<()> {
    write!(
        out,
        "core '{}' of {}:   ",
        core.path.display(),
        core.process.pid
    )?;
    out.write_all(core.command())?;
    out.write_all(b"\n")
}

/// Five-letter mode as procps prints it: `rwx`, `s` or `-`, `-`.
pub fn mode(r: &CoreRegion) -> [u8; 5] {
    let p = r.region.perms.0;
    [
        p[0],
        p[1],
        p[2],
        if p[3] == b's' { b's' } else { b'-' },
        b'-',
    ]
}

/// The mapping column: the file's base name (whole path with `-p`), or
/// `[ stack ]` / `[ anon ]` as procps names unnamed regions. Bytes that are
/// not printable ASCII print as `?`, as in the live tables (procps-ng).
pub fn mapping_name(r: &CoreRegion, show_path: bool) -> Vec<u8> {
    let mut scratch = Vec::new();
    let name = crate::render::names::sanitize(&r.region.name, &mut scratch);
    if name.starts_with(b"[ ") {
        return name.to_vec(); // A `--names` label.
    }
    if !name.is_empty() && !name.starts_with(b"[") && !name.contains(&b'/') {
        return name.to_vec(); // A `-l` link-map name such as `linux-vdso.so.1`.
    }
    if let Some(slash) = name.iter().rposition(|&c| c == b'/') {
        if show_path {
            let first = name.iter().position(|&c| c == b'/').unwrap_or(slash);
            return name[first..].to_vec();
        }
        return if slash + 1 < name.len() {
            name[slash + 1..].to_vec()
        } else {
            name[slash..].to_vec()
        };
    }
    if name.starts_with(b"[stack") {
        b"  [ stack ]".to_vec()
    } else {
        b"  [ anon ]".to_vec()
    }
}

pub fn write(out: &mut dyn Write, core: &Core, opts: &CoreOptions) -> io::Result<()> {
    if !opts.quiet {
        write_header(out, core)?;
    }
    let kb = |b: u64| b / 1024;
    match opts.format {
        CoreFormat::Default => {
            let mut total = 0;
            for r in &core.regions {
                total += r.region.size();
                write!(out, "{:016x} {:>6}K ", r.region.start, kb(r.region.size()))?;
                out.write_all(&mode(r))?;
                out.write_all(b" ")?;
                out.write_all(&mapping_name(r, opts.show_path))?;
                out.write_all(b"\n")?;
            }
            if !opts.quiet {
                writeln!(out, " total {:>16}K", kb(total))?;
            }
        }
        CoreFormat::Extended => {
            if !opts.quiet {
                writeln!(out, "Address           Kbytes  Dumped Mode  Mapping")?;
            }
            let (mut size, mut dumped) = (0, 0);
            for r in &core.regions {
                size += r.region.size();
                dumped += r.dumped;
                write!(
                    out,
                    "{:016x} {:>7} {:>7} ",
                    r.region.start,
                    kb(r.region.size()),
                    kb(r.dumped)
                )?;
                out.write_all(&mode(r))?;
                out.write_all(b" ")?;
                out.write_all(&mapping_name(r, opts.show_path))?;
                out.write_all(b"\n")?;
            }
            if !opts.quiet {
                writeln!(out, "---------------- ------- ------- ")?;
                writeln!(out, "total kB {:>15} {:>7}", kb(size), kb(dumped))?;
            }
        }
        CoreFormat::Device => {
            if !opts.quiet {
                writeln!(
                    out,
                    "Address           Kbytes Mode  Offset           Device    Mapping"
                )?;
            }
            let (mut mapped, mut private, mut shared) = (0, 0, 0);
            for r in &core.regions {
                let size = r.region.size();
                mapped += size;
                if r.region.perms.shared() {
                    shared += size;
                } else if r.region.perms.writable() {
                    private += size;
                }
                write!(out, "{:016x} {:>7} ", r.region.start, kb(size))?;
                out.write_all(&mode(r))?;
                write!(out, " {:016x} ---:----- ", r.region.offset)?;
                out.write_all(&mapping_name(r, opts.show_path))?;
                out.write_all(b"\n")?;
            }
            if !opts.quiet {
                writeln!(
                    out,
                    "mapped: {}K    writeable/private: {}K    shared: {}K",
                    kb(mapped),
                    kb(private),
                    kb(shared)
                )?;
            }
        }
    }
    Ok(())
}
