//! The views beyond procps-ng (`--summary`, `--sort`, `--names`, `--json`,
//! Solaris's `-S -r -a -F -L -s`) on a real, stopped process, checked
//! against what the kernel says in `/proc/PID/{maps,smaps,numa_maps}`.

use std::collections::BTreeMap;
use std::process::Command;

use pmap_tests::views_util::{MapsLine, TempDir, Workload, read_maps, run_pmap};
use pmap_tests::workload_bin;

fn start() -> (TempDir, Workload) {
    let dir = TempDir::new("views");
    let mut cmd = Command::new(workload_bin("views_workload"));
    cmd.arg(&dir.0);
    let w = Workload::start(cmd);
    w.stop();
    (dir, w)
}

fn pmap_ok(args: &[&str]) -> String {
    let (out, err, code) = run_pmap(args);
    assert_eq!((code, err.as_str()), (0, ""), "pmap {args:?}");
    out
}

/// `/proc/PID/smaps` fields by region start.
fn smaps(pid: u32) -> BTreeMap<u64, BTreeMap<String, u64>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("read smaps");
    let mut out = BTreeMap::new();
    let mut cur = 0;
    for l in text.lines() {
        let first = l.split_whitespace().next().unwrap_or("");
        if let Some((s, _)) = first.split_once('-')
            && let Ok(start) = u64::from_str_radix(s, 16)
        {
            cur = start;
            out.insert(cur, BTreeMap::new());
        } else if let Some((k, v)) = l.split_once(':')
            && let Some(n) = v.split_whitespace().next().and_then(|n| n.parse().ok())
        {
            out.get_mut(&cur).expect("region").insert(k.to_string(), n);
        }
    }
    out
}

fn rows_of(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| l.len() > 16 && u64::from_str_radix(&l[..16], 16).is_ok())
        .collect()
}

fn addr(l: &str) -> u64 {
    u64::from_str_radix(&l[..16], 16).expect("address column")
}

#[test]
fn summary_totals_match_the_kernel_and_categories_are_right() {
    let (_d, w) = start();
    let pid = w.pid().to_string();
    let maps = read_maps(w.pid());
    let sm = smaps(w.pid());
    let out = pmap_ok(&["--summary", &pid]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with(&format!("{pid}:")), "{out}");
    assert!(lines[1].starts_with("Category"), "{out}");
    let parse = |l: &str| -> (String, Vec<u64>) {
        let f: Vec<&str> = l.split_whitespace().collect();
        let n = f.len();
        let nums = f[n - 7..]
            .iter()
            .map(|v| v.trim_end_matches('K').parse().expect("number"))
            .collect();
        (f[..n - 7].join(" "), nums)
    };
    let rows: Vec<(String, Vec<u64>)> = lines[2..].iter().map(|l| parse(l)).collect();
    let (total_name, total) = rows.last().expect("total row").clone();
    assert_eq!(total_name, "total");
    let size: u64 = maps.iter().map(|m| (m.end - m.start) / 1024).sum();
    let rss: u64 = sm.values().map(|f| f["Rss"]).sum();
    let swap: u64 = sm.values().map(|f| f["Swap"]).sum();
    assert_eq!(total[0], maps.len() as u64, "count");
    assert_eq!(total[1], size, "size");
    // Resident shared file pages may move (other processes), anonymous do not.
    assert!(
        total[2].abs_diff(rss) * 50 <= rss,
        "rss {} vs {rss}",
        total[2]
    );
    assert_eq!(total[6], swap, "swap");
    let body = &rows[..rows.len() - 1];
    // Default order: largest first.
    assert!(body.windows(2).all(|p| p[0].1[1] >= p[1].1[1]), "{out}");
    let get = |name: &str| {
        body.iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no {name} row in\n{out}"))
            .1
            .clone()
    };
    // memfd + SysV shm + the shared file mapping, 64 KiB each.
    assert_eq!(get("shared memory")[1], 192);
    // The main stack and the two threads' stacks.
    assert_eq!(get("thread stacks")[0], 3);
    assert!(get("anonymous")[1] >= 1024 + 64);
    assert!(get("anonymous")[2] >= 1024, "the touched 1 MiB is resident");
    assert!(get("guard/reserved")[1] >= 2048 + 8);
    assert!(get("libc.so.6 (code)")[0] >= 1);
    assert!(get("libc.so.6 (data)")[0] >= 1);
    assert_eq!(get("mapped files")[1], 64);

    // --sort count, and --json agrees with the text.
    let by_count = pmap_ok(&["--summary", "--sort", "count", "-q", &pid]);
    let counts: Vec<u64> = by_count.lines().map(|l| parse(l).1[0]).collect();
    assert!(counts.windows(2).all(|p| p[0] >= p[1]), "{by_count}");
    let doc: serde_json::Value =
        serde_json::from_str(&pmap_ok(&["--summary", "--json", &pid])).expect("json");
    assert_eq!(doc["total"]["size_kb"], size);
    assert!(doc["total"]["rss_kb"].as_u64().expect("rss").abs_diff(rss) * 50 <= rss);
    assert_eq!(
        doc["categories"].as_array().expect("categories").len(),
        body.len()
    );
}

