//! `chart`: latency percentiles (from `rtt` sweeps, or `fanout` results)
//! and server memory per connection (from `idle` results) against the
//! number of clients, one line per server; or, from `soak` samples, the
//! server's memory and open files against time. SVG or PNG, with plotters.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use plotters::coord::Shift;
use plotters::coord::ranged1d::AsRangedCoord;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use serde_json::Value;

use crate::cli::ChartArgs;

/// Fonts tried, in order, for text (plotters draws it from a TrueType file).
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
];

/// One line: (clients, value) points of one server.
type Lines = BTreeMap<String, Vec<(f64, f64)>>;

/// The points the chart draws.
#[derive(Debug, Default)]
struct Data {
    /// Median latency.
    p50: Lines,
    /// Tail latency: p95 of an `rtt` step (as websocket-bench), p99 of a `fanout`.
    tail: Lines,
    /// Which percentile `tail` is.
    tail_name: &'static str,
    memory: Lines,
}

/// Reads the results and draws the chart.
pub fn draw(args: &ChartArgs) -> anyhow::Result<()> {
    let mut results = Vec::new();
    for path in &args.input {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        results.extend(
            text.lines()
                .filter(|l| l.starts_with('{'))
                .filter_map(|l| serde_json::from_str::<Value>(l).ok()),
        );
    }
    let data = collect(&results, &args.latency_case, &args.memory_case);
    let soak = collect_soak(&results);
    if data.tail.is_empty() && data.memory.is_empty() {
        if soak.rss.is_empty() {
            bail!(
                "no rtt or fanout results of case {}*, no idle results of case {}*, no soak samples",
                args.latency_case,
                args.memory_case
            );
        }
        return save(&args.out, &soak);
    }
    save(&args.out, &data)
}

/// How large a chart is, in pixels: the picture, its left panel, and
/// each panel's text and margins.
struct Layout {
    size: (u32, u32),
    split: u32,
    caption: u32,
    text: u32,
    margin: u32,
    x_labels: u32,
    y_labels: u32,
}

/// Two panels side by side.
trait Chart {
    /// Its layout.
    const LAYOUT: Layout;
    /// Draws the left and the right panel.
    fn draw<DB: DrawingBackend>(&self, left: &Area<DB>, right: &Area<DB>) -> Drawn<DB>;
}

type Area<DB> = DrawingArea<DB, Shift>;
type DrawError<DB> = DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>;
type Drawn<DB> = Result<(), DrawError<DB>>;
/// A panel with x and y axes.
type Panel<'a, DB, X, Y> = ChartContext<'a, DB, Cartesian2d<X, Y>>;

