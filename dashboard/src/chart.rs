//! Small SVG bar charts, drawn on the server (no charting library in the browser).

use std::fmt::Write as _;

use jobs::{Timestamp, store::MinuteCounts};

/// One column: its stacked values (bottom first).
pub struct Column {
    pub values: Vec<f64>,
    /// The hover text.
    pub title: String,
}

pub struct Chart<'a> {
    pub columns: Vec<Column>,
    /// A CSS class per stacked series (colours live in the stylesheet).
    pub series: &'a [&'a str],
    /// A dashed horizontal line (a target), in the values' unit.
    pub target: Option<f64>,
    /// The scale's top; the largest stack when `None`.
    pub max: Option<f64>,
    pub label: &'a str,
    /// What a column's value counts, after the scale's top: "max 40 attempts".
    pub unit: &'a str,
    /// Labels under the first and last column.
    pub ends: (String, String),
}

const W: f64 = 600.0;
const H: f64 = 120.0;

pub fn draw(c: &Chart) -> String {
    let top = c.max.unwrap_or_else(|| c.columns.iter().map(|col| col.values.iter().sum::<f64>()).fold(0.0, f64::max)).max(1.0);
    let n = c.columns.len().max(1) as f64;
    let bar = W / n;
    let mut s = format!(
        r#"<svg class="chart" viewBox="0 0 {W} {}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
        H + 16.0,
        esc(c.label)
    );
    for (i, col) in c.columns.iter().enumerate() {
        let x = i as f64 * bar;
        let mut y = H;
        let _ = write!(s, "<g><title>{}</title>", esc(&col.title));
        for (v, class) in col.values.iter().zip(c.series) {
            let h = (v / top * H).max(0.0);
            if h > 0.0 {
                y -= h;
                let _ = write!(s, r#"<rect class="{class}" x="{x:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}"/>"#, (bar - 1.0).max(0.5));
            }
        }
        let _ = write!(s, r#"<rect class="hover" x="{x:.1}" y="0" width="{bar:.1}" height="{H}"/></g>"#);
    }
    if let Some(t) = c.target {
        let y = H - t / top * H;
        let _ = write!(s, r#"<line class="target" x1="0" x2="{W}" y1="{y:.1}" y2="{y:.1}"/>"#);
    }
    let _ = write!(
        s,
        r#"<line class="axis" x1="0" x2="{W}" y1="{H}" y2="{H}"/><text x="0" y="{}">{}</text><text x="{W}" y="{}" text-anchor="end">{}</text><text x="4" y="10">max {} {}</text></svg>"#,
        H + 14.0,
        esc(&c.ends.0),
        H + 14.0,
        esc(&c.ends.1),
        fmt_num(top),
        esc(c.unit)
    );
    s
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 { format!("{v}") } else { format!("{v:.1}") }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Succeeded and failed attempts per minute over the hour from `since`.
pub fn throughput(minutes: &[MinuteCounts], since: Timestamp) -> String {
    let columns = (0..60)
        .map(|i| {
            let at = Timestamp(since.millis() + i * 60_000);
            let m = minutes.iter().find(|m| m.minute == at).copied().unwrap_or_default();
            let title = format!("{} UTC: {} succeeded, {} failed", at.to_datetime().format("%H:%M"), m.succeeded, m.failed);
            Column { values: vec![m.succeeded as f64, m.failed as f64], title }
        })
        .collect();
    draw(&Chart {
        columns,
        series: &["ok", "bad"],
        target: None,
        max: None,
        label: "Finished attempts per minute, last hour",
        unit: "attempts a minute",
        ends: ("60 min ago".into(), "now".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_stack() {
        let since = Timestamp(0);
        let svg = throughput(&[MinuteCounts { minute: Timestamp(60_000), succeeded: 3, failed: 1 }], since);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains(r#"class="ok" x="10.0" y="30.0" width="9.0" height="90.0""#), "{svg}");
        assert!(svg.contains("00:01 UTC: 3 succeeded, 1 failed"));
        assert!(svg.contains("max 4 attempts a minute"), "{svg}");
    }
}
