//! The layout's rules (docs/architecture.md), checked on the source: every
//! `use crate::...` and `use super::...` (braces expanded) and every
//! `crate::...` and `super::...` path in code of every file under `src/`,
//! outside the files' test modules (a test may build its input with a
//! reader).
//!
//! - `map` imports nothing of ours but `map`;
//! - `source` and `render` import only `map` (and themselves);
//! - `cmd::common` imports `map`, `source`, `render`, and no command;
//! - a command (`cmd::snapshot`, `cmd::views`, `cmd::trace`,
//!   `cmd::exporter`...) imports `map`, `source`, `render`, `cmd::common`
//!   and itself: never another command (`cmd::replay` and `cmd::diff`
//!   count as `cmd::trace`).
//!
//! A failure names the file and the import that breaks a rule.

use std::path::{Path, PathBuf};

/// Where a file or an import belongs.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Unit {
    Map,
    Source,
    Render,
    /// `sys`: what the OS offers any layer; imports nothing of ours.
    Sys,
    Common,
    Command(String),
    /// `lib.rs`, `main.rs`, `cli.rs`, `cmd/mod.rs`: they put the commands
    /// together and may use anything.
    Top,
}

/// Imports that break a rule on purpose, each with why. Keep it short.
const EXCEPTIONS: &[(&str, &str, &str)] = &[
    // (file, import prefix, why)
];

/// The unit of a module path (`["cmd", "views", "args"]`).
fn unit_of(path: &[String]) -> Unit {
    let first = path.first().map(String::as_str).unwrap_or("");
    let second = path.get(1).map(String::as_str);
    match (first, second) {
        ("map", _) => Unit::Map,
        ("source", _) => Unit::Source,
        ("render", _) => Unit::Render,
        ("sys", _) => Unit::Sys,
        ("cmd", Some("common")) => Unit::Common,
        // `pmap replay` and `pmap diff` print what `pmap trace` recorded,
        // with its printer, deltas and model: one command family with it
        // and its recordings (`cmd/trace/record/`, docs/architecture.md).
        ("cmd", Some("replay" | "diff")) => Unit::Command("trace".into()),
        ("cmd", Some(c)) => Unit::Command(c.to_string()),
        ("cmd", None) => Unit::Top,
        ("trace", _) => Unit::Command("trace".into()),
        _ => Unit::Top,
    }
}

/// Why `from` may not import `to`, if it may not.
fn broken_rule(from: &Unit, to: &Unit) -> Option<&'static str> {
    use Unit::*;
    match (from, to) {
        (Sys, Sys) => None,
        (Sys, _) => Some("sys imports nothing of ours but sys"),
        (_, Sys) => None,
        (Top, _) => None,
        (Map, Map) => None,
        (Map, _) => Some("map imports nothing of ours but map"),
        (Source, Map | Source) => None,
        (Source, _) => Some("source imports only map"),
        (Render, Map | Render) => None,
        (Render, _) => Some("render imports only map"),
        (Common, Map | Source | Render | Common) => None,
        (Common, _) => Some("cmd::common imports no command"),
        (Command(_), Map | Source | Render | Common) => None,
        (Command(a), Command(b)) if a == b => None,
        (Command(_), Command(_)) => Some("no command imports another command"),
        (Command(_), Top) => Some("a command does not import the top (lib, main, cli, cmd)"),
    }
}

/// The module path of a file under `src/` (`cmd/views/mod.rs` ->
/// `cmd::views`).
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs");
        if stem != "mod" {
            parts.push(stem.to_string());
        }
    }
    parts
}

/// The text without comments (line comments, outside string literals as
/// far as counting quotes tells).
fn strip_comments(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut cut = line.len();
        let mut quotes = 0;
        let b = line.as_bytes();
        for i in 0..b.len() {
            if b[i] == b'"' && (i == 0 || b[i - 1] != b'\\') {
                quotes += 1;
            }
            if b[i] == b'/' && b.get(i + 1) == Some(&b'/') && quotes % 2 == 0 {
                cut = i;
                break;
            }
        }
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    out
}