/// Draws `chart` into `out`, SVG or PNG by its extension.
fn save<C: Chart>(out: &Path, chart: &C) -> anyhow::Result<()> {
    register_font()?;
    match out.extension().and_then(|e| e.to_str()) {
        Some("svg") => render(
            SVGBackend::new(out, C::LAYOUT.size).into_drawing_area(),
            chart,
        ),
        Some("png") => render(
            BitMapBackend::new(out, C::LAYOUT.size).into_drawing_area(),
            chart,
        ),
        _ => bail!("--out must end in .svg or .png"),
    }?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

fn collect(results: &[Value], latency_case: &str, memory_case: &str) -> Data {
    let mut data = Data::default();
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
    for r in results {
        let (bench, label, case) = (text(r, "bench"), text(r, "label"), text(r, "case"));
        let latency = match bench.as_str() {
            "rtt" => (
                num(r, "clients"),
                num(r, "median_ms"),
                num(r, "p95_ms"),
                "p95",
            ),
            "fanout" => (
                num(r, "subscribed"),
                num(r, "p50_ms"),
                num(r, "p99_ms"),
                "p99",
            ),
            _ => (None, None, None, ""),
        };
        if case.starts_with(latency_case) {
            if let (Some(x), Some(median), Some(tail), name) = latency {
                data.p50.entry(label.clone()).or_default().push((x, median));
                data.tail.entry(label).or_default().push((x, tail));
                data.tail_name = name;
            }
        } else if bench == "idle"
            && case.starts_with(memory_case)
            && let (Some(x), Some(kib)) = (num(r, "held"), num(r, "kib_per_conn"))
            // Below zero is the server handing back start-up memory, not a
            // connection's cost: left out.
            && kib > 0.0
        {
            data.memory.entry(label).or_default().push((x, kib));
        }
    }
    for lines in [&mut data.p50, &mut data.tail, &mut data.memory] {
        for points in lines.values_mut() {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
    }
    data
}

/// One line of a panel: its name, its points and its colour.
type Line<'a> = (&'a str, &'a [(f64, f64)], RGBColor);

/// A soak's samples against minutes since the first.
#[derive(Debug, Default)]
struct Soak {
    /// Server RSS, MiB.
    rss: Vec<(f64, f64)>,
    /// Server open files.
    fds: Vec<(f64, f64)>,
    /// `hearth_connections`.
    connections: Vec<(f64, f64)>,
    /// `hearth_heap_bytes`, MiB.
    heap: Vec<(f64, f64)>,
    /// `hearth_sqlite_memory_bytes`, MiB.
    sqlite: Vec<(f64, f64)>,
}

fn collect_soak(results: &[Value]) -> Soak {
    let mut soak = Soak::default();
    let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
    for r in results
        .iter()
        .filter(|r| r.get("bench").and_then(Value::as_str) == Some("soak-sample"))
    {
        let Some(t) = num(r, "t_s").map(|s| s / 60.0) else {
            continue;
        };
        if let Some(kib) = num(r, "rss_kib") {
            soak.rss.push((t, kib / 1024.0));
        }
        if let Some(fds) = num(r, "fds") {
            soak.fds.push((t, fds));
        }
        if let Some(c) = num(r, "connections") {
            soak.connections.push((t, c));
        }
        if let Some(kib) = num(r, "heap_kib") {
            soak.heap.push((t, kib / 1024.0));
        }
        if let Some(kib) = num(r, "sqlite_kib") {
            soak.sqlite.push((t, kib / 1024.0));
        }
    }
    soak
}

impl Chart for Soak {
    #[rustfmt::skip] // the numbers side by side
    const LAYOUT: Layout = Layout { size: (1000, 360), split: 500, caption: 18, text: 12, margin: 12, x_labels: 36, y_labels: 56 };

    /// Memory on the left, open files and connections on the right.
    fn draw<DB: DrawingBackend>(&self, left: &Area<DB>, right: &Area<DB>) -> Drawn<DB> {
        over_time(
            left,
            "server memory",
            "MiB",
            &[
                ("RSS", &self.rss[..], RGBColor(200, 40, 40)),
                ("heap in use", &self.heap[..], RGBColor(30, 150, 70)),
                ("SQLite", &self.sqlite[..], RGBColor(220, 130, 20)),
            ],
        )?;
        over_time(
            right,
            "server open files and connections",
            "count",
            &[
                ("open files", &self.fds[..], RGBColor(30, 90, 200)),
                (
                    "hearth_connections",
                    &self.connections[..],
                    RGBColor(120, 120, 120),
                ),
            ],
        )
    }
}

/// One panel of lines against minutes; the y axis starts at zero, so a
/// flat line looks flat.
fn over_time<DB: DrawingBackend>(
    area: &Area<DB>,
    caption: &str,
    unit: &str,
    lines: &[Line<'_>],
) -> Drawn<DB> {
    let points = lines.iter().flat_map(|l| l.1.iter());
    let (t_max, y_max) = points.fold((1.0f64, 1.0f64), |(t, y), p| (t.max(p.0), y.max(p.1)));
    let layout = &Soak::LAYOUT;
    let mut chart = panel(area, layout, caption, 0.0..t_max, 0.0..y_max * 1.15)?;
    chart
        .configure_mesh()
        .x_desc("minutes")
        .y_desc(unit)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(("sans-serif", layout.text))
        .draw()?;
    for &(label, points, c) in lines {
        line(&mut chart, label, points.iter().copied(), c)?;
    }
    legend(&mut chart, layout, SeriesLabelPosition::LowerRight)
}

/// A panel's frame: its caption and its axes' ranges.
fn panel<'a, DB: DrawingBackend, X: AsRangedCoord, Y: AsRangedCoord>(
    area: &'a Area<DB>,
    layout: &Layout,
    caption: &str,
    x: X,
    y: Y,
) -> Result<Panel<'a, DB, X::CoordDescType, Y::CoordDescType>, DrawError<DB>> {
    ChartBuilder::on(area)
        .caption(caption, ("sans-serif", layout.caption))
        .margin(layout.margin)
        .x_label_area_size(layout.x_labels)
        .y_label_area_size(layout.y_labels)
        .build_cartesian_2d(x, y)
}

/// One solid line, named in the legend.
fn line<DB: DrawingBackend, CT: CoordTranslate<From = (f64, f64)>>(
    chart: &mut ChartContext<'_, DB, CT>,
    label: &str,
    points: impl IntoIterator<Item = (f64, f64)>,
    c: RGBColor,
) -> Drawn<DB> {
    chart
        .draw_series(LineSeries::new(points, c.stroke_width(2)))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    Ok(())
}

/// One line with a dot at each point, named in the legend.
fn line_with_points<DB: DrawingBackend, CT: CoordTranslate<From = (f64, f64)>>(
    chart: &mut ChartContext<'_, DB, CT>,
    label: &str,
    points: &[(f64, f64)],
    c: RGBColor,
) -> Drawn<DB> {
    line(chart, label, points.iter().copied(), c)?;
    chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
    Ok(())
}

/// The axes of a panel against clients, its values on a log scale.
fn log_mesh<DB: DrawingBackend>(
    chart: &mut Panel<'_, DB, RangedCoordf64, LogCoord<f64>>,
    x_desc: &str,
    y_desc: &str,
) -> Drawn<DB> {
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .label_style(("sans-serif", Data::LAYOUT.text))
        .draw()
}

/// The box that names each line.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    layout: &Layout,
    position: SeriesLabelPosition,
) -> Drawn<DB> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", layout.text))
        .position(position)
        .draw()
}

