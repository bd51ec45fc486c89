//! Whether a read of a process's `maps`/`smaps` is its whole map, and the
//! read that checks it and tries again: the one map read behind the
//! snapshot tables, the views, `--json` and the tracer's tables.
//!
//! An open `maps`/`smaps` file is bound to the address space it was opened
//! on. When that address space dies mid-read (exit or execve), the kernel
//! just ends the file early (or fails with ESRCH once the process is
//! reaped): a short read looks like a complete one. [`judge_read`] tells
//! them apart after the fact. And the kernel resumes each read at the last
//! address shown, so a map that changes during a read can show a row
//! starting below the end of the row before it ([`Order`]).

use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    time::{Duration, Instant},
};

use super::{
    gone::gone, maps::MapsReader, pid_dir::PidDir, prefetch::Prefetch, process, smaps::SmapsReader,
    stat::StatFacts,
};
use crate::map::{process::ProcessInfo, region::Region, smaps::SmapsEntry};

/// Reads of a process whose map or program keeps changing before giving
/// up (on an exec) or keeping what the last read gave (on a change).
pub const ATTEMPTS: usize = 3;

/// What one read of a map file gave, before it is judged.
pub enum Pass {
    /// The process was reaped during the read (ESRCH or ENOENT).
    Gone,
    /// A row started below the end of the row before it: the map changed
    /// while it was read.
    Raced,
    /// Rows were read from `file` (a second descriptor of the file read);
    /// `whole` unless the read was stopped early on purpose (past the end
    /// of an `-A` range).
    Read {
        file: File,
        rows: usize,
        whole: bool,
    },
}

/// Judges one read of the map of `dir` (see [`judge_read`]); `before` was
/// read before the file was opened.
pub fn judge(dir: &PidDir, before: &StatFacts, pass: Pass) -> ReadEnd {
    match pass {
        Pass::Gone => ReadEnd::Exited,
        Pass::Raced => ReadEnd::Changed,
        Pass::Read {
            file,
            rows,
            whole: true,
        } => judge_read(dir, &file, before, rows),
        // Stopped early: the rows up to there were read while the address
        // space lived; check the program only.
        Pass::Read { whole: false, .. } => match dir.stat() {
            Ok(a) if !a.is_dead() && !before.same_whole_program(&a) => ReadEnd::Changed,
            _ if before.loading_program() => ReadEnd::Changed,
            _ => ReadEnd::Complete,
        },
    }
}

/// What a checked read ended with, besides what the caller made of it.
pub enum Tried<T> {
    /// The caller's answer to a read it accepted.
    Done(T),
    /// The process exited before its map could be read whole.
    Vanished,
    /// The process replaced its program (execve) at every attempt.
    Unsettled,
}

/// What the caller makes of one attempt: an answer, or read again.
pub enum Step<T> {
    Done(T),
    Again,
}

/// How long a try waits for an execve to finish loading the new program
/// (see [`StatFacts::loading_program`]) before reading the map anyway
/// (and finding it changed). Loading takes a few milliseconds, more when
/// the old address space is large: it is freed in between.
const LOAD_WAIT: Duration = Duration::from_secs(1);

/// The read loop: up to [`ATTEMPTS`] times, waits for an execve under way
/// to finish loading its program, looks the process of `dir` up again
/// (after the first try, or if `info` came from another program than the
/// one there now), finds its thread group's directory (a thread id's own
/// would stop working when that thread ends), notes its `stat`, and hands
/// them to `attempt` with whether this is the last try; `attempt` reads the
/// map, judges it ([`judge`]) and says whether it stands. A try whose
/// `stat` already shows another program than `info` is given up unread.
pub fn read_with_retries<T, E>(
    dir: &PidDir,
    info: &ProcessInfo,
    mut attempt: impl FnMut(&PidDir, &ProcessInfo, &StatFacts, bool) -> Result<Step<T>, E>,
) -> Result<Tried<T>, E> {
    let mut fresh;
    let mut info = info;
    for n in 0..ATTEMPTS {
        // An execve that is still mapping the new program would make every
        // read of this try a part of that program's map: wait it out.
        let Ok(now) = settled_stat(|| dir.stat(), LOAD_WAIT) else {
            return Ok(Tried::Vanished);
        };
        let looked_up = n > 0 || !describes(info, &now);
        if looked_up {
            let Some(i) = process::fetch_in(dir) else {
                return Ok(Tried::Vanished);
            };
            fresh = i;
            info = &fresh;
        }
        let group;
        let maps_dir = if info.tgid == dir.pid() {
            dir
        } else {
            match thread_group_dir(info.tgid, dir.pid()) {
                Some(d) => {
                    group = d;
                    &group
                }
                None => return Ok(Tried::Vanished),
            }
        };
        // `now` is this directory's `stat` of a moment ago, unless the
        // process was looked up again since.
        let before = if !looked_up && std::ptr::eq(maps_dir, dir) {
            now
        } else {
            match maps_dir.stat() {
                Ok(b) => b,
                Err(_) => return Ok(Tried::Vanished),
            }
        };
        if before.loading_program() || !describes(info, &before) {
            // Another execve began since: the header would not go with
            // the map.
            continue;
        }
        if let Step::Done(t) = attempt(maps_dir, info, &before, n + 1 == ATTEMPTS)? {
            return Ok(Tried::Done(t));
        }
    }
    Ok(Tried::Unsettled)
}

