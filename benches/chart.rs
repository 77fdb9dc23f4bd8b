//! Draws `docs/benchmarks.png` from the figures the benches saved in
//! `target/adflow-bench/results/` (`ysb.tsv`, `engines.tsv`, `scale.tsv`;
//! a missing file leaves its panel empty).
//!
//! ```text
//! cargo bench --bench chart
//! ```
//!
//! `benches/run.sh` runs every bench and then this one. plotters draws the
//! shapes into a pixel buffer; the text is rasterised with ab_glyph (pure
//! Rust) from a TrueType font: `ADFLOW_CHART_FONT`, else DejaVu Sans or
//! Liberation Sans from `/usr/share/fonts` (Debian's `fonts-dejavu-core`).

use std::path::{Path, PathBuf};

use ab_glyph::{point, Font, FontVec, PxScale, ScaleFont};
use plotters::prelude::*;

#[path = "support/e2e.rs"]
mod e2e;

const WIDTH: u32 = 1400;
const HEIGHT: u32 = 1000;

/// A label to draw once plotters is done with the buffer.
struct Label {
    x: f32,
    y: f32,
    size: f32,
    text: String,
}

/// A bar panel: title, unit, bars, and an optional target line.
struct Panel {
    title: String,
    unit: &'static str,
    bars: Vec<(String, f64)>,
    target: Option<(f64, String)>,
}

fn figures(bench: &str) -> Vec<(String, f64)> {
    let path = e2e::bench_root()
        .join("results")
        .join(format!("{bench}.tsv"));
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (label, value) = line.split_once('\t')?;
            Some((label.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

fn font_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ADFLOW_CHART_FONT") {
        return Some(PathBuf::from(path));
    }
    [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|path| path.exists())
}

/// Draws one panel into `area` (pixel coordinates of the whole image).
fn draw_panel<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    (left, top, right, bottom): (i32, i32, i32, i32),
    panel: &Panel,
    labels: &mut Vec<Label>,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    labels.push(Label {
        x: left as f32,
        y: top as f32,
        size: 22.0,
        text: panel.title.clone(),
    });
    let (plot_top, plot_bottom) = (top + 40, bottom - 60);
    let (plot_left, plot_right) = (left + 10, right - 10);
    let axis = BLACK.stroke_width(1);
    root.draw(&PathElement::new(
        vec![(plot_left, plot_bottom), (plot_right, plot_bottom)],
        axis,
    ))?;
    if panel.bars.is_empty() {
        labels.push(Label {
            x: plot_left as f32 + 10.0,
            y: (plot_top + plot_bottom) as f32 / 2.0,
            size: 18.0,
            text: "no results yet: run the bench".to_owned(),
        });
        return Ok(());
    }
    let target = panel.target.as_ref().map_or(0.0, |(value, _)| *value);
    let top_value = panel
        .bars
        .iter()
        .map(|(_, value)| *value)
        .fold(target, f64::max)
        * 1.15;
    let height = f64::from(plot_bottom - plot_top);
    let y_of = |value: f64| plot_bottom - (value / top_value * height) as i32;
    let slot = (plot_right - plot_left) / panel.bars.len() as i32;
    let palette = [
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
    ];
    for (index, (label, value)) in panel.bars.iter().enumerate() {
        let x0 = plot_left + slot * index as i32 + slot / 6;
        let x1 = x0 + slot * 2 / 3;
        let color = palette[index % palette.len()];
        root.draw(&Rectangle::new(
            [(x0, y_of(*value)), (x1, plot_bottom)],
            color.filled(),
        ))?;
        let text = if *value >= 100.0 {
            format!("{value:.0} {}", panel.unit)
        } else if *value >= 1.0 {
            format!("{value:.1} {}", panel.unit)
        } else {
            format!("{value:.3} {}", panel.unit)
        };
        labels.push(Label {
            x: x0 as f32,
            y: y_of(*value) as f32 - 22.0,
            size: 16.0,
            text,
        });
        for (line, part) in label.split(" | ").enumerate() {
            labels.push(Label {
                x: x0 as f32 - slot as f32 / 8.0,
                y: (plot_bottom + 6 + 18 * line as i32) as f32,
                size: 15.0,
                text: part.to_owned(),
            });
        }
    }
    if let Some((value, text)) = &panel.target {
        let y = y_of(*value);
        root.draw(&PathElement::new(
            vec![(plot_left, y), (plot_right, y)],
            RED.stroke_width(2),
        ))?;
        labels.push(Label {
            x: plot_right as f32 - 260.0,
            y: y as f32 - 20.0,
            size: 15.0,
            text: text.clone(),
        });
    }
    Ok(())
}

