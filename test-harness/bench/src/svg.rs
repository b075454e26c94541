//! `target/bench/latency.svg`: p50, p99, p999 and max of every run, grouped by
//! scenario, on a logarithmic latency axis. Written by hand: a dot plot needs a few
//! dozen elements, not a plotting library.

use std::fmt::Write as _;

use super::{
    plan::{Policy, Scenario},
    summary::BenchSummary,
};

const WIDTH: f64 = 980.0;
const HEIGHT: f64 = 470.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 40.0;
const TOP: f64 = 84.0;
const BOTTOM: f64 = 96.0;
/// Width of the gap between scenario groups, in columns.
const GROUP_GAP: f64 = 0.7;

/// A logarithmic axis from `lo` to `hi` (both powers of ten) mapped onto pixels
/// `bottom` (at `lo`) up to `top` (at `hi`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogAxis {
    pub lo: f64,
    pub hi: f64,
    pub top: f64,
    pub bottom: f64,
}

impl LogAxis {
    /// The decades that hold every value of `values` (ms), at least 0.1 ms to 10 ms.
    pub fn covering(values: impl IntoIterator<Item = f64>, top: f64, bottom: f64) -> Self {
        let (mut lo, mut hi) = (0.1_f64, 10.0_f64);
        for v in values.into_iter().filter(|v| v.is_finite() && *v > 0.0) {
            lo = lo.min(10_f64.powf(v.log10().floor()));
            hi = hi.max(10_f64.powf(v.log10().ceil()));
        }
        Self {
            lo,
            hi,
            top,
            bottom,
        }
    }

    /// The pixel row of `value`; values at or below zero sit on the bottom edge.
    pub fn y(&self, value: f64) -> f64 {
        let value = value.clamp(self.lo, self.hi);
        let span = self.hi.log10() - self.lo.log10();
        self.bottom - (self.bottom - self.top) * (value.log10() - self.lo.log10()) / span
    }

    /// The powers of ten from `lo` to `hi`.
    pub fn decades(&self) -> Vec<f64> {
        let (from, to) = (
            self.lo.log10().round() as i32,
            self.hi.log10().round() as i32,
        );
        (from..=to).map(|e| 10_f64.powi(e)).collect()
    }
}

/// `0.1 ms`, `1 ms`, `1 s`, `10 s`.
pub fn decade_label(ms: f64) -> String {
    if ms >= 1_000.0 {
        format!("{} s", ms / 1_000.0)
    } else {
        format!("{ms} ms")
    }
}

/// The fill colour of a policy.
pub fn colour(policy: Policy) -> &'static str {
    match policy {
        Policy::RoundRobin => "#4e79a7",
        Policy::LeastRequest => "#f28e2b",
        Policy::LeastRequestFullScan => "#ff9d9a",
        Policy::Ewma => "#59a14f",
        Policy::EwmaRetry => "#8cd17d",
        Policy::Oracle => "#9c9c9c",
        Policy::WasmFloor => "#b07aa1",
        Policy::Hostcalls => "#76b7b2",
        Policy::TowerPeakEwma => "#edc948",
    }
}

