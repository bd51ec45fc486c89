//! Call-frame information per mapped file, read once per (device, inode)
//! and shared by every process and module made from it.

use std::collections::HashMap;

use framehop::ExplicitModuleSectionInfo;

use super::Bytes;
use crate::{
    map::region::Region,
    source::elf_module::{ElfModule, path_of},
};

/// A file's call-frame sections and segments.
#[derive(Debug)]
pub struct FileUnwind {
    module: ElfModule,
}

impl FileUnwind {
    /// The linked address of file offset `off` of a code mapping.
    pub fn address_of(&self, off: u64) -> Option<u64> {
        self.module.address_of(off, true)
    }

    /// What framehop needs of the file (section bytes are shared, not
    /// copied).
    pub fn section_info(&self) -> ExplicitModuleSectionInfo<Bytes> {
        let m = &self.module;
        ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: m.text.clone(),
            got_svma: m.got.clone(),
            eh_frame_svma: m.eh_frame.as_ref().map(|s| s.svma.clone()),
            eh_frame: m.eh_frame.as_ref().map(|s| s.data.clone()),
            eh_frame_hdr_svma: m.eh_frame_hdr.as_ref().map(|s| s.svma.clone()),
            eh_frame_hdr: m.eh_frame_hdr.as_ref().map(|s| s.data.clone()),
            debug_frame: m.debug_frame.as_ref().map(|s| s.data.clone()),
            ..Default::default()
        }
    }
}

/// Files by (device major, minor, inode); `None` for a file that could not
/// be read as ELF (its frames are unwound with frame pointers).
#[derive(Debug, Default)]
pub struct UnwindFiles {
    files: HashMap<(u32, u32, u64), Option<FileUnwind>>,
}

impl UnwindFiles {
    /// The call-frame information of the file behind region `r` of
    /// process `pid`.
    pub fn get(&mut self, pid: u32, r: &Region) -> Option<&FileUnwind> {
        self.files
            .entry((r.dev_major, r.dev_minor, r.inode))
            .or_insert_with(|| {
                let module = ElfModule::read(&path_of(pid, r), true).ok()?;
                Some(FileUnwind { module })
            })
            .as_ref()
    }
}
