//! What insight says about one delta: lines under it in text mode, keys of
//! its record in `--json`. Each finding is built once, as a [`Note`] with
//! both forms, so the two outputs cannot drift apart.
//!
//! JSON keys (documented in the README's JSON Lines table and
//! docs/insight.md): `frames`, `frames_hidden`, `stack_truncated` and
//! `call_site` with `--stacks`; `notes`, always (possibly empty), an array
//! of objects with `kind`, `text` and the keys of that kind.

use std::{
    io::{self, Write},
    rc::Rc,
};

use serde_json::{Value, json};

/// One finding under a delta.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    /// The line printed in text mode (without its indent).
    pub text: String,
    /// The same with stable keys: `{"kind": ..., "text": ..., ...}`.
    pub json: Value,
}

impl Note {
    /// A note of `kind` with `fields` (an object) besides `kind` and `text`.
    fn new(kind: &str, text: String, mut fields: Value) -> Note {
        if let Value::Object(m) = &mut fields {
            m.insert("kind".into(), json!(kind));
            m.insert("text".into(), json!(text));
        }
        Note { text, json: fields }
    }

    /// `W^X: W->X flip of 00007f..+4K rw- -> r-x (flip #3 of this range) by SITE`.
    pub fn wx_flip(
        lo: u64,
        hi: u64,
        flip: &str,
        before: &str,
        after: &str,
        count: u32,
        site: Option<&Rc<str>>,
    ) -> Note {
        let text = format!(
            "W^X: {flip} flip of {lo:016x}+{} {before} -> {after} (flip #{count} of this range){}",
            super::alloc::human(hi - lo),
            by(site)
        );
        Note::new(
            "wx_flip",
            text,
            json!({
                "start": hex(lo), "end": hex(hi), "size": hi - lo, "flip": flip,
                "before": before, "after": after, "count": count, "site": site.map(|s| &**s),
            }),
        )
    }

    /// `W^X: 00007f..+8K is writable and executable at once (rwx) by SITE`.
    pub fn wx_rwx(lo: u64, hi: u64, site: Option<&Rc<str>>) -> Note {
        let text = format!(
            "W^X: {lo:016x}+{} is writable and executable at once (rwx){}",
            super::alloc::human(hi - lo),
            by(site)
        );
        Note::new(
            "wx_rwx",
            text,
            json!({"start": hex(lo), "end": hex(hi), "size": hi - lo, "site": site.map(|s| &**s)}),
        )
    }

    /// `W^X: ... and N more ranges` (flips and rwx ranges not listed).
    pub fn wx_more(count: usize) -> Note {
        Note::new(
            "wx_more",
            format!("W^X: ... and {count} more ranges"),
            json!({ "count": count }),
        )
    }

    /// The same file mapped shared-writable and executable at once.
    pub fn wx_dual(file: &str, writable: u64, executable: u64) -> Note {
        Note::new(
            "wx_dual",
            format!(
                "W^X: {file} is mapped shared-writable at {writable:016x} and executable at {executable:016x}"
            ),
            json!({"file": file, "writable_start": hex(writable), "executable_start": hex(executable)}),
        )
    }

    /// `mprotect r-x on 3 JIT functions: a, b, c`; `prot` is `None` for munmap.
    pub fn jit_symbols(syscall: &str, prot: Option<&str>, names: &[&str], max: usize) -> Note {
        let perms = prot.map_or(String::new(), |p| format!(" {p}"));
        Note::new(
            "jit_symbols",
            format!("{syscall}{perms} on {}", super::jit::list(names, max)),
            json!({"syscall": syscall, "prot": prot, "count": names.len(), "symbols": names}),
        )
    }

    /// A size mapped and unmapped again `count` times, each within `within_s`.
    pub fn churn(size: u64, count: u64, within_s: u64, hint: Option<String>) -> Note {
        let mut text = format!(
            "churn: {} mapped and unmapped again {count} times, each within {within_s}s",
            super::alloc::human(size)
        );
        if let Some(h) = &hint {
            text.push_str(&format!("; {h}"));
        }
        Note::new(
            "churn",
            text,
            json!({"size": size, "count": count, "within_s": within_s, "hint": hint}),
        )
    }
}

fn hex(a: u64) -> String {
    format!("{a:#x}")
}

fn by(site: Option<&Rc<str>>) -> String {
    site.map_or(String::new(), |s| format!(" by {s}"))
}

