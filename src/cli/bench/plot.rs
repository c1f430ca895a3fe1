//! The PNG of `dedupstore bench growth --plot`: throughput and bytes per ID against the number
//! of IDs in the window, drawn with plotters in a font found on the system.

use super::clients::Result;
use super::growth::Point;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::ops::Range;
use std::path::Path;

/// Where Debian (fonts-dejavu-core), Arch and Fedora put DejaVu Sans.
const FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
];
const SIZE: (u32, u32) = (1400, 560);
const COLOURS: [RGBColor; 4] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
];

/// One line of a chart: its legend and its points.
struct Line {
    label: &'static str,
    points: Vec<(f64, f64)>,
}

/// Draws `points` (at least one) into the PNG `file`, with `title` above.
pub fn growth(points: &[Point], title: &str, file: &Path) -> Result<()> {
    load_font()?;
    let root = BitMapBackend::new(file, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 22))?;
    let (left, right) = root.split_horizontally(SIZE.0 / 2);
    let along = |f: fn(&Point) -> Option<f64>| -> Vec<(f64, f64)> {
        points
            .iter()
            .filter_map(|p| f(p).map(|v| (p.ids as f64, v)))
            .collect()
    };
    let rates = [
        Line {
            label: "fresh marks",
            points: along(|p| Some(p.fresh_per_sec)),
        },
        Line {
            label: "duplicates, in memory",
            points: along(|p| Some(p.duplicates_hot_per_sec)),
        },
        Line {
            label: "duplicates, on disk",
            points: along(|p| p.duplicates_cold_per_sec),
        },
        Line {
            label: "contains misses",
            points: along(|p| Some(p.misses_per_sec)),
        },
    ];
    chart(
        &left,
        "operations per second, one thread (log)",
        &rates,
        true,
    )?;
    let bytes = [
        Line {
            label: "disk",
            points: along(|p| Some(p.disk_bytes_per_id)),
        },
        Line {
            label: "process resident",
            points: along(|p| p.resident_bytes_per_id),
        },
        Line {
            label: "in-memory tier, per ID it holds",
            points: along(|p| Some(p.hot_bytes_per_id)),
        },
    ];
    chart(&right, "bytes per ID", &bytes, false)?;
    root.present()
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    Ok(())
}

/// One chart of `lines` on a logarithmic x axis (IDs in the window), its y axis logarithmic if
/// `log_y`, else from zero.
fn chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    y_label: &str,
    lines: &[Line],
    log_y: bool,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let all = || lines.iter().flat_map(|l| l.points.iter().copied());
    let x = span(all().map(|(x, _)| x)).ok_or("nothing to plot")?;
    let y = span(all().map(|(_, y)| y)).ok_or("nothing to plot")?;
    let x = x.start / 1.5..x.end * 1.5;
    let mut builder = ChartBuilder::on(area);
    builder
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80);
    let x_desc = "IDs in the window (log)";
    if log_y {
        let mut chart =
            builder.build_cartesian_2d(x.log_scale(), (y.start / 2.0..y.end * 2.0).log_scale())?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_label)
            .x_label_formatter(&|v| count(*v))
            .y_label_formatter(&|v| count(*v))
            .draw()?;
        for (line, colour) in lines.iter().zip(COLOURS) {
            draw(&mut chart, line, colour)?;
        }
        legend(&mut chart)
    } else {
        let mut chart = builder.build_cartesian_2d(x.log_scale(), 0.0..y.end * 1.2)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_label)
            .x_label_formatter(&|v| count(*v))
            .draw()?;
        for (line, colour) in lines.iter().zip(COLOURS) {
            draw(&mut chart, line, colour)?;
        }
        legend(&mut chart)
    }
}

fn draw<'a, DB: DrawingBackend + 'a, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    line: &Line,
    colour: RGBColor,
) -> Result<()>
where
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    if line.points.is_empty() {
        return Ok(());
    }
    let style = colour.stroke_width(2);
    chart
        .draw_series(LineSeries::new(line.points.iter().copied(), style))?
        .label(line.label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
    chart.draw_series(
        line.points
            .iter()
            .map(|&p| Circle::new(p, 4, colour.filled())),
    )?;
    Ok(())
}

fn legend<'a, DB: DrawingBackend + 'a, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
) -> Result<()>
where
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// The smallest and largest of `values`, if any.
fn span(values: impl Iterator<Item = f64>) -> Option<Range<f64>> {
    values.fold(None, |r: Option<Range<f64>>, v| {
        Some(r.map_or(v..v, |r| r.start.min(v)..r.end.max(v)))
    })
}

/// `v` as a count: 1.5M, 200K, 12.
fn count(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{}G", v / 1e9),
        v if v >= 1e6 => format!("{}M", v / 1e6),
        v if v >= 1e3 => format!("{}K", v / 1e3),
        v => format!("{v}"),
    }
}

/// Registers the first font of [`FONTS`] found as plotters' "sans-serif" (once per process: a
/// registered font lives as long as the process).
fn load_font() -> Result<()> {
    static LOADED: std::sync::OnceLock<std::result::Result<(), String>> =
        std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            let Some(bytes) = FONTS.iter().find_map(|path| std::fs::read(path).ok()) else {
                return Err(format!(
                    "--plot needs a TrueType font and found none of {}; install Debian's \
                     fonts-dejavu-core",
                    FONTS.join(", ")
                ));
            };
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes.leak())
                .map_err(|_| "the font found cannot be read".to_owned())
        })
        .clone()
        .map_err(Into::into)
}
