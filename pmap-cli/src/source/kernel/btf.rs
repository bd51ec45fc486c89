//! Field offsets of kernel structures, from the running kernel's BTF.
//!
//! The kernel program reads `vm_area_struct` and a few structures around it
//! at fixed byte offsets, which differ between kernel builds. Rust eBPF has
//! no CO-RE field relocations, so userspace finds the offsets here and
//! hands them to the program as load-time constants.
//!
//! Ours rather than a crate's: aya parses BTF but keeps its type lookup
//! private, and this needs only a walk of the type section (format:
//! the kernel's Documentation/bpf/btf.rst).

use anyhow::{Context as _, Result, bail};
use pmap_common::KernelOffsets;

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_TYPE_TAG: u32 = 18;

/// One parsed type: where its record is, enough to follow members.
#[derive(Clone, Copy)]
struct Ty {
    name_off: u32,
    kind: u32,
    kind_flag: bool,
    vlen: u32,
    /// Size, or the referenced type id.
    size_or_type: u32,
    /// Byte offset of the kind-specific data in the type section.
    data: usize,
}

/// The type section of a BTF blob, indexed by type id.
pub struct Btf {
    types: Vec<Ty>,
    type_sec: Vec<u8>,
    strings: Vec<u8>,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl Btf {
    pub fn parse(data: &[u8]) -> Result<Btf> {
        let magic = data.get(0..2).map(|m| u16::from_le_bytes([m[0], m[1]]));
        if magic != Some(MAGIC) {
            bail!("not little-endian BTF (bad magic)");
        }
        let field = |i: usize| u32_at(data, 4 + 4 * i).context("BTF header is cut short");
        let hdr_len = field(0)? as usize;
        let (type_off, type_len) = (field(1)? as usize, field(2)? as usize);
        let (str_off, str_len) = (field(3)? as usize, field(4)? as usize);
        let section = |off: usize, len: usize| {
            data.get(hdr_len + off..hdr_len + off + len)
                .context("BTF section outside the blob")
        };
        let type_sec = section(type_off, type_len)?.to_vec();
        let strings = section(str_off, str_len)?.to_vec();
        // Id 0 is `void`, never stored.
        let mut types = vec![Ty {
            name_off: 0,
            kind: 0,
            kind_flag: false,
            vlen: 0,
            size_or_type: 0,
            data: 0,
        }];
        let mut at = 0;
        while at < type_sec.len() {
            let word = |i: usize| u32_at(&type_sec, at + 4 * i).context("BTF type cut short");
            let (name_off, info, size_or_type) = (word(0)?, word(1)?, word(2)?);
            let vlen = info & 0xffff;
            let kind = (info >> 24) & 0x1f;
            let data = at + 12;
            let extra = match kind {
                1 | 14 | 17 => 4,                      // INT, VAR, DECL_TAG
                3 => 12,                               // ARRAY
                4 | 5 | 15 | 19 => 12 * vlen as usize, // STRUCT, UNION, DATASEC, ENUM64
                6 | 13 => 8 * vlen as usize,           // ENUM, FUNC_PROTO
                2 | 7..=12 | 16 | 18 => 0,
                k => bail!("unknown BTF kind {k}"),
            };
            types.push(Ty {
                name_off,
                kind,
                kind_flag: info >> 31 != 0,
                vlen,
                size_or_type,
                data,
            });
            at = data + extra;
        }
        Ok(Btf {
            types,
            type_sec,
            strings,
        })
    }

    fn name(&self, off: u32) -> &[u8] {
        let s = self.strings.get(off as usize..).unwrap_or_default();
        &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())]
    }

    /// The id of the struct named `name`.
    fn struct_id(&self, name: &str) -> Option<u32> {
        self.types
            .iter()
            .position(|t| {
                t.kind == KIND_STRUCT && t.vlen > 0 && self.name(t.name_off) == name.as_bytes()
            })
            .map(|i| i as u32)
    }

    /// Follows typedefs and qualifiers to the type they name.
    fn resolve(&self, mut id: u32) -> Option<&Ty> {
        for _ in 0..32 {
            let t = self.types.get(id as usize)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type
                }
                _ => return Some(t),
            }
        }
        None
    }

    /// Bit offset of member `field` in the struct or union `t`, looking
    /// inside anonymous members (where the kernel keeps e.g. `vm_start`).
    fn member_bits(&self, t: &Ty, field: &[u8], depth: u32) -> Option<u64> {
        if depth > 8 || !(t.kind == KIND_STRUCT || t.kind == KIND_UNION) {
            return None;
        }
        for i in 0..t.vlen as usize {
            let at = t.data + 12 * i;
            let name_off = u32_at(&self.type_sec, at)?;
            let ty = u32_at(&self.type_sec, at + 4)?;
            let raw = u32_at(&self.type_sec, at + 8)?;
            // With kind_flag the top 8 bits are a bitfield's size.
            let bits = u64::from(if t.kind_flag { raw & 0xff_ffff } else { raw });
            let name = self.name(name_off);
            if name == field {
                return Some(bits);
            }
            if name.is_empty()
                && let Some(inner) = self.resolve(ty)
                && let Some(b) = self.member_bits(inner, field, depth + 1)
            {
                return Some(bits + b);
            }
        }
        None
    }

    /// Byte offset of `strukt.field`.
    pub fn offset(&self, strukt: &str, field: &str) -> Result<u64> {
        let id = self
            .struct_id(strukt)
            .with_context(|| format!("the kernel's BTF has no struct {strukt}"))?;
        let t = self.types[id as usize];
        let bits = self
            .member_bits(&t, field.as_bytes(), 0)
            .with_context(|| format!("struct {strukt} has no field {field} in the kernel's BTF"))?;
        if bits % 8 != 0 {
            bail!("{strukt}.{field} is a bitfield");
        }
        Ok(bits / 8)
    }

    /// Every offset the capture needs.
    pub fn kernel_offsets(&self) -> Result<KernelOffsets> {
        let vma = |f| self.offset("vm_area_struct", f);
        Ok(KernelOffsets {
            vm_start: vma("vm_start")?,
            vm_end: vma("vm_end")?,
            vm_flags: vma("vm_flags")?,
            vm_pgoff: vma("vm_pgoff")?,
            vm_file: vma("vm_file")?,
            task_mm: self.offset("task_struct", "mm")?,
            f_inode: self.offset("file", "f_inode")?,
            i_ino: self.offset("inode", "i_ino")?,
            i_sb: self.offset("inode", "i_sb")?,
            s_dev: self.offset("super_block", "s_dev")?,
            mm_brk: self.offset("mm_struct", "brk")?,
            mm_start_brk: self.offset("mm_struct", "start_brk")?,
            mm_start_code: self.offset("mm_struct", "start_code")?,
            mm_start_data: self.offset("mm_struct", "start_data")?,
            mm_end_data: self.offset("mm_struct", "end_data")?,
            mm_start_stack: self.offset("mm_struct", "start_stack")?,
            mm_map_count: self.offset("mm_struct", "map_count")?,
            mm_saved_auxv: self.offset("mm_struct", "saved_auxv")?,
        })
    }
}

