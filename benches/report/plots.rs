//! The report's SVG plots (plotters, SVG backend only): latency and memory against item count
//! on log-log axes, one line per engine or mode, and recall@10 against oversampling.

use std::error::Error;
use std::path::Path;

use plotters::prelude::*;

use crate::results::{DatasetResult, Report, ENGINES};

type Plot = Result<(), Box<dyn Error>>;

/// A line: its label, colour and points.
struct Series {
    label: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// A fixed colour per engine, so that the plots agree with each other.
fn color(engine: &str) -> RGBColor {
    match engine {
        "podmap exact" => RGBColor(31, 119, 180),
        "podmap int8" => RGBColor(255, 127, 14),
        "podmap binary" => RGBColor(44, 160, 44),
        "podmap JSON path" => RGBColor(214, 39, 40),
        "podmap mmap" => RGBColor(31, 119, 180),
        "numpy" => RGBColor(148, 103, 189),
        "numpy 1 thread" => RGBColor(23, 190, 207),
        "numpy on the archive" => RGBColor(188, 189, 34),
        "FAISS IndexFlatIP" => RGBColor(140, 86, 75),
        "usearch exact" => RGBColor(227, 119, 194),
        _ => RGBColor(127, 127, 127),
    }
}

/// The generated datasets (those with a common dimension), by item count.
fn generated(report: &Report) -> Vec<&DatasetResult> {
    let mut sets: Vec<&DatasetResult> = report
        .datasets
        .iter()
        .filter(|d| d.kind == "generated")
        .collect();
    sets.sort_by_key(|d| d.items);
    sets
}

/// One series per engine: `value` of each generated dataset where the engine has one.
fn by_engine(
    report: &Report,
    engines: &[&str],
    value: impl Fn(&DatasetResult, &str) -> Option<f64>,
) -> Vec<Series> {
    engines
        .iter()
        .map(|&engine| Series {
            label: engine.to_owned(),
            color: color(engine),
            points: generated(report)
                .iter()
                .filter_map(|d| Some((d.items as f64, value(d, engine)?)))
                .filter(|(_, y)| y.is_finite() && *y > 0.0)
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

/// Writes the plots into `dir` and returns their file names (empty when nothing to plot).
pub fn write_all(report: &Report, dir: &Path) -> Result<Vec<&'static str>, Box<dyn Error>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let dims = generated(report).first().map_or(0, |d| d.dims);
    let latency = by_engine(report, &ENGINES, |d, e| d.latency(e).map(|l| l.median_ms));
    if !latency.is_empty() {
        log_log(
            &dir.join("latency.svg"),
            &format!("Top-10 query latency, {dims} dims (median, one query at a time)"),
            "items",
            "milliseconds per query",
            &latency,
        )?;
        written.push("latency.svg");
    }
    let first = by_engine(report, &["podmap mmap", "podmap JSON path"], |d, e| {
        d.first_result(e).map(|f| f.best_ms)
    });
    if !first.is_empty() {
        let first: Vec<Series> = first
            .into_iter()
            .map(|mut s| {
                s.label = match s.label.as_str() {
                    "podmap mmap" => "podmap: open archive + first query".into(),
                    _ => "JSON path: load JSON + first query".into(),
                };
                s
            })
            .collect();
        log_log(
            &dir.join("first-result.svg"),
            &format!("Open → first top-10 result, {dims} dims (best of rounds)"),
            "items",
            "milliseconds",
            &first,
        )?;
        written.push("first-result.svg");
    }
    let memory = by_engine(report, &ENGINES, |d, e| {
        d.memory(e).map(|m| m.rss_kib as f64 / 1024.0)
    });
    if !memory.is_empty() {
        log_log(
            &dir.join("memory.svg"),
            &format!("Resident memory after open + one query, {dims} dims (fresh process)"),
            "items",
            "MiB resident (VmRSS)",
            &memory,
        )?;
        written.push("memory.svg");
    }
    if report.datasets.iter().any(|d| !d.recall.is_empty()) {
        recall(&dir.join("recall.svg"), report)?;
        written.push("recall.svg");
    }
    Ok(written)
}

/// Log-log lines with points, legend at the upper left.
fn log_log(path: &Path, title: &str, x_desc: &str, y_desc: &str, series: &[Series]) -> Plot {
    let all = || series.iter().flat_map(|s| s.points.iter());
    let (x0, x1) = all().fold((f64::INFINITY, 0.0f64), |(lo, hi), p| {
        (lo.min(p.0), hi.max(p.0))
    });
    let (y0, y1) = all().fold((f64::INFINITY, 0.0f64), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    let root = SVGBackend::new(path, (960, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (x0 / 1.3..x1 * 1.3).log_scale().with_key_points(
                // The measured item counts themselves.
                series
                    .iter()
                    .flat_map(|s| s.points.iter().map(|p| p.0))
                    .fold(Vec::new(), |mut xs: Vec<f64>, x| {
                        if !xs.contains(&x) {
                            xs.push(x);
                        }
                        xs
                    }),
            ),
            (y0 / 2.0..y1 * 8.0)
                .log_scale()
                .with_key_points(one_two_five(y0 / 2.0, y1 * 8.0)),
        )?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .light_line_style(WHITE)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            if *y >= 1.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.3}").trim_end_matches('0').to_owned()
            }
        })
        .draw()?;
    for s in series {
        let style = s.color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), style))?
            .label(&s.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        chart.draw_series(
            s.points
                .iter()
                .map(|&p| Circle::new(p, 4, s.color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// 1, 2, 5, 10, 20, 50, … between `lo` and `hi`: labels for a log axis.
fn one_two_five(lo: f64, hi: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        for m in [1.0, 2.0, 5.0] {
            let v = decade * m;
            if v >= lo && v <= hi {
                out.push(v);
            }
        }
        decade *= 10.0;
    }
    out
}

/// Recall@10 against oversampling: int8 and binary side by side, a line per dataset.
fn recall(path: &Path, report: &Report) -> Plot {
    let root = SVGBackend::new(path, (1200, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, 2));
    let max_over = report
        .datasets
        .iter()
        .flat_map(|d| d.recall.iter().map(|r| r.oversample))
        .max()
        .unwrap_or(40) as f64;
    let overs: Vec<f64> = report
        .settings
        .oversamples
        .iter()
        .map(|&o| f64::from(o))
        .collect();
    for (panel, mode) in panels.iter().zip(["int8", "binary"]) {
        // Each panel from its own lowest recall (int8's differences are small).
        let lowest = report
            .datasets
            .iter()
            .flat_map(|d| d.recall.iter().filter(|r| r.mode == mode).map(|r| r.mean))
            .fold(1.0f64, f64::min);
        let y0 = ((lowest - 0.005) * 20.0).floor() / 20.0;
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("recall@10, {mode} codes + rescoring"),
                ("sans-serif", 20),
            )
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d(
                (0.9..max_over * 1.2)
                    .log_scale()
                    .with_key_points(overs.clone()),
                y0..1.01,
            )?;
        chart
            .configure_mesh()
            .x_desc("oversample (candidates per result)")
            .y_desc("mean recall@10")
            .light_line_style(WHITE)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.2}"))
            .draw()?;
        for (i, d) in report.datasets.iter().enumerate() {
            let points: Vec<(f64, f64)> = d
                .recall
                .iter()
                .filter(|r| r.mode == mode)
                .map(|r| (f64::from(r.oversample), r.mean))
                .collect();
            if points.is_empty() {
                continue;
            }
            let color = Palette99::pick(i).to_rgba();
            let style = color.stroke_width(2);
            chart
                .draw_series(LineSeries::new(points.iter().copied(), style))?
                .label(format!("{} ({} × {})", d.name, d.items, d.dims))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