/// Reads `stat` with `read` until it no longer shows an execve loading
/// its program, or for `wait` at most (then returns the last reading).
fn settled_stat(
    mut read: impl FnMut() -> io::Result<StatFacts>,
    wait: Duration,
) -> io::Result<StatFacts> {
    let started = Instant::now();
    let mut pause = Duration::from_micros(100);
    loop {
        let now = read()?;
        if !now.loading_program() || started.elapsed() >= wait {
            return Ok(now);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// Whether the header facts `info` were read from the program `now` shows
/// (the same start of stack), or the process is dead (its header then
/// says so, or the read finds it gone).
fn describes(info: &ProcessInfo, now: &StatFacts) -> bool {
    now.is_dead() || info.start_stack == now.start_stack
}

/// `/proc/TGID`, if thread `tid` still belongs to it (the id may have
/// been reused since the thread was looked up).
fn thread_group_dir(tgid: u32, tid: u32) -> Option<PidDir> {
    let d = PidDir::open(tgid).ok()?;
    d.open_file(&format!("task/{tid}")).ok()?;
    Some(d)
}

/// Keeps the rows of one read in address order without overlaps.
pub struct Order {
    prev_end: u64,
    /// Leave overlapping rows out instead of giving up on the read.
    pub drop_overlaps: bool,
    /// Rows left out so far.
    pub dropped: usize,
}

/// What to do with a row.
pub enum Admit {
    Keep,
    /// It overlaps an earlier row: leave it out.
    Skip,
    /// It overlaps an earlier row: the map changed, read it again.
    Raced,
}

impl Order {
    pub fn new(drop_overlaps: bool) -> Order {
        Order {
            prev_end: 0,
            drop_overlaps,
            dropped: 0,
        }
    }

    pub fn admit(&mut self, r: &Region) -> Admit {
        if r.start < self.prev_end {
            if !self.drop_overlaps {
                return Admit::Raced;
            }
            self.dropped += 1;
            return Admit::Skip;
        }
        self.prev_end = r.end;
        Admit::Keep
    }
}

/// A process's whole map as entries (with smaps fields if `smaps`, else
/// empty fields), read and checked, with the header facts of the read that
/// stood, and how many rows the last try left out because they overlapped
/// an earlier row (the map changed during every read).
pub struct Entries {
    pub info: ProcessInfo,
    pub entries: Vec<SmapsEntry>,
    pub dropped: usize,
}

/// A reader of `maps` or of `smaps`, as entries.
enum Reader {
    Maps(MapsReader<Prefetch>),
    Smaps(SmapsReader<Prefetch>),
}

impl Reader {
    fn next_into(&mut self, e: &mut SmapsEntry) -> io::Result<bool> {
        match self {
            Reader::Maps(r) => r.next_into(&mut e.region),
            Reader::Smaps(r) => r.next_into(e),
        }
    }
}

/// Reads the map of the process of `dir` into entries, again while it
/// comes out torn (see the module's doc). `Err` if the file cannot be
/// opened or read for another reason.
pub fn read_entries(dir: &PidDir, info: &ProcessInfo, smaps: bool) -> io::Result<Tried<Entries>> {
    read_with_retries(dir, info, |maps_dir, info, before, last_try| {
        let name = if smaps { "smaps" } else { "maps" };
        let f = match maps_dir.open_file(name) {
            Ok(f) => f,
            Err(e) if gone(&e) => return Ok(Step::Done(None)),
            Err(e) => return Err(e),
        };
        let probe = f.try_clone()?;
        let mut order = Order::new(last_try);
        let mut entries = Vec::new();
        let mut e = SmapsEntry::default();
        let mut reader = if smaps {
            Reader::Smaps(SmapsReader::new(Prefetch::new(f)))
        } else {
            Reader::Maps(MapsReader::from_lines(Prefetch::new(f)))
        };
        let pass = loop {
            match reader.next_into(&mut e) {
                Ok(true) => {}
                Ok(false) => {
                    break Pass::Read {
                        file: probe,
                        rows: entries.len(),
                        whole: true,
                    };
                }
                Err(err) if gone(&err) => break Pass::Gone,
                Err(err) => return Err(err),
            }
            match order.admit(&e.region) {
                Admit::Keep => entries.push(e.clone()),
                Admit::Skip => {}
                Admit::Raced => break Pass::Raced,
            }
        };
        Ok(match judge(maps_dir, before, pass) {
            ReadEnd::Complete => Step::Done(Some(Entries {
                info: info.clone(),
                entries,
                dropped: order.dropped,
            })),
            ReadEnd::Exited => Step::Done(None),
            ReadEnd::Changed => Step::Again,
        })
    })
    .map(|t| match t {
        Tried::Done(Some(e)) => Tried::Done(e),
        Tried::Done(None) | Tried::Vanished => Tried::Vanished,
        Tried::Unsettled => Tried::Unsettled,
    })
}

/// What a read of a process's `maps`/`smaps` to its end amounted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadEnd {
    /// The whole map of one program of the process.
    Complete,
    /// The process exited during (or right after) the read: what was read
    /// may be only part of its map.
    Exited,
    /// The process replaced its program (execve) around the read: the rows
    /// may be part of the old map, or the new map under the old header.
    Changed,
}

/// Whether the address space `file` was opened on still exists: a read
/// from the start gives at least one byte then (a live process has at
/// least one region), nothing once it is gone.
fn address_space_alive(file: &File) -> bool {
    let mut f = file;
    let mut byte = [0u8; 1];
    f.seek(SeekFrom::Start(0)).is_ok() && matches!(f.read(&mut byte), Ok(1))
}

/// Judges a read of `file` (opened in `dir`) that reached its end after
/// `rows` rows; `before` was read from `dir` before `file` was opened.
///
/// The kernel ends the file early when the address space dies mid-read, so
/// a read is complete only if that address space is still alive after it
/// (then the end seen was the real end) and the program did not change
/// between `before` and the open (same start of stack), nor was it still
/// being loaded by an execve (its map then lacks what is not mapped yet).
pub fn judge_read(dir: &PidDir, file: &File, before: &StatFacts, rows: usize) -> ReadEnd {
    // First the address space, then the process: alive now means alive
    // when the end of the file was read.
    let alive = rows > 0 && address_space_alive(file);
    let after = dir.stat();
    if alive {
        return match after {
            Ok(a) if !a.is_dead() && !before.same_whole_program(&a) => ReadEnd::Changed,
            // Opened while an execve was mapping the program: part of it.
            _ if before.loading_program() => ReadEnd::Changed,
            // Exiting after a complete read does not spoil it.
            _ => ReadEnd::Complete,
        };
    }
    match after {
        Err(_) => ReadEnd::Exited,
        Ok(a) if a.is_dead() => {
            if before.is_zombie() && rows == 0 {
                // A zombie before the read: its empty map is its map.
                ReadEnd::Complete
            } else {
                ReadEnd::Exited
            }
        }
        Ok(a) if rows == 0 && a.kernel_thread && a.start_stack == before.start_stack => {
            ReadEnd::Complete
        }
        // Alive, and the address space read is gone (or was empty for a
        // user process): it exec'd.
        Ok(_) => ReadEnd::Changed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::region::test_region as r;

    #[test]
    fn rows_out_of_order_are_a_race_or_left_out_on_the_last_try() {
        let mut o = Order::new(false);
        assert!(matches!(o.admit(&r(0x1000, 0x3000, b"rw-p")), Admit::Keep));
        assert!(matches!(o.admit(&r(0x2000, 0x4000, b"rw-p")), Admit::Raced));
        let mut last = Order::new(true);
        assert!(matches!(
            last.admit(&r(0x1000, 0x3000, b"rw-p")),
            Admit::Keep
        ));
        assert!(matches!(
            last.admit(&r(0x2000, 0x4000, b"rw-p")),
            Admit::Skip
        ));
        assert!(matches!(
            last.admit(&r(0x3000, 0x4000, b"rw-p")),
            Admit::Keep
        ));
        assert_eq!(last.dropped, 1);
    }

    /// `stat` facts of a live user process with these start of code and
    /// start of stack.
    fn facts(start_code: u64, start_stack: u64) -> StatFacts {
        StatFacts {
            state: b'R',
            ppid: 1,
            exiting: false,
            kernel_thread: false,
            start_time: 5,
            start_code,
            start_stack,
            start_brk: 0,
        }
    }

    #[test]
    fn a_program_being_loaded_is_no_whole_map() {
        // Seen when an execve landed during a read (fault_snapshot's
        // execve_mid_read test): the new address space shows startstack 0,
        // then a temporary value from setup_arg_pages, then the final one,
        // with startcode 0 until that final value.
        let (empty, temporary, loaded) = (
            facts(0, 0),
            facts(0, 0x7ffc_9043_ca7a),
            facts(0x5555_0000, 0x7ffc_9043_bd70),
        );
        assert!(empty.loading_program() && temporary.loading_program());
        assert!(!loaded.loading_program());
        // Equal, but both while loading: a part of the new map.
        assert!(!empty.same_whole_program(&empty));
        assert!(!temporary.same_whole_program(&temporary));
        assert!(!temporary.same_whole_program(&loaded));
        assert!(!loaded.same_whole_program(&temporary));
        assert!(loaded.same_whole_program(&loaded));
        assert!(!loaded.same_whole_program(&facts(0x5555_0000, 0x7ffd_0000_0000)));
    }

    #[test]
    fn a_try_waits_for_the_program_to_be_loaded() {
        let mut seen = vec![
            facts(0x5555_0000, 0x7ffc_9043_bd70),
            facts(0, 0x7ffc_9043_ca7a),
            facts(0, 0),
        ];
        let got = settled_stat(|| Ok(seen.pop().expect("read again")), LOAD_WAIT).expect("settles");
        assert_eq!(got, facts(0x5555_0000, 0x7ffc_9043_bd70));
        assert!(seen.is_empty());
        // Still loading when the wait is over: the last reading.
        let got = settled_stat(|| Ok(facts(0, 0)), Duration::from_millis(5)).expect("gives up");
        assert!(got.loading_program());
        // The process gone: the error.
        assert!(settled_stat(|| Err(io::ErrorKind::NotFound.into()), LOAD_WAIT).is_err());
    }

    #[test]
    fn a_header_goes_with_the_program_of_its_start_of_stack() {
        let info = |start_stack| ProcessInfo {
            pid: 7,
            tgid: 7,
            cmdline: b"many_maps 20000".to_vec(),
            start_stack,
        };
        let loaded = facts(0x5555_0000, 0x7ffc_9043_bd70);
        assert!(describes(&info(0x7ffc_9043_bd70), &loaded));
        // Read before the execve, or while it loaded the program.
        assert!(!describes(&info(0x7ffd_0000_0000), &loaded));
        assert!(!describes(&info(0), &loaded));
        // Dead: the read finds that out.
        let zombie = StatFacts {
            state: b'Z',
            ..facts(0, 0)
        };
        assert!(describes(&info(0x7ffc_9043_bd70), &zombie));
    }

    #[test]
    fn own_map_read_checked_is_whole_and_in_order() {
        let dir = PidDir::open(std::process::id()).expect("own /proc dir");
        let info = process::fetch_in(&dir).expect("own process");
        let Tried::Done(read) = read_entries(&dir, &info, false).expect("own maps") else {
            panic!("own maps not read whole");
        };
        assert!(read.entries.iter().any(|e| e.region.name == b"[stack]"));
        assert!(
            read.entries
                .windows(2)
                .all(|w| w[0].region.end <= w[1].region.start)
        );
        assert!(read.entries.iter().all(|e| e.fields.is_empty()));
    }

    #[test]
    fn own_directory_and_a_complete_read() {
        let dir = PidDir::open(std::process::id()).expect("own /proc dir");
        let before = dir.stat().expect("own stat");
        assert!(!before.kernel_thread && !before.is_dead());
        let mut f = dir.open_file("maps").expect("own maps");
        let mut text = Vec::new();
        f.read_to_end(&mut text).expect("read maps");
        let rows = text.iter().filter(|&&c| c == b'\n').count();
        assert!(rows > 0);
        assert_eq!(judge_read(&dir, &f, &before, rows), ReadEnd::Complete);
    }

    #[test]
    fn a_dead_process_is_not_read_through_its_old_directory() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep runs");
        let dir = PidDir::open(child.id()).expect("child's /proc dir");
        let before = dir.stat().expect("child's stat");
        let f = dir.open_file("maps").expect("child's maps");
        let _ = child.kill();
        let _ = child.wait();
        // Reaped: the directory no longer opens anything, and a read that
        // ended now is judged as cut short.
        assert!(dir.open_file("maps").is_err());
        assert_eq!(judge_read(&dir, &f, &before, 5), ReadEnd::Exited);
    }
}
