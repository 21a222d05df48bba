//! PNG charts with plotters' bitmap backend and the bundled DejaVu Sans
//! font (`assets/`), so that no system font library is needed: training
//! curves (`textgcn-train`) and the degree and weight histograms of
//! `textgcn inspect --plot`.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

fn font() -> Result<()> {
    static ONCE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *ONCE.get_or_init(|| plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok());
    if ok { Ok(()) } else { Err(anyhow!("the bundled font could not be loaded")) }
}

fn pe<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> anyhow::Error + '_ {
    move |e| anyhow!("drawing {}: {e}", path.display())
}

/// One panel of line series sharing an x axis.
pub struct Panel<'a> {
    /// Panel title.
    pub title: &'a str,
    /// X axis label.
    pub x_label: &'a str,
    /// Y axis label.
    pub y_label: &'a str,
    /// Named series of (x, y) points.
    pub series: Vec<(&'a str, Vec<(f64, f64)>)>,
}

const COLORS: [RGBColor; 4] = [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44), RGBColor(148, 103, 189)];

fn span(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = vals.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    (lo - pad, hi + pad)
}

/// Draws panels side by side into a PNG at `path` (written atomically),
/// under `title`.
pub fn line_panels(path: &Path, title: &str, panels: &[Panel]) -> Result<()> {
    crate::write_atomic_with(path, |tmp| draw_panels(tmp, title, panels))
}

fn draw_panels(path: &Path, title: &str, panels: &[Panel]) -> Result<()> {
    font()?;
    let e = pe(path);
    let root = BitMapBackend::new(path, (560 * panels.len() as u32, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let root = root.titled(title, ("sans-serif", 24)).map_err(&e)?;
    for (area, p) in root.split_evenly((1, panels.len())).iter().zip(panels) {
        let (x0, x1) = span(p.series.iter().flat_map(|s| s.1.iter().map(|q| q.0)));
        let (y0, y1) = span(p.series.iter().flat_map(|s| s.1.iter().map(|q| q.1)));
        let mut chart = ChartBuilder::on(area)
            .caption(p.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(65)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(&e)?;
        let integral_x = p.series.iter().all(|s| s.1.iter().all(|q| q.0.fract() == 0.0));
        let xfmt = |v: &f64| if integral_x { format!("{}", v.round() as i64) } else { format!("{v}") };
        chart.configure_mesh().x_desc(p.x_label).y_desc(p.y_label).x_label_formatter(&xfmt).label_style(("sans-serif", 14)).axis_desc_style(("sans-serif", 16)).draw().map_err(&e)?;
        for (k, (name, pts)) in p.series.iter().enumerate() {
            let c = COLORS[k % COLORS.len()];
            chart
                .draw_series(LineSeries::new(pts.iter().copied().filter(|q| q.1.is_finite()), c.stroke_width(2)))
                .map_err(&e)?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], c.stroke_width(3)));
        }
        // The legend goes where the curves end up not being.
        let end = p.series.iter().filter_map(|s| s.1.last().map(|q| q.1)).fold(0.0, |a, b| a + b) / p.series.len().max(1) as f64;
        let pos = if end < (y0 + y1) / 2.0 { SeriesLabelPosition::UpperRight } else { SeriesLabelPosition::LowerRight };
        chart.configure_series_labels().position(pos).background_style(WHITE.mix(0.85)).border_style(BLACK).label_font(("sans-serif", 14)).draw().map_err(&e)?;
    }
    root.present().map_err(&e)?;
    Ok(())
}

/// A histogram of `values` into a PNG (written atomically): `bins` bins, linear or logarithmic
/// x (log for heavy-tailed values such as degrees; then values must be
/// positive), counts on a log y axis.
pub fn histogram(path: &Path, title: &str, x_label: &str, values: &[f64], bins: usize, log_x: bool) -> Result<()> {
    crate::write_atomic_with(path, |tmp| draw_histogram(tmp, title, x_label, values, bins, log_x))
}

