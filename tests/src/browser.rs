//! A real browser for the HTML reports (`pmap trace --report`, `pmap
//! replay --report`): headless Chromium, its console messages and DOM.

use std::{
    path::Path,
    process::{Command, Stdio},
};

/// Opens `page` in headless Chromium; returns (console messages, DOM).
pub fn chromium(page: &Path, extra: &[&str]) -> (String, String) {
    // The report is checked in a real browser (Debian's is a launcher script).
    let bin = crate::tool("chromium", "chromium");
    let profile =
        std::env::temp_dir().join(format!("pmap-insight-chromium-{}", std::process::id()));
    let out = Command::new(&bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .output()
        .expect("run chromium");
    let _ = std::fs::remove_dir_all(&profile);
    let console = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .collect::<Vec<_>>()
        .join("\n");
    (console, String::from_utf8_lossy(&out.stdout).into_owned())
}