#[test]
fn names_label_stacks_guards_arenas_memfd_shm_and_jit() {
    let (_d, w) = start();
    let pid = w.pid().to_string();
    let perf = format!("/tmp/perf-{pid}.map");
    let jit = w.addr("jit");
    std::fs::write(
        &perf,
        format!(
            "{:x} 40 jitted_one\n{:x} 80 jitted_two\n",
            jit + 0x100,
            jit + 0x400
        ),
    )
    .expect("write perf map");
    let out = pmap_ok(&["--names", &pid]);
    let _ = std::fs::remove_file(&perf);
    let rows = rows_of(&out);
    let label = |a: u64| {
        rows.iter()
            .find(|l| addr(l) == a)
            .unwrap_or_else(|| panic!("no row at {a:#x} in\n{out}"))
            .to_string()
    };
    assert!(
        label(w.addr("memfd")).ends_with(" [ memfd:views-memfd ]"),
        "{out}"
    );
    let shmid = w.get("shmid");
    assert!(
        label(w.addr("shm")).ends_with(&format!(" [ shm key=0x00000000 id={shmid} ]")),
        "{out}"
    );
    assert!(label(jit).ends_with(" [ jit: 2 symbols ]"), "{out}");
    assert!(out.contains(" [ heap ]") || !read_maps(w.pid()).iter().any(|m| m.name == "[heap]"));
    assert!(out.contains(" [ vdso ]"), "{out}");
    assert!(
        out.contains(&format!(" [ stack tid={pid} ]")),
        "main thread stack in\n{out}"
    );
    let maps = read_maps(w.pid());
    for tid in w.get("tids").split(',') {
        let stack = rows
            .iter()
            .find(|l| l.ends_with(&format!(" [ stack tid={tid} ]")))
            .unwrap_or_else(|| panic!("no stack for thread {tid} in\n{out}"));
        // The workload gave each thread a 256 KiB stack.
        let region: &MapsLine = maps
            .iter()
            .find(|m| m.start == addr(stack))
            .expect("stack region");
        assert_eq!(region.end - region.start, 256 * 1024);
        let guard = maps
            .iter()
            .find(|m| m.end == region.start)
            .expect("region below the stack");
        assert_eq!(guard.perms, "---p");
        assert!(
            label(guard.start).ends_with(&format!(" [ stack guard tid={tid} ]")),
            "{out}"
        );
    }
    // Each thread that used malloc got an arena: 64 MiB aligned, its
    // PROT_NONE reserve right after it up to 64 MiB (alignment alone also
    // matches other anonymous regions now and then).
    let arenas: Vec<&MapsLine> = maps
        .windows(2)
        .filter(|p| {
            let (m, reserve) = (&p[0], &p[1]);
            m.start.is_multiple_of(64 << 20)
                && m.perms == "rw-p"
                && m.name.is_empty()
                && reserve.start == m.end
                && reserve.perms == "---p"
                && reserve.end - m.start == 64 << 20
        })
        .map(|p| &p[0])
        .collect();
    // Both threads malloc (views_workload), so glibc made at least one.
    assert!(!arenas.is_empty(), "no malloc arena in the map:\n{out}");
    for m in arenas {
        assert!(label(m.start).ends_with(" [ malloc arena ]"), "{out}");
    }
    // Unlabelled regions keep procps's names.
    assert!(label(w.addr("anon")).ends_with("  [ anon ]"));
}