fn register_font() -> anyhow::Result<()> {
    let path = FONTS
        .iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| {
            anyhow!("no TrueType font found (tried {FONTS:?}); apt-get install fonts-dejavu-core")
        })?;
    let bytes: &'static [u8] = Box::leak(std::fs::read(path)?.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{path} is not a usable font"))?;
    Ok(())
}

fn color(label: &str, i: usize) -> RGBColor {
    match label {
        "hearth" => RGBColor(200, 40, 40),
        "reference" => RGBColor(30, 90, 200),
        "rails" => RGBColor(40, 150, 60),
        "baseline" => RGBColor(230, 140, 20),
        _ => {
            let (r, g, b) = Palette99::pick(i).to_rgba().rgb();
            RGBColor(r, g, b)
        }
    }
}

/// Fills the background and draws the two panels.
fn render<DB: DrawingBackend, C: Chart>(root: Area<DB>, chart: &C) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let fail = |e: DrawError<DB>| anyhow!("drawing the chart: {e:?}");
    root.fill(&WHITE).map_err(fail)?;
    let (left, right) = root.split_horizontally(C::LAYOUT.split);
    chart.draw(&left, &right).map_err(fail)?;
    root.present().map_err(fail)?;
    Ok(())
}

fn x_max(lines: &[&Lines]) -> f64 {
    lines
        .iter()
        .flat_map(|l| l.values().flatten())
        .map(|p| p.0)
        .fold(1.0, f64::max)
        * 1.05
}

impl Chart for Data {
    #[rustfmt::skip] // the numbers side by side
    const LAYOUT: Layout = Layout { size: (1400, 560), split: 700, caption: 22, text: 14, margin: 16, x_labels: 44, y_labels: 64 };

    /// Latency on the left, memory per idle connection on the right.
    fn draw<DB: DrawingBackend>(&self, left: &Area<DB>, right: &Area<DB>) -> Drawn<DB> {
        self.latency_panel(left)?;
        self.memory_panel(right)
    }
}

