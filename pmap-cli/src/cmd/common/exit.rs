//! Exit statuses, as procps-ng's pmap sets them; the views and the core
//! files follow the same rules.

/// A usage error, a file that could not be read, a write error.
pub const FAILURE: u8 = 1;

/// ORed in when some PID did not exist (or exited before its map was read).
pub const MISSING: u8 = 42;
