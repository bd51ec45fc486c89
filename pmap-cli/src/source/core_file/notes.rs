//! Decoding of the notes a Linux core carries (`include/uapi/linux/elfcore.h`,
//! `fs/binfmt_elf.c`): who the process was (`NT_PRPSINFO`), its threads
//! (`NT_PRSTATUS`), which files its mappings came from (`NT_FILE`) and its
//! auxiliary vector (`NT_AUXV`). Every read is bounds-checked: a note shorter
//! than its layout yields `None`, never a panic.

use crate::map::core::{CoreProcess, CoreThread};

/// One entry of `NT_FILE`: a file-backed mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMapping {
    pub start: u64,
    pub end: u64,
    /// Offset into the file, in bytes.
    pub offset: u64,
    /// The path as the kernel wrote it (`d_path`, so ` (deleted)` when unlinked).
    pub name: Vec<u8>,
}

pub const AT_SYSINFO_EHDR: u64 = 33;
pub const AT_EXECFN: u64 = 31;
pub const AT_PAGESZ: u64 = 6;

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(off..off + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(
        b.get(off..off.checked_add(8)?)?.try_into().ok()?,
    ))
}
fn c_string(b: &[u8]) -> Vec<u8> {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    b[..end].to_vec()
}

/// `elf_prpsinfo`: state@1, uid@16, gid@20, pid@24, ppid@28, fname@40[16], psargs@56[80].
pub fn prpsinfo(desc: &[u8]) -> Option<CoreProcess> {
    Some(CoreProcess {
        state: char::from(*desc.get(1)?),
        uid: u32_at(desc, 16)?,
        gid: u32_at(desc, 20)?,
        pid: u32_at(desc, 24)?,
        ppid: u32_at(desc, 28)?,
        fname: c_string(desc.get(40..56)?),
        psargs: trim_end(&c_string(desc.get(56..136)?)),
    })
}

fn trim_end(b: &[u8]) -> Vec<u8> {
    let end = b.iter().rposition(|&c| c != b' ').map_or(0, |i| i + 1);
    b[..end].to_vec()
}

/// Offset of the stack pointer in `elf_prstatus`: `pr_reg` starts at 112;
/// x86_64's `user_regs_struct` has `rsp` as its 20th register, aarch64's
/// `user_pt_regs` has `sp` after `regs[31]`.
#[cfg(target_arch = "x86_64")]
const SP_OFFSET: usize = 112 + 19 * 8;
#[cfg(target_arch = "aarch64")]
const SP_OFFSET: usize = 112 + 31 * 8;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const SP_OFFSET: usize = usize::MAX - 8;

/// `elf_prstatus`: cursig@12, pid@32, registers from 112.
pub fn prstatus(desc: &[u8]) -> Option<CoreThread> {
    Some(CoreThread {
        signal: u16_at(desc, 12)?,
        tid: u32_at(desc, 32)?,
        sp: u64_at(desc, SP_OFFSET),
    })
}

/// `NT_FILE`: count, page size, `count` × (start, end, offset in pages),
/// then `count` NUL-terminated names.
pub fn nt_file(desc: &[u8]) -> Option<Vec<FileMapping>> {
    let count = usize::try_from(u64_at(desc, 0)?).ok()?;
    let page = u64_at(desc, 8)?;
    let names_at = count.checked_mul(24)?.checked_add(16)?;
    let mut names = desc.get(names_at..)?.split(|&c| c == 0);
    let mut out = Vec::with_capacity(count.min(1 << 20));
    for i in 0..count {
        let at = 16 + i * 24;
        out.push(FileMapping {
            start: u64_at(desc, at)?,
            end: u64_at(desc, at + 8)?,
            offset: u64_at(desc, at + 16)?.checked_mul(page)?,
            name: names.next()?.to_vec(),
        });
    }
    Some(out)
}

/// `NT_AUXV`: (type, value) pairs up to `AT_NULL`.
pub fn auxv(desc: &[u8]) -> Vec<(u64, u64)> {
    desc.chunks_exact(16)
        .filter_map(|c| Some((u64_at(c, 0)?, u64_at(c, 8)?)))
        .take_while(|&(t, _)| t != 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nt_file_decodes_entries_and_names() {
        let mut d = Vec::new();
        for v in [2u64, 4096, 0x1000, 0x3000, 0, 0x5000, 0x6000, 3] {
            d.extend_from_slice(&v.to_ne_bytes());
        }
        d.extend_from_slice(b"/bin/a\0/lib/b c (deleted)\0");
        let f = nt_file(&d).expect("valid note");
        assert_eq!(f.len(), 2);
        assert_eq!(f[1].offset, 3 * 4096);
        assert_eq!(f[1].name, b"/lib/b c (deleted)");
    }

    #[test]
    fn short_notes_are_refused_not_panicking() {
        let mut d = Vec::new();
        for v in [u64::MAX, 4096] {
            d.extend_from_slice(&v.to_ne_bytes());
        }
        assert!(nt_file(&d).is_none());
        assert!(nt_file(&[1, 2, 3]).is_none());
        assert!(prpsinfo(&[0; 100]).is_none());
        assert!(prstatus(&[0; 20]).is_none());
        assert!(auxv(&[0; 7]).is_empty());
    }
}
