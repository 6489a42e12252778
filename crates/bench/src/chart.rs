//! `chart`: latency percentiles (from `rtt` sweeps, or `fanout` results)
//! and server memory per connection (from `idle` results) against the
//! number of clients, one line per server; or, from `soak` samples, the
//! server's memory and open files against time. SVG or PNG, with plotters.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use plotters::coord::Shift;
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
    if data.tail.is_empty() && data.memory.is_empty() && !soak.rss.is_empty() {
        register_font()?;
        let size = (1000, 360);
        match args.out.extension().and_then(|e| e.to_str()) {
            Some("svg") => render_soak(SVGBackend::new(&args.out, size).into_drawing_area(), &soak),
            Some("png") => render_soak(
                BitMapBackend::new(&args.out, size).into_drawing_area(),
                &soak,
            ),
            _ => bail!("--out must end in .svg or .png"),
        }?;
        eprintln!("wrote {}", args.out.display());
        return Ok(());
    }
    if data.tail.is_empty() && data.memory.is_empty() {
        bail!(
            "no rtt or fanout results of case {}*, no idle results of case {}*, no soak samples",
            args.latency_case,
            args.memory_case
        );
    }
    register_font()?;
    let size = (1400, 560);
    match args.out.extension().and_then(|e| e.to_str()) {
        Some("svg") => render(SVGBackend::new(&args.out, size).into_drawing_area(), &data),
        Some("png") => render(
            BitMapBackend::new(&args.out, size).into_drawing_area(),
            &data,
        ),
        _ => bail!("--out must end in .svg or .png"),
    }?;
    eprintln!("wrote {}", args.out.display());
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

fn render_soak<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, soak: &Soak) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let fail = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing the chart: {e:?}");
    root.fill(&WHITE).map_err(fail)?;
    let (left, right) = root.split_horizontally(500);
    let red = RGBColor(200, 40, 40);
    let blue = RGBColor(30, 90, 200);
    let gray = RGBColor(120, 120, 120);
    let green = RGBColor(30, 150, 70);
    let orange = RGBColor(220, 130, 20);
    over_time(
        &left,
        "server memory",
        "MiB",
        &[
            ("RSS", &soak.rss[..], red),
            ("heap in use", &soak.heap[..], green),
            ("SQLite", &soak.sqlite[..], orange),
        ],
    )
    .map_err(fail)?;
    over_time(
        &right,
        "server open files and connections",
        "count",
        &[
            ("open files", &soak.fds[..], blue),
            ("hearth_connections", &soak.connections[..], gray),
        ],
    )
    .map_err(fail)?;
    root.present().map_err(fail)?;
    Ok(())
}

/// One panel of lines against minutes; the y axis starts at zero, so a
/// flat line looks flat.
fn over_time<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    unit: &str,
    lines: &[Line<'_>],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let points = lines.iter().flat_map(|l| l.1.iter());
    let (t_max, y_max) = points.fold((1.0f64, 1.0f64), |(t, y), p| (t.max(p.0), y.max(p.1)));
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max * 1.15)?;
    chart
        .configure_mesh()
        .x_desc("minutes")
        .y_desc(unit)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(("sans-serif", 12))
        .draw()?;
    for &(label, points, c) in lines {
        chart
            .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    Ok(())
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

fn render<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, data: &Data) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let fail = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing the chart: {e:?}");
    root.fill(&WHITE).map_err(fail)?;
    let (left, right) = root.split_horizontally(700);
    latency_panel(&left, data).map_err(fail)?;
    memory_panel(&right, data).map_err(fail)?;
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

fn latency_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    data: &Data,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let values = data.p50.values().chain(data.tail.values()).flatten();
    let (lo, hi) = values.fold((f64::MAX, 0.0f64), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    let (lo, hi) = if hi > 0.0 {
        ((lo.max(0.01)) / 2.0, hi * 2.0)
    } else {
        (0.1, 10.0)
    };
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "broadcast latency (solid {}, dashed median)",
                data.tail_name
            ),
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max(&[&data.tail]), (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("clients")
        .y_desc("latency, ms (log)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .label_style(("sans-serif", 14))
        .draw()?;
    for (i, (label, points)) in data.tail.iter().enumerate() {
        let c = color(label, i);
        chart
            .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
        if let Some(p50) = data.p50.get(label) {
            chart.draw_series(DashedLineSeries::new(p50.clone(), 6, 4, c.stroke_width(1)))?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    Ok(())
}

fn memory_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    data: &Data,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    // Log scale: the servers differ by 50×.
    let floor = 0.5;
    let hi = data
        .memory
        .values()
        .flatten()
        .map(|p| p.1)
        .fold(1.0, f64::max)
        * 2.0;
    let mut chart = ChartBuilder::on(area)
        .caption("server memory per idle connection", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max(&[&data.memory]), (floor..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("connections held")
        .y_desc("KiB RSS per connection (log)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .label_style(("sans-serif", 14))
        .draw()?;
    for (i, (label, points)) in data.memory.iter().enumerate() {
        let c = color(label, i);
        let points: Vec<(f64, f64)> = points.iter().map(|&(x, y)| (x, y.max(floor))).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    Ok(())
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
