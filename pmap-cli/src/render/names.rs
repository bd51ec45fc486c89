//! The Mapping column of the default, `-x` and `-d` tables (procps-ng's
//! `mapping_name`), and of the smaps tables.

use super::{Options, num};
use crate::map::region::Region;

/// procps-ng 4.0.2 replaces every byte that is not printable ASCII in a maps
/// line by '?' (the kernel already escaped '\n' as `\012`).
pub fn sanitize<'a>(name: &'a [u8], scratch: &'a mut Vec<u8>) -> &'a [u8] {
    if name.iter().all(|&c| (0x20..0x7f).contains(&c)) {
        return name;
    }
    scratch.clear();
    scratch.extend(
        name.iter()
            .map(|&c| if (0x20..0x7f).contains(&c) { c } else { b'?' }),
    );
    scratch
}

/// Appends the Mapping column for `r` (default, `-x`, `-d` tables):
/// `[ shmid=0x.. ]` for SysV shared memory, a tracer's stand-in name as it
/// is, the file name (or, with
/// `show_path`, the path), with `kernel_name` a bracketed kernel name, else
/// `[ stack ]` for the region holding the stack start, else `[ anon ]`.
pub fn push_mapping_name(
    buf: &mut Vec<u8>,
    r: &Region,
    opts: &Options,
    start_stack: u64,
    scratch: &mut Vec<u8>,
) {
    let name = sanitize(&r.name, scratch);
    if r.dev_major == 0
        && crate::sys::bytes::find_str(name, b"/SYSV").is_some()
        && opts.shm_minor.get() == Some(r.dev_minor)
    {
        buf.extend_from_slice(b"  [ shmid=0x");
        num::hex_zero(buf, r.inode, 0);
        buf.extend_from_slice(b" ]");
        return;
    }
    // Shown as it is, not as anonymous memory.
    if r.name_stands_in() {
        buf.extend_from_slice(name);
        return;
    }
    if let Some(last) = crate::sys::bytes::rfind(b'/', name) {
        if opts.show_path {
            let first = crate::sys::bytes::find(b'/', name).unwrap_or(last);
            buf.extend_from_slice(&name[first..]);
        } else if last + 1 < name.len() {
            buf.extend_from_slice(&name[last + 1..]);
        } else {
            buf.push(b'/');
        }
        return;
    }
    if opts.kernel_name
        && name.last() == Some(&b']')
        && let Some(open) = crate::sys::bytes::find(b'[', name)
    {
        buf.extend_from_slice(&name[open..]);
        return;
    }
    if start_stack >= r.start && start_stack <= r.end {
        buf.extend_from_slice(b"  [ stack ]");
    } else {
        buf.extend_from_slice(b"  [ anon ]");
    }
}

/// The Mapping column of the smaps tables (`-X`, `-XX`, rc): the name as the
/// kernel prints it, cut to 127 bytes (procps-ng's buffer), then the part
/// after the last '/' unless `show_path`.
pub fn smaps_mapping_name(name: &[u8], show_path: bool) -> &[u8] {
    let desc = &name[..name.len().min(127)];
    if show_path {
        return desc;
    }
    match crate::sys::bytes::rfind(b'/', desc) {
        Some(last) => &desc[last + 1..],
        None => desc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_of(name: &[u8], opts: &Options, stack: u64) -> String {
        let r = Region {
            start: 0x1000,
            end: 0x3000,
            dev_minor: 1,
            inode: 0xabc,
            name: name.to_vec(),
            ..Region::default()
        };
        let mut buf = Vec::new();
        push_mapping_name(&mut buf, &r, opts, stack, &mut Vec::new());
        String::from_utf8(buf).expect("sanitized output is ASCII")
    }

    #[test]
    fn names() {
        let o = Options::default();
        let p = Options {
            show_path: true,
            ..Options::default()
        };
        let k = Options {
            kernel_name: true,
            ..Options::default()
        };
        let shm = Options {
            shm_minor: crate::render::ShmMinor::Known(Some(1)),
            ..Options::default()
        };
        assert_eq!(name_of(b"/usr/lib/libc.so.6", &o, 0), "libc.so.6");
        assert_eq!(name_of(b"/usr/lib/libc.so.6", &p, 0), "/usr/lib/libc.so.6");
        assert_eq!(name_of(b"/tmp/dir/", &o, 0), "/");
        assert_eq!(name_of(b"/tmp/a b (deleted)", &o, 0), "a b (deleted)");
        assert_eq!(name_of(b"/tmp/caf\xc3\xa9\tx", &o, 0), "caf???x");
        assert_eq!(name_of(b"/tmp/new\\012line", &o, 0), "new\\012line");
        assert_eq!(name_of(b"[heap]", &o, 0), "  [ anon ]");
        assert_eq!(name_of(b"[heap]", &k, 0), "[heap]");
        assert_eq!(name_of(b"[stack]", &o, 0x2000), "  [ stack ]");
        assert_eq!(name_of(b"", &o, 0x3000), "  [ stack ]");
        assert_eq!(name_of(b"", &k, 0), "  [ anon ]");
        assert_eq!(name_of(b"[anon:a/b]", &o, 0), "b]");
        assert_eq!(name_of(b"[anon:a/b]", &p, 0), "/b]");
        assert_eq!(name_of(b"[anon:x]", &k, 0), "[anon:x]");
        assert_eq!(name_of(b"(unknown file)", &o, 0), "(unknown file)");
        assert_eq!(name_of(b"(fd 3)", &p, 0), "(fd 3)");
        assert_eq!(
            name_of(b"/SYSV0000abcd (deleted)", &shm, 0),
            "  [ shmid=0xabc ]"
        );
        assert_eq!(
            name_of(b"/SYSV0000abcd (deleted)", &o, 0),
            "SYSV0000abcd (deleted)"
        );
    }

    #[test]
    fn smaps_names() {
        assert_eq!(smaps_mapping_name(b"/a/b/c", false), b"c");
        assert_eq!(smaps_mapping_name(b"/a/b/c", true), b"/a/b/c");
        assert_eq!(smaps_mapping_name(b"/a/b/", false), b"");
        assert_eq!(smaps_mapping_name(b"[heap]", false), b"[heap]");
        let long = [b"/".to_vec(), vec![b'x'; 200]].concat();
        assert_eq!(smaps_mapping_name(&long, true).len(), 127);
    }
}
