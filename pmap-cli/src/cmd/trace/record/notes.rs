//! What insight said, kept in a recording (format version 2): a delta's
//! stack as the trace named it and its notes, the lines after a table, a
//! summary's sections. Recorded as printed rather than worked out again at
//! replay: the process, its files and its `/proc` are gone by then.
//!
//! Frame names and whole named stacks are interned (a loop calls from the
//! same few places): each is written once after a checkpoint, then referred
//! to by number, as region names are (docs/recording.md).

use std::{collections::HashMap, rc::Rc};

use pmap_common::MAX_STACK_DEPTH;
use serde_json::Value;

use super::wire::{Cursor, Malformed, bad, put_bytes, put_i, put_u};
use crate::cmd::trace::insight::{DeltaNotes, Note, StackNote};

/// A named stack's content, for finding it in the encoder's table.
type StackKey = (Vec<(u64, Rc<str>)>, usize, u8, Option<Rc<str>>);

fn key(s: &StackNote) -> StackKey {
    (s.frames.clone(), s.hidden, cut_mark(s), s.site.clone())
}

/// `truncated:u8`: 0 whole, 1 cut (frame pointers), 2 cut after an unwind
/// of a stack copy (the note says why differently).
fn cut_mark(s: &StackNote) -> u8 {
    match (s.truncated, s.unwound) {
        (false, _) => 0,
        (true, false) => 1,
        (true, true) => 2,
    }
}

/// The interned names and stacks both sides keep (reset at a checkpoint).
#[derive(Default)]
pub struct Tables {
    /// Decoder: names by number - 1.
    strings: Vec<Rc<str>>,
    /// Encoder: the number of each name.
    string_ids: HashMap<Rc<str>, u64>,
    /// Decoder: named stacks by number - 1.
    stacks: Vec<Rc<StackNote>>,
    /// Encoder: the number of each named stack.
    stack_ids: HashMap<StackKey, u64>,
    /// Encoder: the last stack written, by identity (the insight hands out
    /// the same shared note for the same stack: no hashing then).
    last: Option<(Rc<StackNote>, u64)>,
}

impl Tables {
    pub fn clear(&mut self) {
        *self = Tables::default();
    }

    fn put_str(&mut self, b: &mut Vec<u8>, s: &Rc<str>) {
        if let Some(&n) = self.string_ids.get(s) {
            return put_u(b, n);
        }
        put_u(b, 0);
        put_bytes(b, s.as_bytes());
        let n = self.string_ids.len() as u64 + 1;
        self.string_ids.insert(s.clone(), n);
    }

    fn str(&mut self, c: &mut Cursor) -> Result<Rc<str>, Malformed> {
        match c.u()? {
            0 => {
                let s: Rc<str> = String::from_utf8_lossy(c.bytes()?).into();
                self.strings.push(s.clone());
                Ok(s)
            }
            n => match self.strings.get(n as usize - 1) {
                Some(s) => Ok(s.clone()),
                None => bad(format!("frame name number {n} was never defined")),
            },
        }
    }

    /// `snote = 0 n:u (addr:i name)*n hidden:u truncated:u8 (0 | 1 name)
    /// | k`: a new named stack, or entry k.
    pub fn put_stack(&mut self, b: &mut Vec<u8>, s: &Rc<StackNote>) {
        if let Some((last, n)) = &self.last
            && Rc::ptr_eq(last, s)
        {
            return put_u(b, *n);
        }
        let k = key(s);
        let n = match self.stack_ids.get(&k) {
            Some(&n) => {
                put_u(b, n);
                n
            }
            None => {
                put_u(b, 0);
                put_u(b, s.frames.len() as u64);
                let mut prev = 0u64;
                for (addr, name) in &s.frames {
                    put_i(b, addr.wrapping_sub(prev) as i64);
                    prev = *addr;
                    self.put_str(b, name);
                }
                put_u(b, s.hidden as u64);
                b.push(cut_mark(s));
                match &s.site {
                    None => b.push(0),
                    Some(site) => {
                        b.push(1);
                        self.put_str(b, site);
                    }
                }
                let n = self.stack_ids.len() as u64 + 1;
                self.stack_ids.insert(k, n);
                n
            }
        };
        self.last = Some((s.clone(), n));
    }

    pub fn stack(&mut self, c: &mut Cursor) -> Result<Rc<StackNote>, Malformed> {
        let n = c.u()?;
        if n != 0 {
            return match self.stacks.get(n as usize - 1) {
                Some(s) => Ok(s.clone()),
                None => bad(format!("named stack number {n} was never defined")),
            };
        }
        let count = c.count()?;
        let mut frames = Vec::with_capacity(count);
        let mut prev = 0u64;
        for _ in 0..count {
            prev = prev.wrapping_add(c.i()? as u64);
            frames.push((prev, self.str(c)?));
        }
        let hidden = c.u()? as usize;
        if hidden > MAX_STACK_DEPTH {
            return bad(format!(
                "a stack with {hidden} hidden frames (at most {MAX_STACK_DEPTH} are captured)"
            ));
        }
        let (truncated, unwound) = match c.u8()? {
            0 => (false, false),
            1 => (true, false),
            2 => (true, true),
            x => return bad(format!("a stack's truncated mark is {x}, not 0, 1 or 2")),
        };
        let site = match c.u8()? {
            0 => None,
            1 => Some(self.str(c)?),
            x => return bad(format!("a stack's call-site mark is {x}, neither 0 nor 1")),
        };
        let s = Rc::new(StackNote {
            frames,
            hidden,
            truncated,
            site,
            unwound,
        });
        self.stacks.push(s.clone());
        Ok(s)
    }
}

/// `notes = n:u (text:bytes json:bytes)*n`.
pub fn put_notes(b: &mut Vec<u8>, notes: &[Note]) {
    put_u(b, notes.len() as u64);
    for n in notes {
        put_bytes(b, n.text.as_bytes());
        put_json(b, Some(&n.json));
    }
}

pub fn notes(c: &mut Cursor) -> Result<Vec<Note>, Malformed> {
    let n = c.count()?;
    let mut out = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let text = String::from_utf8_lossy(c.bytes()?).into_owned();
        let Some(json) = json(c)? else {
            return bad("an insight note without its JSON form");
        };
        out.push(Note { text, json });
    }
    Ok(out)
}

/// A JSON value as its text (empty: none).
pub fn put_json(b: &mut Vec<u8>, v: Option<&Value>) {
    match v {
        None => put_u(b, 0),
        Some(v) => put_bytes(b, v.to_string().as_bytes()),
    }
}

pub fn json(c: &mut Cursor) -> Result<Option<Value>, Malformed> {
    let raw = c.bytes()?;
    if raw.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(raw)
        .map(Some)
        .or_else(|e| bad(format!("an insight record's JSON does not parse ({e})")))
}

/// Lines (after a table): `n:u line:bytes*n`.
pub fn put_lines(b: &mut Vec<u8>, lines: &[String]) {
    put_u(b, lines.len() as u64);
    for l in lines {
        put_bytes(b, l.as_bytes());
    }
}

pub fn lines(c: &mut Cursor) -> Result<Vec<String>, Malformed> {
    let n = c.count()?;
    let mut out = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        out.push(String::from_utf8_lossy(c.bytes()?).into_owned());
    }
    Ok(out)
}

/// Whether a delta's notes have anything to write: (stack, notes).
pub fn has(n: &DeltaNotes) -> (bool, bool) {
    (n.stack.is_some(), !n.notes.is_empty())
}
