//! SVG charts of the growth curves, drawn with `plotters`' SVG backend
//! (text is left to the SVG viewer: no font files are read).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use plotters::prelude::*;

use crate::growth::{Cost, GroupPoint, GrowthReport, KeyringPoint};

/// Chart size, pixels.
const SIZE: (u32, u32) = (760, 440);
/// Colours of the series, in order.
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// One curve: its name and its points.
struct Series {
    name: &'static str,
    points: Vec<(f64, f64)>,
}

/// One chart.
struct Chart<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    /// Both axes logarithmic (else both linear from 0).
    log: bool,
    series: Vec<Series>,
}

/// Writes every chart of `report` into `dir` (created if missing) and
/// returns the files written. Families without points are skipped.
pub fn write_all(report: &GrowthReport, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the charts directory {}", dir.display()))?;
    let mut written = Vec::new();
    for (file, chart) in charts(report) {
        if chart.series.iter().all(|s| s.points.is_empty()) {
            continue;
        }
        let path = dir.join(file);
        draw(&chart, &path).with_context(|| format!("cannot draw {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// The charts of a report: file name and content.
fn charts(r: &GrowthReport) -> Vec<(&'static str, Chart<'static>)> {
    let mut all = device_charts(r);
    all.push(keyring_chart(r));
    all
}

/// A curve over the group sizes.
fn by_devices(r: &GrowthReport, name: &'static str, f: impl Fn(&GroupPoint) -> f64) -> Series {
    Series {
        name,
        points: r.groups.iter().map(|g| (g.devices as f64, f(g))).collect(),
    }
}

/// The charts by group size.
fn device_charts(r: &GrowthReport) -> Vec<(&'static str, Chart<'static>)> {
    let walls = |name, f: fn(&GroupPoint) -> &Cost| by_devices(r, name, |g| f(g).wall_ms);
    let commands =
        |name, f: fn(&GroupPoint) -> &Cost| by_devices(r, name, |g| f(g).commands as f64);
    vec![
        (
            "growth-devices-wall.svg",
            Chart {
                title: "Wall time of one operation by group size",
                x_desc: "devices in the group",
                y_desc: "wall time (ms)",
                log: false,
                series: vec![
                    walls("send to one device", |g| &g.send_one),
                    walls("broadcast to all", |g| &g.broadcast),
                    walls("idle sync round", |g| &g.idle_round),
                    walls("sync round sending one change", |g| &g.change_round),
                    walls("rounds applying it (all devices)", |g| &g.change_apply),
                ],
            },
        ),
        (
            "growth-devices-commands.svg",
            Chart {
                title: "IMAP commands of one operation by group size",
                x_desc: "devices in the group",
                y_desc: "IMAP commands (round trips)",
                log: false,
                series: vec![
                    commands("send to one device", |g| &g.send_one),
                    commands("broadcast to all", |g| &g.broadcast),
                    commands("idle sync round", |g| &g.idle_round),
                    commands("sync round sending one change", |g| &g.change_round),
                    commands("rounds applying it (all devices)", |g| &g.change_apply),
                    commands("join (pair + join, both sides)", |g| &g.join),
                ],
            },
        ),
        (
            "growth-devices-join.svg",
            Chart {
                title: "Joining the group by group size",
                x_desc: "devices in the group after the join",
                y_desc: "wall time (ms)",
                log: false,
                series: vec![
                    walls("pair + join (IDLE waits)", |g| &g.join),
                    walls("then rounds of all devices until quiet", |g| &g.join_settle),
                ],
            },
        ),
        (
            "growth-devices-footprint.svg",
            Chart {
                title: "Messages on the server by group size",
                x_desc: "devices in the group",
                y_desc: "messages in the SMA folders",
                log: false,
                series: vec![
                    by_devices(r, "all devices synced", |g| {
                        g.footprint_settled.messages as f64
                    }),
                    by_devices(r, "one change sent, not yet read", |g| {
                        g.footprint_after_change.messages as f64
                    }),
                ],
            },
        ),
    ]
}

/// The chart by keyring size.
fn keyring_chart(r: &GrowthReport) -> (&'static str, Chart<'static>) {
    let by_entries = |name, f: fn(&KeyringPoint) -> f64| Series {
        name,
        points: r
            .keyrings
            .iter()
            .map(|k| (k.entries as f64, f(k)))
            .collect(),
    };
    (
        "growth-keyring.svg",
        Chart {
            title: "Sync and bootstrap by keyring size (log-log)",
            x_desc: "keyring entries",
            y_desc: "wall time (ms)",
            log: true,
            series: vec![
                by_entries("bootstrap: pair, join, catch-up", |k| {
                    k.bootstrap.total_secs * 1000.0
                }),
                by_entries("idle sync round", |k| k.idle_round.wall_ms),
                by_entries("sync round sending one change", |k| k.change_round.wall_ms),
                by_entries("round applying it", |k| k.change_apply.wall_ms),
            ],
        },
    )
}

/// The range of one axis over every point: from 0 (linear) or a little
/// below the smallest positive value (log), to a little above the largest.
fn range(values: impl Iterator<Item = f64> + Clone, log: bool) -> (f64, f64) {
    let max = values.clone().fold(0.0, f64::max).max(1e-3);
    if log {
        let min = values.filter(|v| *v > 0.0).fold(max, f64::min);
        (min / 1.5, max * 1.5)
    } else {
        (0.0, max * 1.08)
    }
}

/// An axis label: whole numbers from 10 up, two decimals at most below.
fn tick(v: &f64) -> String {
    if v.abs() >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{}", (v * 100.0).round() / 100.0)
    }
}

/// Draws `chart` as an SVG file at `path`.
fn draw(chart: &Chart<'_>, path: &Path) -> Result<()> {
    let points = chart.series.iter().flat_map(|s| s.points.iter());
    let (x0, x1) = range(points.clone().map(|p| p.0), chart.log);
    let (y0, y1) = range(points.map(|p| p.1), chart.log);
    // About one label per unit on short linear axes, else at most 12.
    let x_labels = if chart.log {
        10
    } else {
        ((x1 - x0).ceil() as usize).clamp(2, 12)
    };
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(chart.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(64);
    if chart.log {
        let mut c = builder.build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())?;
        c.configure_mesh()
            .x_desc(chart.x_desc)
            .y_desc(chart.y_desc)
            .x_labels(x_labels)
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .draw()?;
        draw_series(&mut c, &chart.series)?;
    } else {
        let mut c = builder.build_cartesian_2d(x0..x1, y0..y1)?;
        c.configure_mesh()
            .x_desc(chart.x_desc)
            .y_desc(chart.y_desc)
            .x_labels(x_labels)
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .draw()?;
        draw_series(&mut c, &chart.series)?;
    }
    root.present()?;
    drop(root);
    let text = std::fs::read_to_string(path)?;
    if !text.contains("<svg") {
        bail!("{} was written without an <svg> element", path.display());
    }
    Ok(())
}

/// Lines with point markers for every series, and the legend.
fn draw_series<'a, DB, CT>(c: &mut ChartContext<'a, DB, CT>, series: &[Series]) -> Result<()>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    CT: CoordTranslate<From = (f64, f64)>,
{
    for (s, colour) in series.iter().zip(COLOURS.iter().cycle()) {
        let colour = *colour;
        c.draw_series(LineSeries::new(s.points.clone(), colour.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?
            .label(s.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
        c.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::growth::{Footprint, GroupPoint};

    fn cost(n: usize) -> Cost {
        Cost {
            wall_ms: n as f64 * 1.5,
            commands: 2 * n as u64,
            messages: n,
            bytes: 2000 * n,
        }
    }

    fn point(n: usize) -> GroupPoint {
        let fp = Footprint {
            messages: n,
            bytes: 2200 * n as u64,
        };
        GroupPoint {
            devices: n,
            send_one: cost(1),
            broadcast: cost(n - 1),
            idle_round: cost(1),
            change_round: cost(n - 1),
            change_apply: cost(n - 1),
            join: cost(n),
            join_settle: cost(n),
            footprint_settled: fp.clone(),
            footprint_after_change: fp,
            secs: 1.0,
        }
    }

    #[test]
    fn writes_one_svg_per_family_and_skips_families_without_points() {
        let report = GrowthReport {
            key_bytes: 390,
            reps: 5,
            groups: vec![point(2), point(5), point(10)],
            keyrings: Vec::new(),
        };
        let dir = tempfile::tempdir().unwrap();
        let written = write_all(&report, dir.path()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "growth-devices-wall.svg",
                "growth-devices-commands.svg",
                "growth-devices-join.svg",
                "growth-devices-footprint.svg",
            ]
        );
        for p in &written {
            let svg = std::fs::read_to_string(p).unwrap();
            assert!(svg.starts_with("<svg"), "{}", p.display());
            assert!(svg.contains("devices in the group"));
            assert!(svg.contains("<polyline"));
        }
        assert!(!dir.path().join("growth-keyring.svg").exists());
    }

    #[test]
    fn axis_ranges_and_labels() {
        let v = [2.0, 50.0, 0.0];
        assert_eq!(range(v.iter().copied(), false), (0.0, 54.0));
        let (lo, hi) = range([1000.0, 100_000.0].into_iter(), true);
        assert!(lo < 1000.0 && lo > 0.0 && hi > 100_000.0);
        assert_eq!(tick(&100_000.0), "100000");
        assert_eq!(tick(&2.5), "2.5");
        assert_eq!(tick(&0.333), "0.33");
    }
}
