//! `target/simulate/latency.svg`: p50 and p99 per policy, one group per scenario, on a
//! log scale (as the bench's chart draws them).

use std::collections::BTreeMap;

use crate::report::Figures;

const COLOURS: [&str; 6] = [
    "#9e9e9e", "#795548", "#2e7d32", "#6a1b9a", "#ef6c00", "#1565c0",
];

pub fn chart(
    summary: &BTreeMap<String, BTreeMap<String, Figures>>,
    scenarios: &[&str],
    policies: &[&str],
) -> String {
    let (bar, gap, left, top, height) = (14.0, 30.0, 60.0, 40.0, 300.0);
    let group = bar * policies.len() as f64;
    let width = left + scenarios.len() as f64 * (group + gap) + 180.0;
    let (lo, hi) = (0.1f64.log10(), 10_000f64.log10());
    let y = |ms: f64| top + height - (ms.max(0.1).log10() - lo) / (hi - lo) * height;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{:.0}" font-family="sans-serif" font-size="11">
<text x="{left}" y="20" font-size="14">Mesh simulation: p99 latency (bar) and p50 (tick) per policy, ms, log scale</text>
"#,
        top + height + 50.0
    );
    for ms in [0.1, 1.0, 10.0, 100.0, 1000.0, 10_000.0] {
        s.push_str(&format!(
            r##"<line x1="{left}" x2="{:.0}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/><text x="{:.0}" y="{:.1}" text-anchor="end">{ms}</text>
"##,
            width - 180.0,
            y(ms),
            y(ms),
            left - 4.0,
            y(ms) + 4.0
        ));
    }
    for (g, scenario) in scenarios.iter().enumerate() {
        let x0 = left + g as f64 * (group + gap) + gap / 2.0;
        s.push_str(&format!(
            r#"<text x="{:.1}" y="{:.0}" text-anchor="middle">{scenario}</text>
"#,
            x0 + group / 2.0,
            top + height + 18.0
        ));
        for (i, policy) in policies.iter().enumerate() {
            let Some(f) = summary.get(*scenario).and_then(|p| p.get(*policy)) else {
                continue;
            };
            let x = x0 + i as f64 * bar;
            s.push_str(&format!(
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{scenario} {policy}: p50 {:.2} ms, p99 {:.2} ms</title></rect><line x1="{x:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="black"/>
"#,
                y(f.p99_ms),
                bar - 2.0,
                top + height - y(f.p99_ms),
                COLOURS[i % COLOURS.len()],
                f.p50_ms,
                f.p99_ms,
                x + bar - 2.0,
                y(f.p50_ms),
                y(f.p50_ms)
            ));
        }
    }
    for (i, policy) in policies.iter().enumerate() {
        let ly = top + 10.0 + i as f64 * 16.0;
        s.push_str(&format!(
            r#"<rect x="{:.0}" y="{:.0}" width="10" height="10" fill="{}"/><text x="{:.0}" y="{:.0}">{policy}</text>
"#,
            width - 170.0,
            ly,
            COLOURS[i % COLOURS.len()],
            width - 155.0,
            ly + 9.0
        ));
    }
    s.push_str("</svg>\n");
    s
}