#[test]
fn reserved_lists_prot_none_regions_with_a_total() {
    let (_d, w) = start();
    let pid = w.pid().to_string();
    let out = pmap_ok(&["--reserved", &pid]);
    // Solaris's letter means the same, alone or with other options
    // (procps-ng only warned that it ignores `-r`).
    assert_eq!(pmap_ok(&["-r", &pid]), out);
    assert_eq!(pmap_ok(&["-r", "-F", &pid]), out);
    let maps = read_maps(w.pid());
    let expected: Vec<&MapsLine> = maps.iter().filter(|m| m.perms.starts_with("---")).collect();
    let rows = rows_of(&out);
    assert_eq!(rows.len(), expected.len(), "{out}");
    for (r, m) in rows.iter().zip(&expected) {
        assert_eq!(addr(r), m.start);
    }
    let kb: u64 = expected.iter().map(|m| (m.end - m.start) / 1024).sum();
    assert!(
        out.ends_with(&format!("reserved: {kb}K in {} regions\n", expected.len())),
        "{out}"
    );
    let reserve = rows
        .iter()
        .find(|l| addr(l) == w.addr("reserve"))
        .expect("reserve row");
    assert!(
        reserve.contains(" 2048 ") && reserve.contains("reservation"),
        "{reserve}"
    );
}

#[test]
fn swap_and_anon_columns_follow_smaps_and_a_counts_shared() {
    let (_d, w) = start();
    let pid = w.pid().to_string();
    let sm = smaps(w.pid());
    let out = pmap_ok(&["-x", "-S", &pid]);
    let lines: Vec<&str> = out.lines().collect();
    let head: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        head,
        [
            "Address", "Kbytes", "RSS", "Anon", "Locked", "Dirty", "Swap", "SwapPss", "Mode",
            "Mapping"
        ]
    );
    for l in rows_of(&out) {
        let f: Vec<&str> = l.split_whitespace().collect();
        let k = &sm[&addr(l)];
        if l.ends_with("[ anon ]") && f[8] == "rw---" {
            assert_eq!(f[2], k["Rss"].to_string(), "{l}");
        }
        let shared = f[8].as_bytes()[3] == b's';
        if shared {
            assert_eq!((f[3], f[6]), ("-", "-"), "shared mappings without -a: {l}");
        } else {
            assert_eq!(f[3], k["Anonymous"].to_string(), "{l}");
            assert_eq!(f[6], k["Swap"].to_string(), "{l}");
        }
    }
    let total: u64 = sm.values().map(|f| f["Size"]).sum();
    let last: Vec<&str> = lines.last().expect("total").split_whitespace().collect();
    assert_eq!(last[2], total.to_string(), "{out}");
    // -a: shared mappings counted too.
    let out = pmap_ok(&["-x", "-S", "-a", &pid]);
    let shm = rows_of(&out)
        .into_iter()
        .find(|l| addr(l) == w.addr("shm"))
        .expect("shm row");
    let f: Vec<&str> = shm.split_whitespace().collect();
    assert_eq!(f[3], sm[&w.addr("shm")]["Anonymous"].to_string(), "{shm}");
}

