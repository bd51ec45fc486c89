//! One region of a process's address space, as a line of `/proc/PID/maps`
//! describes it. Readers (`/proc`, `PROCMAP_QUERY`, core files) produce these,
//! the trace model keeps them, and the printers format them.

/// `rwxp` / `r--s` as the kernel prints them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Perms(pub [u8; 4]);

impl Perms {
    pub fn readable(self) -> bool {
        self.0[0] == b'r'
    }
    pub fn writable(self) -> bool {
        self.0[1] == b'w'
    }
    pub fn executable(self) -> bool {
        self.0[2] == b'x'
    }
    pub fn shared(self) -> bool {
        self.0[3] == b's'
    }
    pub fn as_str(&self) -> &str {
        // Only ASCII letters and '-' are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("????")
    }
}

/// A mapped region. `name` holds the bytes the kernel prints after the
/// inode column (already escaped by the kernel, e.g. `\012` for a newline),
/// which are not always UTF-8.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub perms: Perms,
    pub offset: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub inode: u64,
    pub name: Vec<u8>,
}

impl Region {
    pub fn size(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the name only stands in for one the tracer could not learn
    /// (`(fd 3)`, `(unknown file)`): never a source of names for other
    /// rows, and printed as it is. The kernel's names never start with
    /// `(`: paths start with `/`, its own names with `[`.
    pub fn name_stands_in(&self) -> bool {
        self.name.first() == Some(&b'(')
    }
}

/// An anonymous region with these bounds and permissions, for tests.
#[cfg(test)]
pub fn test_region(start: u64, end: u64, perms: &[u8; 4]) -> Region {
    Region {
        start,
        end,
        perms: Perms(*perms),
        ..Default::default()
    }
}