fn draw_histogram(path: &Path, title: &str, x_label: &str, values: &[f64], bins: usize, log_x: bool) -> Result<()> {
    font()?;
    let e = pe(path);
    let vals: Vec<f64> = values.iter().copied().filter(|v| v.is_finite() && (!log_x || *v > 0.0)).collect();
    if vals.is_empty() {
        return Err(anyhow!("{}: nothing to plot", path.display()));
    }
    let (lo, hi) = vals.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let (tlo, thi) = if log_x { (lo.ln(), hi.ln()) } else { (lo, hi) };
    let width = ((thi - tlo) / bins as f64).max(1e-12);
    let mut counts = vec![0u64; bins];
    for v in &vals {
        let t = if log_x { v.ln() } else { *v };
        counts[(((t - tlo) / width) as usize).min(bins - 1)] += 1;
    }
    let edge = |k: usize| {
        let t = tlo + width * k as f64;
        if log_x { t.exp() } else { t }
    };
    let top = *counts.iter().max().unwrap_or(&1) as f64 * 2.0;
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let mut b = ChartBuilder::on(&root);
    b.caption(title, ("sans-serif", 22)).margin(15).x_label_area_size(50).y_label_area_size(70);
    let bars = counts.iter().enumerate().filter(|(_, c)| **c > 0).map(|(k, &c)| Rectangle::new([(edge(k), 1.0), (edge(k + 1), c as f64)], COLORS[0].mix(0.8).filled()));
    let (x0, x1) = (edge(0), edge(bins));
    // Ticks as 1e-5 or 1000, never 9.99999e-6 or 1000.0.
    let xfmt = |v: &f64| if *v >= 1.0 && *v < 1e6 { format!("{}", v.round() as u64) } else { format!("{v:.0e}") };
    let yfmt = |v: &f64| format!("{}", v.round() as u64);
    if log_x {
        let mut chart = b.build_cartesian_2d((x0..x1).log_scale(), (0.8..top).log_scale()).map_err(&e)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc("count (log scale)")
            .x_label_formatter(&xfmt)
            .y_label_formatter(&yfmt)
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .draw()
            .map_err(&e)?;
        chart.draw_series(bars).map_err(&e)?;
    } else {
        let mut chart = b.build_cartesian_2d(x0..x1, (0.8..top).log_scale()).map_err(&e)?;
        chart.configure_mesh().x_desc(x_label).y_desc("count (log scale)").y_label_formatter(&yfmt).label_style(("sans-serif", 14)).axis_desc_style(("sans-serif", 16)).draw().map_err(&e)?;
        chart.draw_series(bars).map_err(&e)?;
    }
    root.present().map_err(&e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_png(p: &Path) -> bool {
        std::fs::read(p).map(|b| b.starts_with(b"\x89PNG") && b.len() > 5000).unwrap_or(false)
    }

    #[test]
    fn charts_are_written_as_png() {
        let d = tempfile::tempdir().unwrap();
        let curves = d.path().join("c.png");
        let loss: Vec<(f64, f64)> = (1..50).map(|e| (e as f64, 2.0 / e as f64)).collect();
        let acc: Vec<(f64, f64)> = (1..50).map(|e| (e as f64, 1.0 - 1.0 / e as f64)).collect();
        let panels = [
            Panel { title: "loss", x_label: "epoch", y_label: "cross-entropy", series: vec![("train", loss.clone()), ("validation", loss)] },
            Panel { title: "accuracy", x_label: "epoch", y_label: "accuracy", series: vec![("train", acc.clone()), ("validation", acc)] },
        ];
        line_panels(&curves, "R8", &panels).unwrap();
        assert!(is_png(&curves));
        let h = d.path().join("h.png");
        let degrees: Vec<f64> = (1..5000).map(|k| (k % 97 + 1) as f64 * (k % 7 + 1) as f64).collect();
        histogram(&h, "degrees", "degree", &degrees, 40, true).unwrap();
        assert!(is_png(&h));
        histogram(&h, "weights", "weight", &[0.1, 0.2, 0.2, 0.9], 10, false).unwrap();
        assert!(histogram(&h, "nothing", "x", &[], 10, false).is_err());
    }
}