/// Expands a use tree (`crate::{a::b, c::{self, d}}`) into whole paths.
fn expand(tree: &str) -> Vec<String> {
    fn go(prefix: &str, s: &str, out: &mut Vec<String>) {
        let s = s.trim();
        if let Some(open) = s.find('{') {
            let head = s[..open].trim().trim_end_matches("::");
            let inner = &s[open + 1..s.rfind('}').unwrap_or(s.len())];
            let base = join(prefix, head);
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        go(&base, &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            go(&base, &inner[start..], out);
        } else if !s.is_empty() {
            let s = s.split(" as ").next().unwrap_or(s).trim();
            if s == "self" {
                out.push(prefix.to_string());
            } else {
                out.push(join(prefix, s));
            }
        }
    }
    fn join(a: &str, b: &str) -> String {
        match (a.is_empty(), b.is_empty()) {
            (true, _) => b.to_string(),
            (_, true) => a.to_string(),
            _ => format!("{a}::{b}"),
        }
    }
    let mut out = Vec::new();
    go("", tree, &mut out);
    out
}

/// The text before the file's test module (`#[cfg(test)] mod ...`, last
/// in a file by custom): tests may build their inputs with a reader.
fn without_tests(text: &str) -> &str {
    let mut at = 0;
    while let Some(i) = text[at..].find("#[cfg(test)]") {
        let start = at + i;
        let after = text[start + "#[cfg(test)]".len()..].trim_start();
        if after.starts_with("mod ") {
            return &text[..start];
        }
        at = start + 1;
    }
    text
}

/// `path` with its leading `super::`s resolved against `module` (the
/// module the file is), as a `crate::` path.
fn resolve(path: &str, module: &[String]) -> String {
    let mut rest = path;
    let mut up = 0;
    while let Some(r) = rest.strip_prefix("super::") {
        up += 1;
        rest = r;
    }
    if up == 0 {
        return path.to_string();
    }
    let mut p = String::from("crate");
    for m in &module[..module.len().saturating_sub(up)] {
        p.push_str("::");
        p.push_str(m);
    }
    p.push_str("::");
    p.push_str(rest);
    p
}

/// Every path of ours a file names outside its tests: `use` trees
/// expanded, and `crate::` and `super::` paths in code, each `super::`
/// resolved against `module` (test modules are left out, so a `super::`
/// left is the file's own parent).
fn imports(text: &str, module: &[String]) -> Vec<String> {
    let code = strip_comments(without_tests(text));
    let mut paths = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        let after = &rest[at + 4..];
        rest = after;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(end) = after.find(';') else { break };
        let tree: String = after[..end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if tree.starts_with("crate::") || tree.starts_with("super::") {
            paths.extend(expand(&tree));
        }
    }
    let bytes = code.as_bytes();
    for start in ["crate::", "super::"] {
        for (at, _) in code.match_indices(start) {
            let prev = at.checked_sub(1).map(|i| bytes[i]);
            if prev
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c == b':')
            {
                continue;
            }
            let end = code[at..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| at + e);
            paths.push(code[at..end].trim_end_matches(':').to_string());
        }
    }
    let mut out: Vec<String> = paths.iter().map(|p| resolve(p, module)).collect();
    out.retain(|p| p.starts_with("crate::"));
    out
}