impl Data {
    /// Latency against clients, log scale: solid the tail, dashed the median.
    fn latency_panel<DB: DrawingBackend>(&self, area: &Area<DB>) -> Drawn<DB> {
        let values = self.p50.values().chain(self.tail.values()).flatten();
        let (lo, hi) = values.fold((f64::MAX, 0.0f64), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
        let (lo, hi) = if hi > 0.0 {
            ((lo.max(0.01)) / 2.0, hi * 2.0)
        } else {
            (0.1, 10.0)
        };
        let caption = format!(
            "broadcast latency (solid {}, dashed median)",
            self.tail_name
        );
        let x = 0.0..x_max(&[&self.tail]);
        let mut chart = panel(area, &Self::LAYOUT, &caption, x, (lo..hi).log_scale())?;
        log_mesh(&mut chart, "clients", "latency, ms (log)")?;
        for (i, (label, points)) in self.tail.iter().enumerate() {
            let c = color(label, i);
            line_with_points(&mut chart, label, points, c)?;
            if let Some(p50) = self.p50.get(label) {
                chart.draw_series(DashedLineSeries::new(p50.clone(), 6, 4, c.stroke_width(1)))?;
            }
        }
        legend(&mut chart, &Self::LAYOUT, SeriesLabelPosition::UpperLeft)
    }

    /// Memory per idle connection against connections held, log scale: the
    /// servers differ by 50×.
    fn memory_panel<DB: DrawingBackend>(&self, area: &Area<DB>) -> Drawn<DB> {
        let floor = 0.5;
        let hi = self
            .memory
            .values()
            .flatten()
            .map(|p| p.1)
            .fold(1.0, f64::max)
            * 2.0;
        let caption = "server memory per idle connection";
        let x = 0.0..x_max(&[&self.memory]);
        let mut chart = panel(area, &Self::LAYOUT, caption, x, (floor..hi).log_scale())?;
        log_mesh(
            &mut chart,
            "connections held",
            "KiB RSS per connection (log)",
        )?;
        for (i, (label, points)) in self.memory.iter().enumerate() {
            let points: Vec<(f64, f64)> = points.iter().map(|&(x, y)| (x, y.max(floor))).collect();
            line_with_points(&mut chart, label, &points, color(label, i))?;
        }
        legend(&mut chart, &Self::LAYOUT, SeriesLabelPosition::UpperRight)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_points_by_bench_and_case() {
        let lines = [
            r#"{"bench":"rtt","label":"hearth","case":"rtt","clients":1000,"median_ms":2.0,"p95_ms":9.0}"#,
            r#"{"bench":"fanout","label":"hearth","case":"fanout-1k","subscribed":1000,"p50_ms":1.0,"p99_ms":5.0}"#,
            r#"{"bench":"idle","label":"rails","case":"idle","held":5000,"kib_per_conn":80.5}"#,
            r#"{"bench":"idle","label":"rails","case":"idle","held":1000,"kib_per_conn":90.0}"#,
        ];
        let results: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let data = collect(&results, "rtt", "idle");
        assert_eq!(data.tail["hearth"], [(1000.0, 9.0)]);
        assert_eq!(data.p50["hearth"], [(1000.0, 2.0)]);
        assert_eq!(data.tail_name, "p95");
        assert_eq!(data.memory["rails"], [(1000.0, 90.0), (5000.0, 80.5)]);
    }

    #[test]
    fn soak_samples_become_rss_and_open_files_against_minutes() {
        let lines = [
            r#"{"bench":"soak-sample","t_s":0.0,"rss_kib":102400,"fds":5030,"connections":4990.0}"#,
            r#"{"bench":"soak-sample","t_s":600.0,"rss_kib":104448,"fds":5031,"connections":null}"#,
            r#"{"bench":"soak","label":"hearth","case":"soak-30m","clients":5000}"#,
        ];
        let results: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let soak = collect_soak(&results);
        assert_eq!(soak.rss, [(0.0, 100.0), (10.0, 102.0)]);
        assert_eq!(soak.fds, [(0.0, 5030.0), (10.0, 5031.0)]);
        assert_eq!(soak.connections, [(0.0, 4990.0)]);
    }
}
