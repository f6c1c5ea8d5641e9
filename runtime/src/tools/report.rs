//! The replay report page: one self-contained HTML file with inline SVG (no scripts, no network):
//! predicted vs. recorded actions over time, per-offset error, latency histogram, success table.

use std::fmt::Write;

use serde::Serialize;

/// Open-loop result of one episode.
#[derive(Debug, Clone, Serialize)]
pub struct OpenLoopEpisode {
    pub path: String,
    pub seed: Option<u64>,
    pub steps: usize,
    pub inferences: usize,
    /// Mean |predicted − recorded| over every compared action and dimension.
    pub mae: f64,
    /// Root mean square error over the same.
    pub rmse: f64,
    /// Mean absolute error per offset into the executable slice (0 = the action due at the observation).
    pub mae_by_offset: Vec<f64>,
    /// (time, recorded action, predicted action) per compared step, for plots.
    #[serde(skip)]
    pub trace: Vec<(f64, Vec<f32>, Vec<f32>)>,
}

/// Closed-loop result of one episode.
#[derive(Debug, Clone, Serialize)]
pub struct ClosedLoopResult {
    pub path: String,
    pub seed: u64,
    pub recorded_success: Option<bool>,
    pub success: bool,
    pub score: f64,
    pub steps: usize,
    pub inferences: usize,
    pub nfe: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplaySummary {
    pub checkpoint: String,
    pub mode: &'static str,
    pub delay_ms: f64,
    pub open_loop: Vec<OpenLoopEpisode>,
    pub closed_loop: Vec<ClosedLoopResult>,
    /// Mean MAE over episodes (open loop) / success rate (closed loop).
    pub mean_mae: Option<f64>,
    pub success_rate: Option<f64>,
}

const W: f64 = 640.0;
const H: f64 = 180.0;
const COLORS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A line plot of several series sharing x; `dashed[i]` draws series i dashed.
fn line_plot(title: &str, xs: &[f64], series: &[(String, Vec<f64>, bool, usize)]) -> String {
    let mut s = String::new();
    let finite = |v: &f64| v.is_finite();
    let (x0, x1) = (
        xs.iter().cloned().filter(finite).fold(f64::INFINITY, f64::min),
        xs.iter().cloned().filter(finite).fold(f64::NEG_INFINITY, f64::max),
    );
    let ys = series.iter().flat_map(|(_, v, _, _)| v.iter().cloned().filter(finite));
    let (mut y0, mut y1) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    // Also refuses NaN bounds.
    if x0.partial_cmp(&x1) != Some(std::cmp::Ordering::Less) || y0.partial_cmp(&y1).is_none_or(|o| o.is_gt()) {
        return format!("<p>{}: no data</p>", esc(title));
    }
    if y1 - y0 < 1e-9 {
        y0 -= 1.0;
        y1 += 1.0;
    }
    let px = |x: f64| 40.0 + (x - x0) / (x1 - x0) * (W - 50.0);
    let py = |y: f64| H - 20.0 - (y - y0) / (y1 - y0) * (H - 40.0);
    let _ = write!(
        s,
        "<h3>{}</h3><svg width=\"{W}\" height=\"{H}\" style=\"background:#fafafa\">\
         <text x=\"2\" y=\"{:.0}\" font-size=\"10\">{y1:.3}</text><text x=\"2\" y=\"{:.0}\" font-size=\"10\">{y0:.3}</text>\
         <text x=\"40\" y=\"{H}\" font-size=\"10\">{x0:.2} s</text><text x=\"{:.0}\" y=\"{H}\" font-size=\"10\">{x1:.2} s</text>",
        esc(title),
        py(y1) + 4.0,
        py(y0),
        W - 60.0
    );
    for (name, v, dashed, color) in series {
        let pts: Vec<String> = xs
            .iter()
            .zip(v)
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"{} points=\"{}\"><title>{}</title></polyline>",
            COLORS[color % COLORS.len()],
            if *dashed { " stroke-dasharray=\"4 3\"" } else { "" },
            pts.join(" "),
            esc(name)
        );
    }
    s.push_str("</svg>");
    s
}

