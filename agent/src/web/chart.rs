//! Server-rendered SVG charts: downloads per time bucket, one line per series, with a legend
//! and the same figures as a table for screen readers and for copying.

use maud::{html, Markup};

/// Colours of the series, in order; chosen to be told apart with common colour blindness
/// (Okabe-Ito), and every line also has its name in the legend and the table.
const COLOURS: [&str; 8] =
    ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442"];

/// One line: its name and a value per bucket (oldest first).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Series {
    /// What the line counts (a catalog, relay or region).
    pub name: String,
    /// One value per bucket, oldest first; every series of a chart has as many.
    pub values: Vec<u64>,
}

const W: f64 = 640.0;
const H: f64 = 200.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 24.0;
const TOP: f64 = 8.0;

/// A line chart of `series` over buckets labelled by `labels` (as many as values), titled
/// `title`. At most [`COLOURS`] series get lines; the rest are summed into "other".
pub fn lines(title: &str, labels: &[String], series: &[Series]) -> Markup {
    let shown = fold_others(series);
    let n = labels.len().max(1);
    let max = shown.iter().flat_map(|s| s.values.iter().copied()).max().unwrap_or(0).max(1);
    let x = |i: usize| LEFT + (W - LEFT - 8.0) * (i as f64) / ((n.max(2) - 1) as f64);
    let y = |v: u64| TOP + (H - TOP - BOTTOM) * (1.0 - v as f64 / max as f64);
    let points = |s: &Series| {
        s.values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let total: u64 = shown.iter().flat_map(|s| s.values.iter()).sum();
    let label = format!("{title}: {total} downloads in {} buckets", labels.len());
    let ticks = [0, n / 2, n.saturating_sub(1)];
    html! {
        figure class="chart" {
            svg viewBox=(format!("0 0 {W} {H}")) role="img" aria-label=(label) {
                title { (label) }
                line x1=(LEFT) y1=(y(0)) x2=(W - 8.0) y2=(y(0)) class="axis" {}
                line x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(y(0)) class="axis" {}
                text x=(LEFT - 4.0) y=(TOP + 10.0) text-anchor="end" class="tick" { (max) }
                text x=(LEFT - 4.0) y=(y(0)) text-anchor="end" class="tick" { "0" }
                @for (k, i) in ticks.iter().enumerate() {
                    @if let Some(l) = labels.get(*i) {
                        text x=(x(*i)) y=(H - 6.0) text-anchor=(["start", "middle", "end"][k]) class="tick" { (l) }
                    }
                }
                @for (i, s) in shown.iter().enumerate() {
                    polyline points=(points(s)) fill="none" stroke=(COLOURS[i % COLOURS.len()])
                        stroke-width="2" {}
                }
            }
            figcaption {
                strong { (title) }
                ul class="legend" {
                    @for (i, s) in shown.iter().enumerate() {
                        li {
                            span class="swatch" style=(format!("background:{}", COLOURS[i % COLOURS.len()])) {}
                            (s.name) ": " (s.values.iter().sum::<u64>())
                        }
                    }
                }
            }
            details {
                summary { "The figures as a table" }
                div class="scroll" tabindex="0" role="region" aria-label=(format!("{title}, as a table")) {
                    table {
                        thead { tr { th scope="col" { "Bucket" } @for s in &shown { th scope="col" { (s.name) } } } }
                        tbody {
                            @for (i, l) in labels.iter().enumerate() {
                                tr { th scope="row" { (l) } @for s in &shown { td class="num" { (s.values.get(i).copied().unwrap_or(0)) } } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The largest series first; past the number of colours, the rest summed as `other`.
fn fold_others(series: &[Series]) -> Vec<Series> {
    let mut sorted: Vec<&Series> = series.iter().collect();
    sorted.sort_by(|a, b| {
        let (sa, sb): (u64, u64) = (a.values.iter().sum(), b.values.iter().sum());
        sb.cmp(&sa).then_with(|| a.name.cmp(&b.name))
    });
    if sorted.len() <= COLOURS.len() {
        return sorted.into_iter().cloned().collect();
    }
    let (keep, rest) = sorted.split_at(COLOURS.len() - 1);
    let mut out: Vec<Series> = keep.iter().map(|s| (*s).clone()).collect();
    let len = rest.iter().map(|s| s.values.len()).max().unwrap_or(0);
    let mut other = Series { name: "other".into(), values: vec![0; len] };
    for s in rest {
        for (o, v) in other.values.iter_mut().zip(&s.values) {
            *o += v;
        }
    }
    out.push(other);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_series_fold_into_other_and_names_are_escaped() {
        let series: Vec<Series> =
            (0..12).map(|i| Series { name: format!("<s{i}>"), values: vec![i, i + 1] }).collect();
        let out = lines("t", &["a".into(), "b".into()], &series).into_string();
        assert_eq!(out.matches("<polyline").count(), COLOURS.len());
        assert!(out.contains("other") && out.contains("&lt;s11&gt;") && !out.contains("<s11>"));
    }
}