/// Rasterises `labels` onto an RGB buffer.
fn draw_labels(buffer: &mut [u8], font: &FontVec, labels: &[Label]) {
    for label in labels {
        let scale = PxScale::from(label.size);
        let scaled = font.as_scaled(scale);
        let mut x = label.x;
        for c in label.text.chars() {
            let id = scaled.glyph_id(c);
            let glyph = id.with_scale_and_position(scale, point(x, label.y + scaled.ascent()));
            x += scaled.h_advance(id);
            let Some(outlined) = font.outline_glyph(glyph) else {
                continue;
            };
            let bounds = outlined.px_bounds();
            outlined.draw(|gx, gy, coverage| {
                let px = bounds.min.x as i64 + i64::from(gx);
                let py = bounds.min.y as i64 + i64::from(gy);
                if px < 0 || py < 0 || px >= i64::from(WIDTH) || py >= i64::from(HEIGHT) {
                    return;
                }
                let at = ((py * i64::from(WIDTH) + px) * 3) as usize;
                for channel in &mut buffer[at..at + 3] {
                    *channel = (f32::from(*channel) * (1.0 - coverage.min(1.0))) as u8;
                }
            });
        }
    }
}

fn panels() -> Vec<Panel> {
    let ysb = figures("ysb");
    let engines = figures("engines");
    let scale = figures("scale");
    let late = engines
        .iter()
        .find(|(label, _)| label.starts_with("late"))
        .map(|(_, value)| *value);
    let batch: Vec<(String, f64)> = engines
        .iter()
        .filter(|(label, _)| !label.starts_with("late"))
        .cloned()
        .collect();
    let late_ratios = late
        .map(|late| {
            batch
                .iter()
                .filter(|(label, _)| !label.starts_with("adflow"))
                .map(|(label, seconds)| (format!("vs {label} | recompute"), seconds / late))
                .collect()
        })
        .unwrap_or_default();
    vec![
        Panel {
            title: "YSB count per campaign per 10 s: M events/s".to_owned(),
            unit: "M/s",
            bars: ysb,
            target: Some((15.0, "target 15M events/s (2 workers)".to_owned())),
        },
        Panel {
            title: "dedup + hourly metrics + last touch, 10M events: seconds".to_owned(),
            unit: "s",
            bars: batch,
            target: None,
        },
        Panel {
            title: "1% late events: adflow's update is … × faster".to_owned(),
            unit: "×",
            bars: late_ratios,
            target: Some((100.0, "target 100×".to_owned())),
        },
        Panel {
            title: "scaling (subset, 2 workers): peak RSS, GB".to_owned(),
            unit: "GB",
            bars: scale,
            target: None,
        },
    ]
}

fn main() -> anyhow::Result<()> {
    let font_file = font_path().ok_or_else(|| {
        anyhow::anyhow!(
            "no TrueType font found: set ADFLOW_CHART_FONT or install fonts-dejavu-core"
        )
    })?;
    let font = FontVec::try_from_vec(std::fs::read(&font_file)?)?;
    let mut buffer = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    let mut labels = Vec::new();
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let (w, h) = (WIDTH as i32 / 2, HEIGHT as i32 / 2);
        for (index, panel) in panels().iter().enumerate() {
            let (column, row) = (index as i32 % 2, index as i32 / 2);
            let bounds = (
                column * w + 30,
                row * h + 20,
                (column + 1) * w - 30,
                (row + 1) * h - 10,
            );
            draw_panel(&root, bounds, panel, &mut labels)?;
        }
        root.present()?;
    }
    draw_labels(&mut buffer, &font, &labels);

    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/benchmarks.png");
    let file = std::io::BufWriter::new(std::fs::File::create(&out)?);
    let mut encoder = png::Encoder::new(file, WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header()?.write_image_data(&buffer)?;
    println!("wrote {} (font {})", out.display(), font_file.display());
    Ok(())
}