fn histogram(title: &str, values_ms: &[f64]) -> String {
    if values_ms.is_empty() {
        return String::new();
    }
    let max = values_ms.iter().cloned().fold(0.0, f64::max).max(1e-6);
    let bins = 30usize;
    let mut counts = vec![0usize; bins];
    for v in values_ms {
        counts[((v / max * bins as f64) as usize).min(bins - 1)] += 1;
    }
    let top = *counts.iter().max().unwrap_or(&1) as f64;
    let mut s = format!(
        "<h3>{}</h3><svg width=\"{W}\" height=\"{H}\" style=\"background:#fafafa\">",
        esc(title)
    );
    let bw = (W - 50.0) / bins as f64;
    for (i, c) in counts.iter().enumerate() {
        let h = *c as f64 / top * (H - 40.0);
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#1f77b4\"><title>{c}</title></rect>",
            40.0 + i as f64 * bw,
            H - 20.0 - h,
            bw - 1.0
        );
    }
    let _ = write!(
        s,
        "<text x=\"40\" y=\"{H}\" font-size=\"10\">0 ms</text><text x=\"{:.0}\" y=\"{H}\" font-size=\"10\">{max:.1} ms</text></svg>",
        W - 60.0
    );
    s
}

/// Render the report.
pub fn html(summary: &ReplaySummary, latencies_s: &[f64]) -> String {
    let mut s = String::from(
        "<!doctype html><meta charset=\"utf-8\"><title>riptide replay</title>\
         <body style=\"font-family:sans-serif;max-width:700px;margin:auto\">",
    );
    let _ = write!(
        s,
        "<h1>riptide replay</h1><p>checkpoint <code>{}</code>, {} , simulated delay {} ms</p>",
        esc(&summary.checkpoint),
        summary.mode,
        summary.delay_ms
    );
    if let Some(r) = summary.success_rate {
        let _ = write!(
            s,
            "<h2>Closed loop: {:.0} % success</h2><table border=\"1\" cellpadding=\"3\" style=\"border-collapse:collapse\">\
             <tr><th>episode</th><th>seed</th><th>recorded</th><th>policy</th><th>score</th><th>steps</th><th>NFE</th></tr>",
            r * 100.0
        );
        for e in &summary.closed_loop {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td></tr>",
                esc(e.path.rsplit('/').next().unwrap_or(&e.path)),
                e.seed,
                e.recorded_success
                    .map(|b| if b { "success" } else { "fail" })
                    .unwrap_or("?"),
                if e.success { "success" } else { "fail" },
                e.score,
                e.steps,
                e.nfe
            );
        }
        s.push_str("</table>");
    }
    if let Some(m) = summary.mean_mae {
        let _ = write!(s, "<h2>Open loop: mean |predicted − recorded| = {m:.4}</h2>");
        if let Some(ep) = summary.open_loop.first() {
            let xs: Vec<f64> = ep.trace.iter().map(|t| t.0).collect();
            let dims = ep.trace.first().map(|t| t.1.len()).unwrap_or(0);
            let mut series = Vec::new();
            for d in 0..dims {
                series.push((
                    format!("recorded a{d}"),
                    ep.trace.iter().map(|t| t.1[d] as f64).collect(),
                    false,
                    d,
                ));
                series.push((
                    format!("predicted a{d}"),
                    ep.trace.iter().map(|t| t.2[d] as f64).collect(),
                    true,
                    d,
                ));
            }
            s.push_str(&line_plot(
                &format!(
                    "{}: recorded (solid) vs predicted (dashed)",
                    ep.path.rsplit('/').next().unwrap_or("")
                ),
                &xs,
                &series,
            ));
            let offs: Vec<f64> = (0..ep.mae_by_offset.len()).map(|i| i as f64).collect();
            s.push_str(&line_plot(
                "MAE by offset into the executed slice (x = steps, shown as s)",
                &offs,
                &[("MAE".into(), ep.mae_by_offset.clone(), false, 1)],
            ));
        }
    }
    let ms: Vec<f64> = latencies_s.iter().map(|v| v * 1e3).collect();
    s.push_str(&histogram(
        &format!("Inference latency ({} inferences, wall clock)", ms.len()),
        &ms,
    ));
    s.push_str("</body>");
    s
}
