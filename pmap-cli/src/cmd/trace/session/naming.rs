//! Naming a captured row as `/proc/PID/maps` would: a capture carries a
//! file's identity (device, inode), not its path, and no special or
//! anonymous name.

use pmap_common::{Event, failed, nr};

use super::Session;
use crate::{
    cmd::trace::{capture::Fallback, effect, syscalls::Call},
    map::{kind, region::Region},
};

impl Session {
    /// Names a captured row as `/proc/PID/maps` would (fs/proc/task_mmu.c
    /// `get_vma_name`): a file's path, a special mapping's name, `[heap]`,
    /// `[stack]`, or an anonymous region's own name.
    pub(super) fn name_captured(
        &mut self,
        r: &mut Region,
        call: Call,
        ev: &Event,
        old: &[Region],
        brk: u64,
    ) -> Result<(), Fallback> {
        let overlaps = |o: &&Region| o.start < r.end && o.end > r.start;
        if r.inode != 0 || r.dev_major != 0 || r.dev_minor != 0 || r.offset != 0 {
            return self.name_file(r, ev, old);
        }
        // A special mapping ([vdso], [vvar], ...) keeps its name; it
        // never merges with anything.
        if let Some(o) = old
            .iter()
            .filter(overlaps)
            .find(|o| matches!(kind::name(o), kind::Name::Special))
        {
            r.name = o.name.clone();
            return Ok(());
        }
        if r.start <= brk && r.end >= self.start_brk && self.start_brk != 0 {
            r.name = b"[heap]".to_vec();
        } else if r.start <= self.start_stack && r.end >= self.start_stack {
            r.name = b"[stack]".to_vec();
        } else if call != Call::Mmap
            && call != Call::Mremap
            && let Some(o) = old
                .iter()
                .filter(overlaps)
                .find(|o| o.name.starts_with(b"[anon:") || o.name.starts_with(b"[anon_shmem:"))
        {
            // A named anonymous region keeps its name through splits and
            // merges (regions merge only with equal names).
            r.name = o.name.clone();
        }
        Ok(())
    }