#[test]
fn numa_and_page_size_columns() {
    let (_d, w) = start();
    let pid = w.pid().to_string();
    match std::fs::read_to_string(format!("/proc/{pid}/numa_maps")) {
        Ok(numa) => numa_columns(&pid, &numa),
        Err(e) => pmap_tests::skip(
            "-L against /proc/PID/numa_maps",
            &format!("the kernel has no NUMA support (numa_maps: {e})"),
        ),
    }
    let out = pmap_ok(&["-s", &pid]);
    let rows = rows_of(&out);
    // The runs of the touched 1 MiB region cover it exactly, all mapped.
    let anon = w.addr("anon");
    let runs: Vec<&&str> = rows
        .iter()
        .filter(|r| (anon..anon + (1 << 20)).contains(&addr(r)))
        .collect();
    let kb: u64 = runs
        .iter()
        .map(|r| {
            r.split_whitespace()
                .nth(1)
                .expect("kb")
                .parse::<u64>()
                .expect("kb")
        })
        .sum();
    assert_eq!(kb, 1024, "{out}");
    assert!(
        runs.iter()
            .all(|r| !r.split_whitespace().nth(2).expect("pgsz").starts_with('-')),
        "{out}"
    );
    // The untouched reservation has nothing mapped, where pagemap tells.
    let reserve = rows
        .iter()
        .find(|r| addr(r) == w.addr("reserve"))
        .expect("reserve row");
    let pgsz = reserve.split_whitespace().nth(2).expect("pgsz");
    let pfns_visible = pfns_visible();
    if pfns_visible {
        assert_eq!(pgsz, "-", "{reserve}");
    } else {
        pmap_tests::skip(
            "-s page sizes from pagemap",
            "/proc/PID/pagemap hides page frame numbers from this user (needs CAP_SYS_ADMIN)",
        );
    }
    // Transparent huge pages: the workload's MADV_HUGEPAGE region.
    let thp = w.addr("thp");
    let anon_huge = smaps(w.pid())[&thp]["AnonHugePages"];
    let thp_rows: Vec<Vec<&str>> = rows
        .iter()
        .filter(|r| (thp..thp + (4 << 20)).contains(&addr(r)))
        .map(|r| r.split_whitespace().collect())
        .collect();
    let thp_col: u64 = thp_rows
        .iter()
        .map(|f| f[4].parse::<u64>().expect("THP"))
        .sum();
    assert_eq!(thp_col, anon_huge, "THP column vs AnonHugePages:\n{out}");
    if anon_huge == 0 {
        let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .unwrap_or_else(|e| format!("unknown ({e})"));
        pmap_tests::skip(
            "-s 2M runs of transparent huge pages",
            &format!(
                "the kernel gave the MADV_HUGEPAGE region no huge page (THP mode: {})",
                mode.trim()
            ),
        );
    } else if pfns_visible {
        let huge_kb: u64 = thp_rows
            .iter()
            .filter(|f| f[2] == "2M")
            .map(|f| f[1].parse::<u64>().expect("kb"))
            .sum();
        assert_eq!(huge_kb, anon_huge, "2M runs cover the huge pages:\n{out}");
    }
    // -F is accepted and changes nothing.
    assert_eq!(pmap_ok(&["-F", "-s", &pid]), out);
}