/// The named user stack of a delta (`--stacks`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StackNote {
    /// Address and name of each frame shown, innermost first.
    pub frames: Vec<(u64, Rc<str>)>,
    /// Deeper frames captured but not shown (`--stack-depth`).
    pub hidden: usize,
    /// The stack does not reach the outermost frame.
    pub truncated: bool,
    /// The frames were unwound from a copy of the stack with call-frame
    /// information (`--stack-bytes`), not found by the frame-pointer walk:
    /// a cut is where that unwind stopped.
    pub unwound: bool,
    /// The frame the call is counted under (the first outside libc).
    pub site: Option<Rc<str>>,
}

impl StackNote {
    /// The line that says the stack is cut, and why.
    pub fn cut(&self) -> &'static str {
        if self.unwound {
            "(stack truncated: unwound no further: past the stack copied (raise --stack-bytes) \
             or no call-frame information)"
        } else {
            "(stack truncated: no frame pointer past here)"
        }
    }
}

/// Everything insight has to say about one delta.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeltaNotes {
    /// With `--stacks`, when the event carried a stack (shared with the
    /// cache of named stacks).
    pub stack: Option<Rc<StackNote>>,
    /// Findings, in the order they are printed.
    pub notes: Vec<Note>,
}

impl DeltaNotes {
    /// Writes the lines under the delta in text mode, each indented by
    /// `indent` (written directly: one formatted string fewer per frame on
    /// every event).
    pub fn write_text(&self, out: &mut dyn Write, indent: &str) -> io::Result<()> {
        if let Some(s) = &self.stack {
            for (_, n) in &s.frames {
                writeln!(out, "{indent}at {n}")?;
            }
            // A cut shown only when every captured frame is shown: with
            // --stack-depth hiding some, the stack goes on regardless.
            if s.hidden == 0 && s.truncated {
                writeln!(out, "{indent}{}", s.cut())?;
            }
        }
        for n in &self.notes {
            writeln!(out, "{indent}{}", n.text)?;
        }
        Ok(())
    }

    /// The lines under the delta in text mode, without indent.
    #[cfg(test)]
    fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.write_text(&mut out, "").expect("write to a Vec");
        String::from_utf8(out)
            .expect("utf8")
            .lines()
            .map(String::from)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_carry_the_same_finding() {
        let site: Rc<str> = "jit_make_executable+0x1e [tiny_jit]".into();
        let d = DeltaNotes {
            stack: Some(Rc::new(StackNote {
                frames: vec![
                    (0x1007, "__mprotect+0x7 [libc.so.6]".into()),
                    (0x5100, site.clone()),
                ],
                hidden: 0,
                truncated: true,
                unwound: false,
                site: Some(site.clone()),
            })),
            notes: vec![Note::wx_flip(
                0x7f00_0000_0000,
                0x7f00_0000_1000,
                "W->X",
                "rw-",
                "r-x",
                3,
                Some(&site),
            )],
        };
        assert_eq!(
            d.lines(),
            [
                "at __mprotect+0x7 [libc.so.6]",
                "at jit_make_executable+0x1e [tiny_jit]",
                "(stack truncated: no frame pointer past here)",
                "W^X: W->X flip of 00007f0000000000+4K rw- -> r-x (flip #3 of this range) \
                 by jit_make_executable+0x1e [tiny_jit]",
            ]
        );
        // The delta record's keys for the stack are output.rs's (its tests).
        let n = &d.notes[0].json;
        assert_eq!(n["kind"], "wx_flip");
        assert_eq!(n["text"], d.lines()[3]);
        assert_eq!(
            (&n["start"], &n["end"], &n["size"], &n["flip"], &n["count"]),
            (
                &json!("0x7f0000000000"),
                &json!("0x7f0000001000"),
                &json!(4096),
                &json!("W->X"),
                &json!(3)
            )
        );
        assert_eq!((&n["before"], &n["after"]), (&json!("rw-"), &json!("r-x")));
    }

    #[test]
    fn hidden_frames_hide_the_truncation_line_and_no_stack_adds_no_stack_keys() {
        let d = DeltaNotes {
            stack: Some(Rc::new(StackNote {
                frames: vec![(0x1007, "mmap+0x13 [libc.so.6]".into())],
                hidden: 2,
                truncated: true,
                unwound: false,
                site: None,
            })),
            notes: vec![Note::churn(262144, 8, 1, None)],
        };
        assert_eq!(
            d.lines(),
            [
                "at mmap+0x13 [libc.so.6]",
                "churn: 256K mapped and unmapped again 8 times, each within 1s"
            ]
        );
    }
}
