//! `--report FILE.html`: one self-contained page (inline SVG and a little
//! script, nothing fetched) per trace: mapped memory by category over
//! time with resident memory and the events marked, the biggest call
//! sites, W^X findings, churn and recognised structures.

use std::{fmt::Write as _, path::Path};

use anyhow::Context as _;

use super::{
    Proc,
    alloc::{AllocStats, human},
    timeline::CATEGORIES,
};

const COLORS: [&str; 7] = [
    "#e6a03c", "#5b8def", "#d9534f", "#c8c8c8", "#8e6bbf", "#4caf7a", "#3bb3c3",
];
const W: f64 = 960.0;
const H: f64 = 320.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn timeline_svg(p: &Proc, html: &mut String) {
    let s = &p.timeline.samples;
    if s.len() < 2 {
        html.push_str("<p>Not enough changes to draw a timeline.</p>");
        return;
    }
    let t0 = s[0].t_ns as f64;
    let t1 = (s[s.len() - 1].t_ns as f64).max(t0 + 1.0);
    let total = |i: usize| s[i].bytes.iter().sum::<u64>();
    let ymax = (0..s.len())
        .map(total)
        .chain(s.iter().filter_map(|x| x.rss))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let x = |t: u64| 50.0 + (t as f64 - t0) / (t1 - t0) * (W - 60.0);
    let y = |b: f64| H - 30.0 - b / ymax * (H - 50.0);
    let _ = write!(
        html,
        "<svg id=\"tl{pid}\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" xmlns=\"http://www.w3.org/2000/svg\">",
        pid = p.pid
    );
    // Stacked areas, bottom category first.
    let mut base = vec![0f64; s.len()];
    for (c, color) in COLORS.iter().enumerate() {
        let top: Vec<f64> = s
            .iter()
            .zip(&base)
            .map(|(x, b)| b + x.bytes[c] as f64)
            .collect();
        if top.iter().zip(&base).all(|(t, b)| t == b) {
            continue;
        }
        let mut d = String::new();
        for (i, smp) in s.iter().enumerate() {
            let _ = write!(
                d,
                "{}{:.1},{:.1} ",
                if i == 0 { "M" } else { "L" },
                x(smp.t_ns),
                y(top[i])
            );
        }
        for i in (0..s.len()).rev() {
            let _ = write!(d, "L{:.1},{:.1} ", x(s[i].t_ns), y(base[i]));
        }
        let _ = write!(
            html,
            "<path d=\"{d}Z\" fill=\"{color}\" fill-opacity=\"0.85\"><title>{}</title></path>",
            CATEGORIES[c]
        );
        base = top;
    }
    // Resident memory.
    let rss: Vec<String> = s
        .iter()
        .filter_map(|smp| {
            smp.rss
                .map(|r| format!("{:.1},{:.1}", x(smp.t_ns), y(r as f64)))
        })
        .collect();
    if rss.len() >= 2 {
        let _ = write!(
            html,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"#000\" stroke-width=\"1.5\" stroke-dasharray=\"4 2\"><title>resident</title></polyline>",
            rss.join(" ")
        );
    }
    // Event marks.
    let marks = p
        .timeline
        .marks
        .iter()
        .map(|(t, k, l)| (*t, *k, l.as_str()))
        .chain(
            p.wx.marks
                .iter()
                .take(500)
                .map(|(t, l)| (*t, "wx", l.as_str())),
        );
    for (t, kind, label) in marks {
        let color = match kind {
            "wx" => "#d00",
            "churn" => "#a0a",
            "exec" => "#000",
            _ => "#555",
        };
        let xx = x(t);
        let _ = write!(
            html,
            "<line class=\"mark\" x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{}\" y2=\"{}\" stroke=\"{color}\" stroke-width=\"1\"><title>{} +{:.3}s</title></line>",
            H - 28.0,
            H - 18.0,
            esc(label),
            t as f64 / 1e9
        );
    }
    // Axes.
    let _ = write!(
        html,
        "<line x1=\"50\" y1=\"{b}\" x2=\"{W}\" y2=\"{b}\" stroke=\"#333\"/><line x1=\"50\" y1=\"20\" x2=\"50\" y2=\"{b}\" stroke=\"#333\"/>\
         <text x=\"46\" y=\"24\" text-anchor=\"end\" font-size=\"11\">{}</text><text x=\"46\" y=\"{b}\" text-anchor=\"end\" font-size=\"11\">0</text>\
         <text x=\"50\" y=\"{ty}\" font-size=\"11\">+{:.3}s</text><text x=\"{W}\" y=\"{ty}\" text-anchor=\"end\" font-size=\"11\">+{:.3}s</text>\
         <line id=\"cur{pid}\" x1=\"0\" x2=\"0\" y1=\"20\" y2=\"{b}\" stroke=\"#888\" visibility=\"hidden\"/></svg>",
        human(ymax as u64),
        t0 / 1e9,
        t1 / 1e9,
        b = H - 30.0,
        ty = H - 4.0,
        pid = p.pid
    );
    // Legend and the data for the hover read-out.
    html.push_str("<div class=\"legend\">");
    for (c, color) in COLORS.iter().enumerate() {
        let _ = write!(
            html,
            "<span><i style=\"background:{color}\"></i>{}</span>",
            CATEGORIES[c]
        );
    }
    html.push_str("<span><i style=\"background:#000;height:2px\"></i>resident</span><span><i style=\"background:#d00\"></i>W^X flip</span><span><i style=\"background:#a0a\"></i>churn</span></div>");
    let data: Vec<String> = s
        .iter()
        .map(|smp| {
            format!(
                "[{:.6},[{}],{}]",
                smp.t_ns as f64 / 1e9,
                smp.bytes
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                smp.rss.map_or("null".into(), |r| r.to_string())
            )
        })
        .collect();
    let _ = write!(
        html,
        "<div class=\"readout\" id=\"ro{pid}\">move the pointer over the chart</div>\
         <script>hover({pid},[{}],{t0},{t1});</script>",
        data.join(","),
        t0 = t0 / 1e9,
        t1 = t1 / 1e9,
        pid = p.pid
    );
}