/// The rule breaks of one file: `(import, why)`.
fn check(rel: &Path, text: &str) -> Vec<(String, &'static str)> {
    let module = module_of(rel);
    let from = unit_of(&module);
    let rel_s = rel.to_string_lossy().replace('\\', "/");
    let mut out = Vec::new();
    for p in imports(text, &module) {
        let target: Vec<String> = p
            .trim_start_matches("crate::")
            .split("::")
            .map(str::to_string)
            .collect();
        let to = unit_of(&target);
        let Some(why) = broken_rule(&from, &to) else {
            continue;
        };
        if EXCEPTIONS
            .iter()
            .any(|(f, prefix, _)| *f == rel_s && p.starts_with(prefix))
        {
            continue;
        }
        if !out.iter().any(|(q, _)| *q == p) {
            out.push((p, why));
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn imports_follow_the_layout() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(files.len() > 20, "no sources found under {}", src.display());
    let mut broken = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", f.display()));
        let rel = f.strip_prefix(&src).unwrap_or(f);
        for (import, why) in check(rel, &text) {
            broken.push(format!("src/{}: {import}: {why}", rel.display()));
        }
    }
    assert!(
        broken.is_empty(),
        "imports that break the layout (docs/architecture.md):\n{}",
        broken.join("\n")
    );
}

/// The tracer's printer (docs/architecture.md, issue 15) takes data:
/// it never receives a `Session` (the tracer's per-process state), never
/// calls back into the tracer's driver, and never reads `/proc` itself.
#[test]
fn the_trace_printer_takes_data_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src.join("cmd/trace/output.rs")];
    rust_files(&src.join("cmd/trace/output"), &mut files);
    let forbidden = [
        "crate::cmd::trace::session",
        "crate::cmd::trace::run",
        "crate::source",
    ];
    let mut broken = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", f.display()));
        let rel = f.strip_prefix(&src).unwrap_or(f);
        for import in imports(&text, &module_of(rel)) {
            if forbidden.iter().any(|p| import.starts_with(p)) {
                broken.push(format!("src/{}: {import}", rel.display()));
            }
        }
    }
    assert!(files.len() > 1, "the printer's files were not found");
    assert!(
        broken.is_empty(),
        "the trace printer imports the tracer's state or a reader:\n{}",
        broken.join("\n")
    );
}

#[test]
fn exceptions_are_still_needed() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for (file, prefix, _) in EXCEPTIONS {
        let path = src.join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("exception for {file}: cannot read it: {e}"));
        let module = module_of(Path::new(file));
        assert!(
            imports(&text, &module)
                .iter()
                .any(|p| p.starts_with(prefix)),
            "src/{file} no longer imports {prefix}: remove its exception"
        );
    }
}

#[test]
fn the_checker_sees_what_breaks_a_rule() {
    let bad = "use crate::{\n    map::region::Region,\n    cmd::views::Snapshot,\n};\n\
               fn f() { crate::cmd::trace::main(); }\n\
               // crate::cmd::snapshot in a comment does not count\n";
    let found = check(Path::new("render/json.rs"), bad);
    let names: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        names,
        ["crate::cmd::views::Snapshot", "crate::cmd::trace::main"]
    );
    assert_eq!(
        check(
            Path::new("render/smaps_table.rs"),
            "use crate::sys::spread::Spread;"
        ),
        []
    );
    assert_eq!(
        check(
            Path::new("sys/spread.rs"),
            "use crate::map::region::Region;"
        ),
        [(
            "crate::map::region::Region".to_string(),
            "sys imports nothing of ours but sys"
        )]
    );
    let found = check(
        Path::new("cmd/views/args.rs"),
        "fn f() { super::super::snapshot::run(); }",
    );
    assert_eq!(
        found,
        [(
            "crate::cmd::snapshot::run".to_string(),
            "no command imports another command"
        )]
    );
    assert!(check(Path::new("map/kind.rs"), "use super::region::Region;").is_empty());
    assert_eq!(
        check(Path::new("map/kind.rs"), "use crate::source::stat::Stat;").len(),
        1
    );
    assert!(check(Path::new("cmd/views/mod.rs"), "use crate::cmd::common::rc;").is_empty());
    assert_eq!(
        check(
            Path::new("cmd/views/mod.rs"),
            "use super::{common::rc, snapshot};"
        ),
        [(
            "crate::cmd::snapshot".to_string(),
            "no command imports another command"
        )]
    );
    assert!(check(Path::new("cmd/views/args.rs"), "use super::core_file;").is_empty());
    // replay and diff are the trace family: they may use its recordings
    // and printer, and nothing of the other commands.
    assert!(
        check(
            Path::new("cmd/replay/at.rs"),
            "use crate::cmd::trace::record::reader::Recording;"
        )
        .is_empty()
    );
    assert!(
        check(
            Path::new("cmd/diff/source.rs"),
            "use crate::cmd::replay::at;"
        )
        .is_empty()
    );
    assert_eq!(
        check(
            Path::new("cmd/diff/mod.rs"),
            "use crate::cmd::views::Snapshot;"
        ),
        [(
            "crate::cmd::views::Snapshot".to_string(),
            "no command imports another command"
        )]
    );
}