    /// Names a captured file row: from the rows it overlapped, from the
    /// names seen for that file, from the kernel's row at that address now,
    /// or from the descriptor the mmap was given.
    pub(super) fn name_file(
        &mut self,
        r: &mut Region,
        ev: &Event,
        old: &[Region],
    ) -> Result<(), Fallback> {
        let id = (r.dev_major, r.dev_minor, r.inode);
        // A row of the same file that has its name.
        let same = |o: &Region| (o.dev_major, o.dev_minor, o.inode) == id && !o.name_stands_in();
        // The name, device and inode the kernel prints (for SysV segments
        // and overlayfs, not those of the file the region holds).
        let take = |r: &mut Region, k: &Region| {
            (r.name, r.dev_major, r.dev_minor, r.inode) =
                (k.name.clone(), k.dev_major, k.dev_minor, k.inode);
        };
        if let Some(o) = old
            .iter()
            .find(|o| same(o) && o.start < r.end && o.end > r.start)
        {
            r.name = o.name.clone();
            return Ok(());
        }
        // A row it overlapped that maps the same file pages at the same
        // place (a split or merge of it), shown with another identity. Not
        // for calls that make new mappings: a new mapping over an old one
        // of the same kind (shared anonymous memory) is another object.
        let base = r.start.wrapping_sub(r.offset);
        let creates = matches!(ev.kind, nr::MMAP | nr::MREMAP | nr::SHMAT);
        if !creates
            && let Some(o) = old
                .iter()
                .find(|o| {
                    o.inode != 0
                        && !o.name_stands_in()
                        && o.start < r.end
                        && o.end > r.start
                        && o.start.wrapping_sub(o.offset) == base
                        && o.perms.shared() == r.perms.shared()
                })
                .cloned()
        {
            take(r, &o);
            return Ok(());
        }
        // A region mremap moved: the row it came from, at the old address
        // with the same file offset.
        if ev.kind == nr::MREMAP && !failed(ev.ret) {
            let from = ev.args[0].wrapping_add(r.start.wrapping_sub(ev.ret as u64));
            if let Some(o) = self
                .model
                .containing(from)
                .filter(|o| {
                    o.inode != 0
                        && !o.name_stands_in()
                        && o.offset + (from - o.start) == r.offset
                        // The same file, or one shown under another
                        // device's identity (see below); another file of
                        // the same device is not where this came from.
                        && (same(o) || (o.dev_major, o.dev_minor) != (r.dev_major, r.dev_minor))
                })
                .cloned()
            {
                take(r, &o);
                return Ok(());
            }
        }
        let known = self.file_names.borrow().get(&id).cloned();
        if let Some(k) = known {
            take(r, &k);
            return Ok(());
        }
        if let Some(o) = self.model.regions().find(|o| same(o)).cloned() {
            self.file_names.borrow_mut().insert(id, o.clone());
            take(r, &o);
            return Ok(());
        }
        // Shared anonymous memory is a file of the kernel's own (shmem)
        // that `/proc` always names so (mm/shmem.c `shmem_zero_setup`).
        // Its identity is the capture's: each mmap makes a new object, and
        // the kernel's row at that address now may be a later one's.
        if ev.kind == nr::MMAP && ev.args[3] & libc::MAP_ANONYMOUS as u64 != 0 {
            r.name = b"/dev/zero (deleted)".to_vec();
            return Ok(());
        }
        // The kernel's rows there now, if one is still this mapping (or
        // what is left of it): the same file, or at its start one on
        // another device with the same protection (overlayfs prints its
        // own device and inode, the capture holds the real file's).
        // Another file of the same device is a later mapping over this
        // one, not this one under another name.
        let now = self.view().and_then(|v| v.range(r.start, r.end));
        if let Ok(now) = now {
            let other_device = |k: &Region| {
                k.start == r.start
                    && k.offset == r.offset
                    && k.perms == r.perms
                    && (k.dev_major, k.dev_minor) != (r.dev_major, r.dev_minor)
            };
            if let Some(k) = now.iter().find(|k| same(k)) {
                self.file_names.borrow_mut().insert(id, k.clone());
                take(r, k);
                return Ok(());
            }
            if let Some(k) = now.iter().find(|k| other_device(k)) {
                take(r, k);
                return Ok(());
            }
        }
        if ev.kind == nr::MMAP
            && let Some(name) = self.fd_name(ev.args[4] as i32, id)
        {
            r.name = name;
            self.file_names.borrow_mut().insert(id, r.clone());
            return Ok(());
        }
        Err(Fallback::Unnamed)
    }

    /// The path of the process's descriptor `fd`, if it is the file `id`.
    pub(super) fn fd_name(&self, fd: i32, id: (u32, u32, u64)) -> Option<Vec<u8>> {
        use std::os::unix::{ffi::OsStrExt, fs::MetadataExt};
        if fd < 0 {
            return None;
        }
        let link = format!("fd/{fd}");
        let dir = self.dir.as_ref()?;
        let meta = dir.metadata(&link).ok()?;
        let dev = meta.dev();
        if (libc::major(dev), libc::minor(dev), meta.ino()) != id {
            return None;
        }
        let target = dir.read_link(&link).ok()?;
        Some(target.as_os_str().as_bytes().to_vec())
    }

    /// Gives rows derived from an mmap of a descriptor the name, device
    /// and inode of the file the kernel has at their addresses now, if it
    /// still maps the same page of a file there (a later call may have
    /// replaced it; the descriptor itself is often closed already). Stacks
    /// are named from these rows before the batch settles, and a delta
    /// that says `(fd 3)` where the kernel says `libc.so.6` helps nobody.
    pub(super) fn name_files(&mut self, rows: &mut [Region]) {
        for r in rows.iter_mut().filter(|r| effect::unnamed_file(r)) {
            let Ok(now) = self.view().and_then(|v| v.range(r.start, r.end)) else {
                return;
            };
            let base = r.start.wrapping_sub(r.offset);
            if let Some(k) = now
                .into_iter()
                .find(|k| k.inode != 0 && k.start.wrapping_sub(k.offset) == base)
            {
                r.name = k.name;
                r.dev_major = k.dev_major;
                r.dev_minor = k.dev_minor;
                r.inode = k.inode;
            }
        }
    }
}