/// The offsets for the running kernel, from `/sys/kernel/btf/vmlinux`.
pub fn running_kernel_offsets(path: &str) -> Result<KernelOffsets> {
    let data = std::fs::read(path).with_context(|| format!("reading the kernel's BTF ({path})"))?;
    Btf::parse(&data)
        .and_then(|b| b.kernel_offsets())
        .with_context(|| {
            format!(
                "finding vm_area_struct's fields in {path}, which the kernel program needs to \
                 read each call's regions; use a kernel with BTF (CONFIG_DEBUG_INFO_BTF=y), or \
                 `--backend poll`"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The machine's own BTF: the offsets must be those the kernel uses.
    /// `vm_start` and `vm_end` open `vm_area_struct` on every kernel since
    /// the maple tree (6.1).
    #[test]
    fn finds_vma_fields_in_the_running_kernel() {
        let o = running_kernel_offsets("/sys/kernel/btf/vmlinux").expect("BTF parses");
        assert_eq!((o.vm_start, o.vm_end), (0, 8));
        assert!(o.vm_flags > o.vm_end && o.vm_pgoff > o.vm_flags, "{o:?}");
        assert!(o.vm_file > o.vm_pgoff, "{o:?}");
        assert!(o.mm_brk > 0 && o.i_sb > 0 && o.s_dev > 0, "{o:?}");
    }

    #[test]
    fn rejects_what_is_not_btf() {
        assert!(Btf::parse(b"\x7fELF....................").is_err());
        assert!(Btf::parse(&[]).is_err());
    }
}