/// The chart for `summary`, titled `title`.
pub fn latency_svg(summary: &BenchSummary, title: &str) -> String {
    let runs: Vec<(Scenario, Policy)> = Scenario::ALL
        .iter()
        .flat_map(|&s| s.policies().iter().map(move |&p| (s, p)))
        .filter(|&(s, p)| summary.result(s, p).is_some())
        .collect();
    let axis = LogAxis::covering(
        runs.iter()
            .filter_map(|&(s, p)| summary.result(s, p))
            .flat_map(|r| [r.p50_ms, r.p99_ms, r.p999_ms, r.max_ms]),
        TOP,
        HEIGHT - BOTTOM,
    );
    let groups = Scenario::ALL
        .iter()
        .filter(|&&s| runs.iter().any(|&(r, _)| r == s))
        .count();
    let units = runs.len() as f64 + GROUP_GAP * groups.saturating_sub(1) as f64;
    let column = (WIDTH - LEFT - RIGHT) / units.max(1.0);

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    legend(&mut svg);
    grid(&mut svg, &axis);

    let mut x = LEFT;
    let mut previous: Option<Scenario> = None;
    let mut group_start = x;
    for &(scenario, policy) in &runs {
        if previous.is_some_and(|p| p != scenario) {
            if let Some(p) = previous {
                group_title(&mut svg, p, group_start, x);
            }
            x += GROUP_GAP * column;
            let _ = writeln!(
                svg,
                r##"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="#bbb" stroke-dasharray="3,3"/>"##,
                x - GROUP_GAP * column / 2.0,
                TOP - 26.0,
                HEIGHT - BOTTOM
            );
            group_start = x;
        }
        previous = Some(scenario);
        if let Some(run) = summary.result(scenario, policy) {
            let centre = x + column / 2.0;
            markers(&mut svg, &axis, centre, policy, run);
            let _ = writeln!(
                svg,
                r#"<text transform="translate({centre:.1},{:.1}) rotate(-35)" text-anchor="end">{}</text>"#,
                HEIGHT - BOTTOM + 16.0,
                policy.key()
            );
        }
        x += column;
    }
    if let Some(p) = previous {
        group_title(&mut svg, p, group_start, x);
    }
    if runs.iter().any(|&(_, policy)| !policy.has_proxy_hop()) {
        let _ = writeln!(
            svg,
            r##"<text x="{LEFT}" y="{:.1}" font-size="11" fill="#555">{}: no proxy hop (tower's p2c over PeakEwma in the client, as Linkerd's balancer inside its proxy)</text>"##,
            HEIGHT - 8.0,
            Policy::TowerPeakEwma.key()
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn legend(svg: &mut String) {
    let y = 46.0;
    let mut x = LEFT;
    let items: [(&str, &str); 4] = [
        ("circle", "p50"),
        ("square", "p99"),
        ("triangle", "p999"),
        ("dash", "max"),
    ];
    for (shape, label) in items {
        marker(svg, shape, x + 6.0, y - 4.0, "#555");
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{y:.1}">{label}</text>"#,
            x + 16.0
        );
        x += 62.0;
    }
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{y:.1}" fill="#555">latency of successful calls from their intended send time (log scale); red: success rate below 100 %</text>"##,
        x + 10.0
    );
}

fn grid(svg: &mut String, axis: &LogAxis) {
    for decade in axis.decades() {
        for (factor, major) in [(1.0, true), (2.0, false), (5.0, false)] {
            let value = decade * factor;
            if value > axis.hi {
                continue;
            }
            let y = axis.y(value);
            let stroke = if major { "#ccc" } else { "#eee" };
            let _ = writeln!(
                svg,
                r#"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{stroke}"/>"#,
                WIDTH - RIGHT
            );
            if major {
                let _ = writeln!(
                    svg,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                    LEFT - 8.0,
                    y + 4.0,
                    decade_label(value)
                );
            }
        }
    }
}

fn group_title(svg: &mut String, scenario: Scenario, from: f64, to: f64) {
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">{}</text>"#,
        (from + to) / 2.0,
        TOP - 12.0,
        scenario.key()
    );
}

fn markers(
    svg: &mut String,
    axis: &LogAxis,
    x: f64,
    policy: Policy,
    run: &super::summary::RunResult,
) {
    let fill = colour(policy);
    let _ = writeln!(
        svg,
        r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#999" stroke-width="1.5"/>"##,
        axis.y(run.p50_ms),
        axis.y(run.max_ms)
    );
    marker(svg, "dash", x, axis.y(run.max_ms), "#333");
    marker(svg, "triangle", x, axis.y(run.p999_ms), fill);
    marker(svg, "square", x, axis.y(run.p99_ms), fill);
    marker(svg, "circle", x, axis.y(run.p50_ms), fill);
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="10" fill="#333">{}</text>"##,
        x + 8.0,
        axis.y(run.p99_ms) + 3.5,
        super::table::latency(run.p99_ms)
    );
    if run.success_rate < 0.9995 {
        let _ = writeln!(
            svg,
            r##"<text x="{x:.1}" y="{:.1}" font-size="10" text-anchor="middle" fill="#c0392b">{:.1}%</text>"##,
            HEIGHT - BOTTOM - 6.0,
            100.0 * run.success_rate
        );
    }
}

