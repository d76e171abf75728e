//! The chart: one horizontal bar per target at its median wall time; for the targets that boot
//! a VM the median run's bar is split into its phases. Figures from a nested or emulated
//! machine carry that label in red under the chart.

use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use super::phases::PHASES;
use super::report::Report;
use super::BenchError;

const WIDTH: u32 = 960;
const BAR_COLOR: RGBColor = RGBColor(70, 120, 180);
const PHASE_COLORS: [RGBColor; PHASES.len()] = [
    RGBColor(160, 160, 160),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 114, 178),
    RGBColor(0, 158, 115),
    RGBColor(240, 228, 66),
    RGBColor(204, 121, 167),
    RGBColor(213, 94, 0),
];

/// One bar: a target's name and the segments that make up its median run.
struct Bar {
    name: String,
    /// (phase index or None for a plain bar, start ms, end ms)
    segments: Vec<(Option<usize>, f64, f64)>,
    total: f64,
    label: String,
}

fn bars(report: &Report) -> Vec<Bar> {
    let mut bars = Vec::new();
    for t in &report.targets {
        let (Some(stats), Some(median)) = (&t.stats, t.median_run()) else {
            continue;
        };
        let total = stats.wall_ms.p50;
        let mut segments = Vec::new();
        match &median.phases {
            Some(phases) => {
                let mut at = 0.0;
                for (i, p) in phases.iter().enumerate() {
                    let len = p.ms.max(0.0);
                    segments.push((Some(i), at, at + len));
                    at += len;
                }
            }
            None => segments.push((None, 0.0, total)),
        }
        bars.push(Bar {
            name: format!("{} ({})", t.name, t.kind),
            segments,
            total,
            label: format!(
                "{:.1} ms  (min {:.1}, p90 {:.1})",
                total, stats.wall_ms.min, stats.wall_ms.p90
            ),
        });
    }
    bars
}