/// `-L`: one column per NUMA node of the heading (`N0`, `N1`...), each
/// the kB that numa_maps counts on that node, and the policy.
fn numa_columns(pid: &str, numa: &str) {
    let out = pmap_ok(&["-L", pid]);
    let heading: Vec<&str> = out
        .lines()
        .nth(1)
        .expect("heading")
        .split_whitespace()
        .collect();
    let nodes: Vec<(usize, &str)> = heading
        .iter()
        .enumerate()
        .filter(|(_, h)| {
            h.strip_prefix('N')
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .map(|(i, h)| (i, *h))
        .collect();
    assert!(!nodes.is_empty(), "no node column in\n{out}");
    let rows = rows_of(&out);
    let mut checked = 0;
    for l in numa.lines() {
        let mut it = l.split_whitespace();
        let a = u64::from_str_radix(it.next().expect("addr"), 16).expect("hex");
        let policy = it.next().expect("policy");
        let fields: Vec<&str> = it.collect();
        let psz: u64 = fields
            .iter()
            .find_map(|t| t.strip_prefix("kernelpagesize_kB="))
            .map_or(4, |v| v.parse().expect("kB"));
        let row = rows
            .iter()
            .find(|r| addr(r) == a)
            .expect("row for numa_maps line");
        let f: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(f[2], policy, "{row}");
        for (col, node) in &nodes {
            let pages: u64 = fields
                .iter()
                .find_map(|t| t.strip_prefix(&format!("{node}=")))
                .map_or(0, |v| v.parse().expect("pages"));
            assert_eq!(f[*col], (pages * psz).to_string(), "{node} of {row}");
            checked += 1;
        }
    }
    assert!(checked > 0, "no numa_maps line checked:\n{numa}");
}

/// Whether `/proc/self/pagemap` shows page frame numbers to us (root):
/// a touched page of our own must have one.
fn pfns_visible() -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let page = vec![1u8; 4096];
    let addr = page.as_ptr() as u64;
    let mut f = std::fs::File::open("/proc/self/pagemap").expect("open pagemap");
    f.seek(SeekFrom::Start(addr / 4096 * 8))
        .expect("seek pagemap");
    let mut entry = [0u8; 8];
    f.read_exact(&mut entry).expect("read pagemap");
    std::hint::black_box(&page);
    u64::from_le_bytes(entry) & ((1 << 55) - 1) != 0
}

#[test]
fn json_has_every_region_with_hex_addresses_and_numeric_fields() {
    let (_d, w) = start();
    let pid = w.pid().to_string();
    let maps = read_maps(w.pid());
    let sm = smaps(w.pid());
    let doc: serde_json::Value = serde_json::from_str(&pmap_ok(&["--json", &pid])).expect("json");
    assert_eq!(doc["source"], "process");
    assert_eq!(doc["format"], "default");
    assert_eq!(doc["pid"], w.pid());
    let regions = doc["regions"].as_array().expect("regions");
    assert_eq!(regions.len(), maps.len());
    for (r, m) in regions.iter().zip(&maps) {
        assert_eq!(r["address"], format!("{:#x}", m.start));
        assert_eq!(r["end"], format!("{:#x}", m.end));
        assert_eq!(r["size_kb"], (m.end - m.start) / 1024);
        assert_eq!(r["perms"], m.perms);
        assert_eq!(r["name"], m.name);
        assert!(
            r.get("fields").is_none(),
            "the default format reads no smaps"
        );
    }
    let doc: serde_json::Value =
        serde_json::from_str(&pmap_ok(&["-X", "--json", &pid])).expect("json");
    assert_eq!(doc["format"], "more_extended");
    // Sizes and anonymous memory of a stopped process are still; the
    // resident and proportional counts of shared file pages are not (other
    // processes map and drop them), so only the former are compared exactly.
    for r in doc["regions"].as_array().expect("regions") {
        let a = u64::from_str_radix(
            r["address"].as_str().expect("hex").trim_start_matches("0x"),
            16,
        )
        .expect("hex");
        assert_eq!(r["fields"]["Size"], sm[&a]["Size"]);
        assert_eq!(r["fields"]["Anonymous"], sm[&a]["Anonymous"]);
        assert!(r["fields"]["Rss"].is_u64() && r["fields"]["Pss"].is_u64());
    }
    let anon: u64 = sm.values().map(|f| f["Anonymous"]).sum();
    assert_eq!(doc["totals"]["fields"]["Anonymous"], anon);
    // Two processes: two documents, one per line.
    let two = pmap_ok(&["--json", &pid, &pid]);
    assert_eq!(two.lines().count(), 2);
    for l in two.lines() {
        serde_json::from_str::<serde_json::Value>(l).expect("each line is a document");
    }
}

#[test]
fn sort_reorders_rows_and_keeps_them() {
    let (_d, w) = start();
    let pid = w.pid().to_string();
    let by_addr = pmap_ok(&["-x", "--sort", "address", &pid]);
    let by_rss = pmap_ok(&["-x", "--sort", "rss", &pid]);
    let mut a: Vec<&str> = rows_of(&by_addr);
    let b: Vec<&str> = rows_of(&by_rss);
    let rss = |l: &str| {
        l.split_whitespace()
            .nth(2)
            .expect("rss")
            .parse::<u64>()
            .expect("rss")
    };
    assert!(b.windows(2).all(|p| rss(p[0]) >= rss(p[1])), "{by_rss}");
    let anon = format!("{:016x}", w.addr("anon"));
    let pos = b
        .iter()
        .position(|l| l.starts_with(&anon))
        .expect("anon row");
    assert!(b[pos..].iter().all(|l| rss(l) <= 1024), "{by_rss}");
    let mut b2 = b.clone();
    a.sort_unstable();
    b2.sort_unstable();
    assert_eq!(a, b2, "same rows, other order");
    assert_eq!(by_addr.lines().last(), by_rss.lines().last(), "same totals");
    let (_, err, code) = run_pmap(["--sort", "colour", &pid]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown sort field \"colour\""), "{err}");
}

