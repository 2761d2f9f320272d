//! Self-contained HTML reports of a load run and of a benchmark (`--html`): line charts
//! as inline SVG, with no script and no external asset, so that a CI artifact opens
//! anywhere. Each data point is a circle with a `<title>` (its value on hover).

use std::fmt::Write as _;
use std::time::Duration;

use crate::stats::ENDPOINTS;
use crate::timeline::Slot;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// One line of a chart: (x, y) points in data units.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten.
fn nice_max(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

fn label(v: f64) -> String {
    if v >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A line chart; `x_label` and `y_label` name the axes' units.
pub fn line_chart(
    id: &str,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> String {
    let points: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.clone()).collect();
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<figure class="chart" id="{id}"><figcaption>{}</figcaption>"#,
        esc(title)
    );
    if points.is_empty() {
        out.push_str(r#"<p class="no-data">no data points</p></figure>"#);
        return out;
    }
    let x_max = nice_max(points.iter().map(|p| p.0).fold(0.0, f64::max));
    let y_max = nice_max(points.iter().map(|p| p.1).fold(0.0, f64::max));
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let sx = |x: f64| LEFT + x / x_max * plot_w;
    let sy = |y: f64| TOP + plot_h - y / y_max * plot_h;
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}">"#,
        esc(title)
    );
    for i in 0..=5 {
        let y = y_max * f64::from(i) / 5.0;
        let x = x_max * f64::from(i) / 5.0;
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11">{}</text><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11">{}</text>"##,
            LEFT + plot_w,
            sy(y),
            sy(y),
            LEFT - 6.0,
            sy(y) + 4.0,
            label(y),
            sx(x),
            TOP + plot_h + 16.0,
            label(x),
        );
    }
    let _ = write!(
        out,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="12">{}</text><text x="14" y="{:.1}" text-anchor="middle" font-size="12" transform="rotate(-90 14 {:.1})">{}</text>"##,
        LEFT + plot_w / 2.0,
        HEIGHT - 6.0,
        esc(x_label),
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        esc(y_label),
    );
    for (i, s) in series.iter().filter(|s| !s.points.is_empty()).enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        let _ = write!(
            out,
            r#"<g class="series" data-name="{}"><polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
            esc(&s.name),
            pts.join(" ")
        );
        for (x, y) in &s.points {
            let _ = write!(
                out,
                r#"<circle class="point" cx="{:.1}" cy="{:.1}" r="2" fill="{color}"><title>{}: {} at {}</title></circle>"#,
                sx(*x),
                sy(*y),
                esc(&s.name),
                label(*y),
                label(*x)
            );
        }
        let ly = TOP + 14.0 * i as f64;
        let _ = write!(
            out,
            r#"<rect x="{:.1}" y="{:.1}" width="10" height="10" fill="{color}"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text></g>"#,
            WIDTH - RIGHT + 12.0,
            ly,
            WIDTH - RIGHT + 26.0,
            ly + 9.0,
            esc(&s.name)
        );
    }
    out.push_str("</svg></figure>");
    out
}

/// The charts of a timeline: throughput and latency percentiles per endpoint, errors,
/// and memory per enrolled device above `rss_before`.
pub fn timeline_charts(interval: Duration, slots: &[Slot], rss_before: u64) -> String {
    let secs = interval.as_secs_f64().max(f64::MIN_POSITIVE);
    let t = |i: usize| (i as f64 + 1.0) * secs;
    let mut out = String::new();
    let throughput: Vec<Series> = ENDPOINTS
        .iter()
        .map(|e| Series {
            name: (*e).to_string(),
            points: slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.latency.get(e).map(|h| (t(i), h.count() as f64 / secs)))
                .collect(),
        })
        .collect();
    out.push_str(&line_chart(
        "throughput",
        "Throughput per endpoint",
        "seconds into the run",
        "requests/s",
        &throughput,
    ));
    for e in ENDPOINTS {
        if !slots.iter().any(|s| s.latency.contains_key(e)) {
            continue;
        }
        let quantile = |q: f64, name: &str| Series {
            name: name.to_string(),
            points: slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.latency.get(e).map(|h| (t(i), h.quantile_ms(q))))
                .collect(),
        };
        out.push_str(&line_chart(
            &format!("latency-{e}"),
            &format!("Latency of {e}"),
            "seconds into the run",
            "ms",
            &[
                quantile(0.50, "p50"),
                quantile(0.95, "p95"),
                quantile(0.99, "p99"),
            ],
        ));
    }
    let errors = Series {
        name: "errors".into(),
        points: slots
            .iter()
            .enumerate()
            .map(|(i, s)| (t(i), s.errors as f64 / secs))
            .collect(),
    };
    out.push_str(&line_chart(
        "errors",
        "Errors",
        "seconds into the run",
        "errors/s",
        &[errors],
    ));
    let memory = Series {
        name: "RSS per device".into(),
        points: slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let rss = s.rss?;
                (s.enrolled > 0).then(|| {
                    (
                        t(i),
                        rss.saturating_sub(rss_before) as f64 / s.enrolled as f64 / 1024.0,
                    )
                })
            })
            .collect(),
    };
    out.push_str(&line_chart(
        "memory",
        "Memory per enrolled device (RSS growth since the start)",
        "seconds into the run",
        "KiB/device",
        &[memory],
    ));
    out
}

/// A whole page: `summary` (preformatted text) and `charts`.
pub fn page(title: &str, summary: &str, charts: &str) -> String {
    format!(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{t}</title><style>body{{font-family:sans-serif;margin:2em;color:#222}}figure.chart{{margin:1.5em 0}}figcaption{{font-weight:bold;margin-bottom:.3em}}pre{{background:#f6f6f6;padding:1em;overflow-x:auto}}</style></head><body><h1>{t}</h1><pre class="summary">{s}</pre>{charts}</body></html>"#,
        t = esc(title),
        s = esc(summary),
    )
}

/// The page of a load run: its printed figures, then the charts of its timeline.
pub fn load_page(report: &crate::load::LoadReport) -> String {
    let mut text = Vec::new();
    let _ = report.print(&mut text);
    let charts = match &report.timeline {
        Some((interval, slots)) => timeline_charts(*interval, slots, report.rss_before),
        None => String::new(),
    };
    page("winmdm-load load", &String::from_utf8_lossy(&text), &charts)
}

/// The page of a benchmark: its printed figures, then the charts of phase (d).
pub fn bench_page(report: &crate::bench::BenchReport) -> String {
    let mut text = Vec::new();
    let _ = report.print(&mut text);
    let charts = match &report.devices.timeline {
        Some((interval, slots)) => format!(
            "<h2>Phase (d): {} devices enrolled and checked in once</h2>{}",
            report.devices.devices,
            timeline_charts(*interval, slots, report.devices.rss_before)
        ),
        None => String::new(),
    };
    page(
        "winmdm-load bench",
        &String::from_utf8_lossy(&text),
        &charts,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_draws_every_point_and_says_when_there_is_none() {
        let c = line_chart(
            "x",
            "T <1>",
            "s",
            "ms",
            &[Series {
                name: "a".into(),
                points: vec![(1.0, 2.0), (2.0, 4.0), (3.0, 3.0)],
            }],
        );
        assert_eq!(c.matches(r#"class="point""#).count(), 3);
        assert!(c.contains("T &lt;1&gt;"));
        let empty = line_chart("y", "Empty", "s", "ms", &[]);
        assert!(empty.contains("no data points"));
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(0.3), 0.5);
        assert_eq!(nice_max(0.0), 1.0);
    }
}
