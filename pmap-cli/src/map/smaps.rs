//! One region of `/proc/PID/smaps` as data: the region, its `Key: value`
//! fields in the kernel's order, and its `VmFlags`. `source::smaps` reads
//! them; the tables and views print them.

use std::sync::Arc;

use super::region::Region;

/// One `Key: value kB` line of an smaps entry (the value is in kB, or a
/// plain number for `THPeligible`/`ProtectionKey`). A reader hands out the
/// same `Arc` for the same field of every entry, so consumers can recognise
/// a field by pointer (`Arc::ptr_eq`) instead of comparing names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct SmapsField {
    pub name: Arc<str>,
    pub value: u64,
}

impl SmapsField {
    #[cfg(test)]
    pub fn new(name: &str, value: u64) -> Self {
        SmapsField {
            name: Arc::from(name),
            value,
        }
    }
}

/// One region of `/proc/PID/smaps`: its header line, its fields in the
/// kernel's order, and its `VmFlags` (without the trailing space).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct SmapsEntry {
    pub region: Region,
    pub fields: Vec<SmapsField>,
    pub vm_flags: Option<Vec<u8>>,
}

impl SmapsEntry {
    /// The value of field `name`, if the kernel printed it.
    pub fn field(&self, name: &str) -> Option<u64> {
        self.fields
            .iter()
            .find(|f| &*f.name == name)
            .map(|f| f.value)
    }
}