#[test]
fn sort_works_with_rc_file_columns() {
    let (d, w) = start();
    let pid = w.pid().to_string();
    let rc = d.0.join("pmaprc");
    let text = "[Fields Display]\nPerm\nSize\nRss\nMapping\n";
    std::fs::write(&rc, text).expect("write rc");
    let rc = rc.to_str().expect("utf-8 path");
    let by_rss = pmap_ok(&["-C", rc, "--sort", "rss", &pid]);
    let rows: Vec<Vec<&str>> = by_rss
        .lines()
        .skip(2)
        .take_while(|l| !l.trim_start().starts_with('='))
        .map(|l| l.split_whitespace().collect())
        .filter(|f: &Vec<&str>| f.len() >= 4)
        .collect();
    assert!(rows.len() > 10, "{by_rss}");
    let rss: Vec<u64> = rows.iter().map(|f| f[3].parse().expect("rss")).collect();
    assert!(rss.windows(2).all(|p| p[0] >= p[1]), "{by_rss}");
    // In address order it is procps-ng's table, every cell but Rss (the
    // target's resident file pages may be reclaimed between the runs).
    let ours = pmap_ok(&["-C", rc, "--sort", "address", &pid]);
    let theirs = Command::new("/usr/bin/pmap")
        .args(["-C", rc, &pid])
        .output()
        .expect("procps-ng's /usr/bin/pmap runs (`cargo xtask deps` installs it)");
    let theirs = String::from_utf8_lossy(&theirs.stdout);
    let without_rss = |s: &str| -> Vec<Vec<String>> {
        s.lines()
            .map(|l| {
                let mut w: Vec<String> = l.split_whitespace().map(str::to_string).collect();
                let is_row = w.len() == 5 && u64::from_str_radix(&w[0], 16).is_ok();
                let is_total = w.len() == 3 && w[2] == "KB";
                if is_row {
                    w.remove(3);
                } else if is_total {
                    w.remove(1);
                }
                w
            })
            .collect()
    };
    let (a, b) = (without_rss(&ours), without_rss(&theirs));
    assert_eq!(a, b, "ours:\n{ours}\nprocps-ng:\n{theirs}");
    // The comparison must have seen rows of file mappings (the only ones
    // whose Rss it leaves out), or it compared another shape of table.
    let file_rows = b
        .iter()
        .filter(|w| w.len() == 4 && w[3].parse::<u64>().is_err() && !w[3].starts_with('['))
        .count();
    assert!(file_rows > 5, "no file rows compared:\n{ours}");
}
