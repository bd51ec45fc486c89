//! (d) The tracer's own cost on a 60,000-region process and (e) what
//! processes that are not traced pay while it runs.

use super::*;

// ---------------------------------------------------------------------------
// (d) the tracer's own cost on 60,000 regions

pub(super) fn own_cost(s: &mut String, bins: &Bins, plan: &Plan) -> Result<()> {
    eprintln!("bench: trace: own cost on 60,000 regions");
    let mut t = Table::new(&[
        "run",
        "regions",
        "startup s (spawn → tracing)",
        "startup CPU ms",
        "tables printed",
        "events",
        "total CPU ms",
        "CPU µs/event (after startup)",
        "RSS after startup MiB",
        "peak RSS MiB",
        "lost",
        "corrections",
    ]);
    let mut worst_rss = f64::NAN;
    for (label, flags, churn) in [
        ("idle, 3 × SIGUSR1", vec![], None),
        ("idle, -X, 3 × SIGUSR1", vec!["-X"], None),
        ("churn 2,000 mprotect/s, 1 × SIGUSR1", vec![], Some(2_000.0)),
    ] {
        let mut mm = ManyMaps::start(bins, 60_000, churn.map_or(Layout::Anonymous, Layout::Churn))?;
        let tr = Tracer::start(&bins.pmap, &flags, &[mm.pid()], Output::Text)?;
        if churn.is_some() {
            mm.go()?;
            std::thread::sleep(Duration::from_secs_f64(plan.churn_secs));
            tr.signal(libc::SIGUSR1);
            std::thread::sleep(Duration::from_millis(700));
        } else {
            for _ in 0..3 {
                std::thread::sleep(Duration::from_millis(700));
                tr.signal(libc::SIGUSR1);
            }
            std::thread::sleep(Duration::from_millis(1500));
        }
        let r = tr.finish(Duration::ZERO)?;
        let events = r.out.summary_calls("mprotect").unwrap_or(0);
        let after = r.usage.cpu() - r.startup_cpu;
        worst_rss = if worst_rss.is_nan() {
            r.hwm_kib
        } else {
            worst_rss.max(r.hwm_kib)
        };
        t.row(vec![
            label.into(),
            mm.regions.to_string(),
            format!("{:.2}", r.startup),
            ms(r.startup_cpu),
            r.out.tables.to_string(),
            events.to_string(),
            ms(r.usage.cpu()),
            if events > 0 {
                format!("{:.1}", after * 1e6 / events as f64)
            } else {
                String::new()
            },
            mib(r.startup_hwm_kib),
            mib(r.hwm_kib),
            r.out
                .summary_lost()
                .map(|v| v.to_string())
                .unwrap_or_else(|| "?".into()),
            r.out
                .summary_corrections()
                .map(|v| v.to_string())
                .unwrap_or_else(|| "?".into()),
        ]);
    }
    let _ = writeln!(
        s,
        "### (d) The tracer's own cost on a process with 60,000 regions\n\n\
         `pmap trace [-X] PID` on many_maps (alternating r--/rw- pages). Peak RSS is the \
         tracer's VmHWM sampled every 20 ms from /proc (its own address space only). \
         Each table (initial, one per SIGUSR1, final) is a full table of ~60k lines plus the \
         model check against the kernel. The churn run toggles one page's protection {} \
         times per second (each a merge 3 → 1 or a split 1 → 3) for {}s.\n",
        2_000, plan.churn_secs
    );
    s.push_str(&t.render());
    s.push('\n');
    let _ = writeln!(
        s,
        "- peak RSS goal <= {GOAL_RSS_MIB} MiB: {} MiB, {}\n",
        mib(worst_rss),
        verdict(worst_rss / 1024.0, GOAL_RSS_MIB)
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// (e) what untraced processes pay

pub(super) fn cost_to_others(
    s: &mut String,
    bins: &Bins,
    alt: Option<&Path>,
    plan: &Plan,
    avail: &Avail,
) -> Result<()> {
    #[derive(Clone, Copy, PartialEq)]
    enum O {
        None,
        Pmap,
        Alt,
        Bpftrace,
    }
    let mut cfgs = vec![O::None];
    if avail.pmap.is_ok() {
        cfgs.push(O::Pmap);
    }
    if alt.is_some() {
        cfgs.push(O::Alt);
    }
    if avail.bpftrace.is_ok() {
        cfgs.push(O::Bpftrace);
    }
    let mut data: Vec<Samples> = cfgs.iter().map(|_| Samples::default()).collect();
    let mut sys: Vec<Samples> = cfgs.iter().map(|_| Samples::default()).collect();
    let mut cpu: Vec<Samples> = cfgs.iter().map(|_| Samples::default()).collect();
    let other = ManyMaps::start(bins, 1_000, Layout::Anonymous)?;
    let args = vec!["--iters".to_string(), plan.iters.to_string()];
    eprintln!(
        "bench: trace: cost to untraced processes, {} rounds",
        plan.others_rounds
    );
    for r in 0..plan.others_rounds {
        for k in 0..cfgs.len() {
            let i = (k + r) % cfgs.len();
            let res = match cfgs[i] {
                O::None => Loop::start(bins, &args)?.go()?,
                O::Pmap | O::Alt => {
                    let bin = match (cfgs[i], alt) {
                        (O::Alt, Some(a)) => a,
                        _ => bins.pmap.as_path(),
                    };
                    let t = Tracer::start(bin, &[], &[other.pid()], Output::Text)?;
                    let res = Loop::start(bins, &args)?.go()?;
                    t.finish(Duration::ZERO)?;
                    res
                }
                O::Bpftrace => {
                    let b = Bpftrace::start(other.pid())?;
                    let res = Loop::start(bins, &args)?.go()?;
                    b.finish()?;
                    res
                }
            };
            data[i].push(res.elapsed);
            sys[i].push(res.usage.sys);
            cpu[i].push(res.usage.cpu());
        }
    }
    let _ = writeln!(
        s,
        "### (e) What processes that are not traced pay\n\n\
         bench_loop (N = {}) untraced, while nothing traces, while `pmap trace` traces another \
         (idle) process, and while bpftrace counts the same six tracepoints for that other \
         process. Syscall tracepoints are global: every task entering these syscalls runs the \
         programs, which drop other processes' events in the kernel. {} rounds, interleaved.\n",
        plan.iters, plan.others_rounds
    );
    let mut t = Table::new(&[
        "while",
        "loop median ms",
        "loop min ms",
        "ratio vs nothing",
        "loop CPU ms",
        "CPU ratio vs nothing",
        "loop sys ms",
    ]);
    for (i, c) in cfgs.iter().enumerate() {
        t.row(vec![
            match c {
                O::None => "nothing traces",
                O::Pmap => "pmap trace OTHER_PID",
                O::Alt => "--alt-pmap: trace OTHER_PID",
                O::Bpftrace => "bpftrace on OTHER_PID",
            }
            .into(),
            ms(data[i].median()),
            ms(data[i].min()),
            if i == 0 {
                String::new()
            } else {
                fx(paired(&data[i], &data[0]))
            },
            ms(cpu[i].median()),
            if i == 0 {
                String::new()
            } else {
                fx(paired(&cpu[i], &cpu[0]))
            },
            ms(sys[i].median()),
        ]);
    }
    if avail.pmap.is_err() {
        t.row(vec![
            "pmap trace OTHER_PID".into(),
            "not measured (see above)".into(),
        ]);
    }
    s.push_str(&t.render());
    s.push('\n');
    drop(other);
    Ok(())
}
