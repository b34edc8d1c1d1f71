//! Line charts as inline SVG, drawn on the server: no script, no external library.

use maud::{Markup, html};

const W: f64 = 640.0;
const H: f64 = 180.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;

/// One line: a label and its points (Unix ms, value), in time order.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label (the cluster).
    pub label: String,
    /// Points.
    pub points: Vec<(i64, f64)>,
}

/// Formats a value for an axis: 1.2k, 3.4M, 5.6G …
pub fn short(v: f64) -> String {
    let a = v.abs();
    let (d, s) = if a >= 1e12 {
        (1e12, "T")
    } else if a >= 1e9 {
        (1e9, "G")
    } else if a >= 1e6 {
        (1e6, "M")
    } else if a >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    let x = v / d;
    if x.fract() == 0.0 {
        format!("{x:.0}{s}")
    } else {
        format!("{x:.1}{s}")
    }
}

fn hhmm(ms: i64) -> String {
    tether_shared::timestamps::rfc3339_from_ms(ms)
        .and_then(|t| t.get(11..16).map(str::to_owned))
        .unwrap_or_default()
}

/// A chart titled `title` of `series` between `from` and `to` (Unix ms). `data-points`
/// carries how many points were drawn (tests and humans can check there is data).
pub fn line_chart(title: &str, unit: &str, series: &[Series], from: i64, to: i64) -> Markup {
    let span = (to - from).max(1) as f64;
    let max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max);
    let top = if max <= 0.0 { 1.0 } else { max * 1.1 };
    let x = |t: i64| LEFT + (t - from) as f64 / span * (W - LEFT - RIGHT);
    let y = |v: f64| TOP + (1.0 - v / top) * (H - TOP - BOTTOM);
    let drawn: usize = series.iter().map(|s| s.points.len()).sum();
    html! {
        figure.chart {
            figcaption { (title) @if !unit.is_empty() { " (" (unit) ")" } }
            svg viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(title) data-points=(drawn) {
                line.axis x1=(LEFT) y1=(H - BOTTOM) x2=(W - RIGHT) y2=(H - BOTTOM) {}
                line.axis x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(H - BOTTOM) {}
                text.tick x=(LEFT - 6.0) y=(y(top) + 10.0) text-anchor="end" { (short(top)) }
                text.tick x=(LEFT - 6.0) y=(H - BOTTOM) text-anchor="end" { "0" }
                text.tick x=(LEFT) y=(H - 6.0) { (hhmm(from)) }
                text.tick x=(W - RIGHT) y=(H - 6.0) text-anchor="end" { (hhmm(to)) " UTC" }
                @for (i, s) in series.iter().enumerate() {
                    @let pts: Vec<String> = s.points.iter()
                        .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
                        .collect();
                    polyline class={ "series s" (i % 6) } points=(pts.join(" ")) {}
                }
            }
            @if series.is_empty() || drawn == 0 {
                p.empty { "No data in this period yet." }
            } @else {
                ul.legend {
                    @for (i, s) in series.iter().enumerate() {
                        li class={ "s" (i % 6) } {
                            (s.label) ": " (short(s.points.last().map_or(0.0, |p| p.1)))
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_draw_every_point_inside_the_frame() {
        let s = Series {
            label: "etl".into(),
            points: vec![(0, 0.0), (30_000, 5.0), (60_000, 2.0)],
        };
        let svg = line_chart("Running queries", "", &[s], 0, 60_000).into_string();
        assert!(svg.contains("data-points=\"3\""), "{svg}");
        let pts = svg
            .split("<polyline")
            .nth(1)
            .and_then(|r| r.split(" points=\"").nth(1))
            .and_then(|r| r.split('"').next())
            .unwrap_or_default();
        for p in pts.split(' ') {
            let (x, y) = p.split_once(',').unwrap_or(("-1", "-1"));
            let (x, y): (f64, f64) = (x.parse().unwrap_or(-1.0), y.parse().unwrap_or(-1.0));
            assert!((LEFT..=W).contains(&x) && (0.0..=H).contains(&y), "{p}");
        }
        assert_eq!(short(1_500.0), "1.5k");
        assert_eq!(short(2e9), "2G");
    }
}
