//! What the command lines share: one vocabulary for what the options mean
//! (the table format, `-A` ranges, PIDs, rc files, exit statuses) and the
//! procps table driver. Not a command: every command may use it, and it
//! uses no command.
//!
//! - `format`: the table format of `-x`, `-X`, `-XX`, `-d`.
//! - `numbers`: PID and `-A` arguments, read as procps-ng reads them.
//! - `rc`: the `~/.pmaprc` file (`-c`, `-C`, `-n`, `-N`).
//! - `exit`: the exit statuses.
//! - `help`: what `--help` names beyond procps-ng.
//! - `roles`: the roles of a live process's regions (arenas, stacks, JIT).
//! - `table`: one process's procps table, read checked and printed.
//! - `spool`: output held back until a read is judged whole.
pub(crate) mod exit;
pub(crate) mod format;
pub(crate) mod help;
pub(crate) mod numbers;
pub mod rc;
pub(crate) mod roles;
pub(crate) mod spool;
pub(crate) mod table;