/// Draws the chart of `report` into the SVG file `path`.
pub fn write(report: &Report, path: &Path) -> Result<(), BenchError> {
    let err = |e: &dyn std::fmt::Display| BenchError::Chart {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let bars = bars(report);
    if bars.is_empty() {
        return Err(err(&"no target produced figures (all were skipped)"));
    }
    let has_phases = bars
        .iter()
        .any(|b| b.segments.iter().any(|s| s.0.is_some()));
    let footer_height = if has_phases { 88 } else { 64 };
    let height = 126 + footer_height + 60 * bars.len() as u32;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (plot, footer) = root.split_vertically(height - footer_height);
    let xmax = bars.iter().map(|b| b.total).fold(0.0, f64::max) * 1.45;
    let names: Vec<String> = bars.iter().map(|b| b.name.clone()).collect();
    let title = format!(
        "nook bench: {} {}, median of {} runs (wall time, ms)",
        report.image,
        report.cmd.join(" "),
        report.runs
    );
    let mut chart = ChartBuilder::on(&plot)
        .caption(title, ("sans-serif", 18))
        .margin(14)
        .x_label_area_size(36)
        .y_label_area_size(150)
        .build_cartesian_2d(0f64..xmax, (0..bars.len() - 1).into_segmented())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("milliseconds")
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(|e| err(&e))?;

    let rect = |row: usize, x0: f64, x1: f64, color: RGBColor| {
        let mut r = Rectangle::new(
            [
                (x0, SegmentValue::Exact(row)),
                (x1, SegmentValue::Exact(row + 1)),
            ],
            color.filled(),
        );
        r.set_margin(12, 12, 0, 0);
        r
    };
    let plain: Vec<_> = bars
        .iter()
        .enumerate()
        .flat_map(|(row, b)| {
            b.segments
                .iter()
                .filter(|s| s.0.is_none())
                .map(move |s| rect(row, s.1, s.2, BAR_COLOR))
        })
        .collect();
    chart.draw_series(plain).map_err(|e| err(&e))?;
    for (i, color) in PHASE_COLORS.iter().copied().enumerate() {
        let segs: Vec<_> = bars
            .iter()
            .enumerate()
            .flat_map(|(row, b)| {
                b.segments
                    .iter()
                    .filter(move |s| s.0 == Some(i))
                    .map(move |s| rect(row, s.1, s.2, color))
            })
            .collect();
        if segs.is_empty() {
            continue;
        }
        chart.draw_series(segs).map_err(|e| err(&e))?;
    }
    let labels: Vec<_> = bars
        .iter()
        .enumerate()
        .map(|(row, b)| {
            Text::new(
                b.label.clone(),
                (b.total + xmax * 0.01, SegmentValue::CenterOf(row)),
                ("sans-serif", 13).into_font(),
            )
        })
        .collect();
    chart.draw_series(labels).map_err(|e| err(&e))?;

    let note = match &report.machine.nested {
        Some(label) => format!("NESTED/EMULATED: {label}"),
        None => "measured natively".to_string(),
    };
    let style = ("sans-serif", 13).into_font().color(&RGBColor(190, 30, 30));
    footer
        .draw(&Text::new(note, (14, 6), style))
        .map_err(|e| err(&e))?;
    let skipped: Vec<&str> = report
        .targets
        .iter()
        .filter(|t| t.stats.is_none())
        .map(|t| t.name)
        .collect();
    let mut y = 24;
    if has_phases {
        // The phase colours, in order, in one row under the chart.
        let mut x = 14;
        for (i, name) in PHASES.iter().enumerate() {
            let label = name.replace('_', " ");
            footer
                .draw(&Rectangle::new(
                    [(x, y + 2), (x + 12, y + 14)],
                    PHASE_COLORS[i].filled(),
                ))
                .map_err(|e| err(&e))?;
            x += 16;
            footer
                .draw(&Text::new(
                    label.clone(),
                    (x, y + 2),
                    ("sans-serif", 12).into_font(),
                ))
                .map_err(|e| err(&e))?;
            x += 7 * label.len() as i32 + 18;
        }
        y += 22;
    }
    let mut lines = vec![format!("machine: {}", report.machine.describe())];
    if !skipped.is_empty() {
        lines.push(format!(
            "skipped (reasons in the JSON report): {}",
            skipped.join(", ")
        ));
    }
    for (i, line) in lines.into_iter().enumerate() {
        footer
            .draw(&Text::new(
                line,
                (14, y + 16 * i as i32),
                ("sans-serif", 12).into_font(),
            ))
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::machine::{Facts, Machine};
    use crate::bench::phases::Phase;
    use crate::bench::report::{Measured, RunSample, TargetReport, SCHEMA_VERSION};
    use crate::bench::{Skip, Target};

    fn sample(wall: f64, phases: bool) -> RunSample {
        RunSample {
            wall_ms: wall,
            cpu_ms: 1.0,
            max_rss_kib: 1000,
            phases: phases.then(|| {
                PHASES
                    .iter()
                    .map(|n| Phase {
                        name: n.to_string(),
                        ms: wall / 7.0,
                    })
                    .collect()
            }),
        }
    }

    #[test]
    fn the_chart_shows_bars_phases_skips_and_the_nested_label() {
        let measured = |phases| Measured {
            samples: vec![
                sample(70.0, phases),
                sample(140.0, phases),
                sample(210.0, phases),
            ],
            ..Measured::default()
        };
        let report = Report {
            version: SCHEMA_VERSION,
            command: vec!["nook".into(), "bench".into()],
            image: "busybox".into(),
            cmd: vec!["true".into()],
            runs: 3,
            warmup: 0,
            parallel: None,
            machine: Machine::from_facts(&Facts {
                in_rig: true,
                ..Facts::default()
            }),
            targets: vec![
                TargetReport::new(Target::Vm, Ok(measured(true))),
                TargetReport::new(Target::Container, Ok(measured(false))),
                TargetReport::new(Target::Crun, Err(Skip("crun is not on PATH".into()))),
            ],
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.svg");
        write(&report, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        for want in [
            "vm (column)",
            "container (column)",
            "kernel boot",
            "140.0 ms",
            "NESTED/EMULATED: nested QEMU TCG rig",
            "skipped (reasons in the JSON report): crun",
        ] {
            assert!(svg.contains(want), "{want} missing from the chart");
        }
        // Background, the container's bar, seven phase segments, seven legend squares.
        let rects = svg.matches("<rect").count();
        assert!(rects >= 1 + 1 + 7 + 7, "{rects} rectangles");

        let none = Report {
            targets: vec![TargetReport::new(Target::Crun, Err(Skip("no".into())))],
            ..report
        };
        let e = write(&none, &path).unwrap_err().to_string();
        assert!(e.contains("all were skipped"), "{e}");
    }
}