fn section(p: &Proc, html: &mut String) {
    let a = &p.alloc;
    let _ = write!(html, "<h2>Process {}</h2>", p.pid);
    html.push_str("<h3>Mapped memory by category</h3>");
    timeline_svg(p, html);

    html.push_str("<h3>Biggest call sites</h3>");
    let top = a.top_sites(true, 15);
    if top.is_empty() {
        html.push_str("<p>No call sites (trace with <code>--stacks</code>).</p>");
    } else {
        html.push_str("<table><tr><th>bytes</th><th>calls</th><th>call site</th></tr>");
        for (s, c) in top {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                human(c.bytes),
                c.calls,
                esc(&s)
            );
        }
        html.push_str("</table>");
    }

    html.push_str("<h3>W^X</h3>");
    let _ = write!(
        html,
        "<p>{} W&rarr;X flips, {} X&rarr;W flips, {} times a region became writable and executable at once.</p>",
        p.wx.flips_w_to_x, p.wx.flips_x_to_w, p.wx.rwx_events
    );
    let findings = p.wx.findings(p.last_t_ns, &|_| None);
    html.push_str("<table><tr><th>range</th><th>flips</th><th>time rwx</th></tr>");
    let mut rows = 0;
    for f in findings.iter().take(20) {
        rows += 1;
        let _ = write!(
            html,
            "<tr><td><code>{:016x}-{:016x} {}</code>{}</td><td>{}</td><td>{:.3}s</td></tr>",
            f.start,
            f.end,
            esc(&f.perms),
            f.gone.map_or(String::new(), |t| format!(
                " (unmapped at +{:.3}s)",
                t as f64 / 1e9
            )),
            f.flips,
            f.rwx_ns as f64 / 1e9
        );
    }
    if rows == 0 {
        html.push_str("<tr><td colspan=\"3\">none</td></tr>");
    }
    html.push_str("</table>");
    for f in &p.wx.dual_files {
        let _ = write!(
            html,
            "<p class=\"warn\">File mapped shared-writable and executable: <code>{}</code></p>",
            esc(f)
        );
    }

    html.push_str("<h3>Churn</h3>");
    let _ = write!(
        html,
        "<p>{} mappings unmapped within a second of being mapped ({}).</p>",
        a.churn,
        human(a.churn_bytes)
    );
    for (len, n) in a.patterns().iter().take(5) {
        let _ = write!(html, "<p>{} mapped and unmapped {n} times.", human(*len));
        if let Some(h) = AllocStats::hint(*len) {
            let _ = write!(html, " <b>Hint:</b> {}", esc(&h));
        }
        html.push_str("</p>");
    }
}

pub fn write(path: &Path, procs: &[&Proc]) -> anyhow::Result<()> {
    let mut html = String::from(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>pmap trace report</title><style>\
         body{font:14px sans-serif;margin:20px;color:#222}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}code{font-size:12px}\
         .legend span{margin-right:14px}.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}\
         .readout{font:12px monospace;height:1.4em}.warn{color:#b00}</style><script>\
         var CATS=",
    );
    let cats: Vec<String> = CATEGORIES.iter().map(|c| format!("\"{c}\"")).collect();
    let _ = write!(html, "[{}];", cats.join(","));
    html.push_str(
        "function fmt(b){var u=['B','K','M','G','T'],i=0;while(b>=1024&&i<4){b/=1024;i++}return b.toFixed(i?1:0)+u[i]}\
         function hover(pid,data,t0,t1){var svg=document.getElementById('tl'+pid),ro=document.getElementById('ro'+pid),cur=document.getElementById('cur'+pid);\
         svg.addEventListener('mousemove',function(e){var r=svg.getBoundingClientRect(),x=(e.clientX-r.left)*svg.viewBox.baseVal.width/r.width;\
         var t=t0+(x-50)/(svg.viewBox.baseVal.width-60)*(t1-t0),best=data[0];for(var i=0;i<data.length;i++){if(data[i][0]<=t)best=data[i]}\
         cur.setAttribute('x1',x);cur.setAttribute('x2',x);cur.setAttribute('visibility','visible');\
         var s='+'+best[0].toFixed(3)+'s ';for(var c=0;c<CATS.length;c++){if(best[1][c])s+=CATS[c]+' '+fmt(best[1][c])+'  '}\
         if(best[2]!==null)s+='resident '+fmt(best[2]);ro.textContent=s;});}\
         </script></head><body><h1>pmap trace report</h1>",
    );
    for p in procs {
        section(p, &mut html);
    }
    html.push_str("</body></html>\n");
    std::fs::write(path, html)
        .with_context(|| format!("writing the report to {} failed", path.display()))
}