fn marker(svg: &mut String, shape: &str, x: f64, y: f64, fill: &str) {
    let _ = match shape {
        "circle" => writeln!(
            svg,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="5" fill="{fill}" stroke="#222" stroke-width="0.8"/>"##
        ),
        "square" => writeln!(
            svg,
            r##"<rect x="{:.1}" y="{:.1}" width="9" height="9" fill="{fill}" stroke="#222" stroke-width="0.8"/>"##,
            x - 4.5,
            y - 4.5
        ),
        "triangle" => writeln!(
            svg,
            r##"<path d="M{x:.1},{:.1} L{:.1},{:.1} L{:.1},{:.1} Z" fill="{fill}" stroke="#222" stroke-width="0.8"/>"##,
            y - 6.0,
            x + 5.5,
            y + 4.0,
            x - 5.5,
            y + 4.0
        ),
        _ => writeln!(
            svg,
            r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{fill}" stroke-width="2"/>"#,
            x - 7.0,
            x + 7.0
        ),
    };
}

/// Escapes text for SVG.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::tests::run;

    #[test]
    fn the_axis_spans_whole_decades_around_the_data() {
        let axis = LogAxis::covering([0.35, 41.0, 250.0], 0.0, 300.0);
        assert_eq!((axis.lo, axis.hi), (0.1, 1_000.0));
        assert_eq!(axis.decades(), [0.1, 1.0, 10.0, 100.0, 1_000.0]);
        let small = LogAxis::covering([0.5, 2.0, f64::NAN, 0.0], 0.0, 300.0);
        assert_eq!((small.lo, small.hi), (0.1, 10.0));
    }

    #[test]
    fn each_decade_gets_the_same_height() {
        let axis = LogAxis {
            lo: 0.1,
            hi: 100.0,
            top: 0.0,
            bottom: 300.0,
        };
        assert_eq!(axis.y(0.1), 300.0);
        assert_eq!(axis.y(1.0), 200.0);
        assert_eq!(axis.y(100.0), 0.0);
        assert_eq!(axis.y(0.0), 300.0);
        assert_eq!(axis.y(1e9), 0.0);
    }

    #[test]
    fn decades_are_labelled_in_ms_then_seconds() {
        assert_eq!(decade_label(0.1), "0.1 ms");
        assert_eq!(decade_label(100.0), "100 ms");
        assert_eq!(decade_label(1_000.0), "1 s");
    }

    #[test]
    fn every_run_gets_its_markers_label_and_success_rate() {
        let mut summary = BenchSummary::default();
        summary.insert(Scenario::Equal, Policy::RoundRobin, run(0.7, 2.0, 1.0));
        summary.insert(
            Scenario::FastFail,
            Policy::RoundRobin,
            run(0.7, 2.0, 0.6667),
        );
        summary.insert(Scenario::FastFail, Policy::Ewma, run(0.8, 2.2, 0.9968));
        let svg = latency_svg(&summary, "Latency <test>");
        assert!(
            svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
            "{svg}"
        );
        assert!(svg.ends_with("</svg>\n"));
        assert!(svg.contains("Latency &lt;test&gt;"));
        // One p50 circle per run plus the legend's.
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(svg.contains(">equal</text>") && svg.contains(">fast-fail</text>"));
        assert!(
            !svg.contains(">one-slow</text>"),
            "scenarios without runs are left out"
        );
        assert!(svg.contains(">66.7%</text>") && svg.contains(">99.7%</text>"));
        assert!(svg.contains(">0.1 ms</text>") && svg.contains(">10 ms</text>"));
        assert_eq!(svg.matches(">round_robin</text>").count(), 2);
        assert!(!svg.contains("no proxy hop"));
    }

    #[test]
    fn a_client_side_run_gets_its_own_colour_and_a_note() {
        let mut summary = BenchSummary::default();
        summary.insert(Scenario::OneSlow, Policy::Ewma, run(0.8, 2.2, 1.0));
        summary.insert(Scenario::OneSlow, Policy::TowerPeakEwma, run(0.5, 2.0, 1.0));
        let svg = latency_svg(&summary, "t");
        assert_eq!(svg.matches(">tower_peak_ewma</text>").count(), 1);
        assert!(svg.contains(r##"fill="#edc948""##));
        assert!(svg.contains("tower_peak_ewma: no proxy hop"));
    }
}
