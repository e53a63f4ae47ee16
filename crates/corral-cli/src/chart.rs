//! Inline SVG charts for the HTML reports (`report.rs`): lines over an x axis
//! ([`Lines`]), stacked horizontal bars ([`Bars`]) and shares over time as grey levels
//! ([`Heat`]). Every chart has a title, both axes with
//! ticks, their units, and a legend; series differ by dash pattern and marker shape as well as
//! hue, so a chart reads in grey. Pure: data in, markup out.

use std::fmt::Write;

/// Plot area and margins, in SVG units.
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 180.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 48.0;

/// Hues, dash patterns and markers, taken in turn per series.
const HUES: [&str; 6] = ["#1f4e9c", "#b3471d", "#2d7a3a", "#6a3d9a", "#8c6d1f", "#333333"];
const DASHES: [&str; 4] = ["", "6 3", "2 3", "8 3 2 3"];
const MARKERS: [Marker; 4] = [Marker::Circle, Marker::Square, Marker::Triangle, Marker::Diamond];

#[derive(Clone, Copy)]
enum Marker {
    Circle,
    Square,
    Triangle,
    Diamond,
}

impl Marker {
    fn draw(self, out: &mut String, x: f64, y: f64, hue: &str) {
        let _ = match self {
            Marker::Circle => write!(out, "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3.5\" fill=\"{hue}\"/>"),
            Marker::Square => {
                write!(out, "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"7\" height=\"7\" fill=\"{hue}\"/>", x - 3.5, y - 3.5)
            }
            Marker::Triangle => write!(
                out,
                "<path d=\"M{x:.1},{:.1} L{:.1},{:.1} L{:.1},{:.1} Z\" fill=\"{hue}\"/>",
                y - 4.5,
                x + 4.0,
                y + 3.0,
                x - 4.0,
                y + 3.0
            ),
            Marker::Diamond => write!(
                out,
                "<path d=\"M{x:.1},{:.1} L{:.1},{y:.1} L{x:.1},{:.1} L{:.1},{y:.1} Z\" fill=\"{hue}\"/>",
                y - 4.5,
                x + 4.5,
                y + 4.5,
                x - 4.5
            ),
        };
    }
}

/// Escapes text for SVG and HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// One line: its name in the legend and its points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Dots without a line (a scatter), e.g. events on a time axis.
    pub dots_only: bool,
}

/// A vertical mark across the plot at an x value (an autopilot move), with its label.
pub struct Mark {
    pub x: f64,
    pub label: String,
}

/// A line chart.
pub struct Lines {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub marks: Vec<Mark>,
    /// The y axis starts at 0 and ends at least here (a fraction's axis: 1).
    pub y_min_top: f64,
}

/// Round tick steps covering `0..=top` in about five steps.
fn ticks(top: f64) -> Vec<f64> {
    let top = if top.is_finite() && top > 0.0 { top } else { 1.0 };
    let rough = top / 5.0;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step =
        [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= rough).unwrap_or(magnitude * 10.0);
    let count = (top / step).ceil() as usize;
    (0..=count).map(|i| i as f64 * step).collect()
}

fn number(value: f64) -> String {
    if value == 0.0 {
        "0".to_owned()
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        let text = format!("{value:.1}");
        text.strip_suffix(".0").map_or(text.clone(), str::to_owned)
    } else {
        format!("{value:.2}")
    }
}

fn open(out: &mut String, title: &str, height: f64) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {height}\" width=\"{WIDTH}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\" role=\"img\" aria-label=\"{0}\"><title>{0}</title>\
         <text x=\"{LEFT}\" y=\"20\" font-size=\"14\" font-weight=\"bold\">{0}</text>",
        escape(title)
    );
}

impl Lines {
    pub fn svg(&self) -> String {
        let mut out = String::new();
        open(&mut out, &self.title, HEIGHT);
        let all = self.series.iter().flat_map(|s| s.points.iter());
        let x_top = all.clone().map(|p| p.0).chain(self.marks.iter().map(|m| m.x)).fold(0.0, f64::max);
        let y_top = all.map(|p| p.1).fold(self.y_min_top, f64::max);
        let (xs, ys) = (ticks(x_top), ticks(y_top));
        let (x_end, y_end) = (*xs.last().unwrap_or(&1.0), *ys.last().unwrap_or(&1.0));
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let sx = |x: f64| LEFT + x / x_end * plot_w;
        let sy = |y: f64| HEIGHT - BOTTOM - y / y_end * plot_h;
        for &y in &ys {
            let _ = write!(
                out,
                "<line x1=\"{LEFT}\" x2=\"{0:.1}\" y1=\"{2:.1}\" y2=\"{2:.1}\" stroke=\"#ddd\"/><text x=\"{1:.1}\" y=\"{3:.1}\" text-anchor=\"end\">{4}</text>",
                LEFT + plot_w,
                LEFT - 6.0,
                sy(y),
                sy(y) + 4.0,
                number(y)
            );
        }
        for &x in &xs {
            let _ = write!(
                out,
                "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{2:.1}\" stroke=\"#333\"/><text x=\"{0:.1}\" y=\"{3:.1}\" text-anchor=\"middle\">{4}</text>",
                sx(x),
                HEIGHT - BOTTOM,
                HEIGHT - BOTTOM + 5.0,
                HEIGHT - BOTTOM + 18.0,
                number(x)
            );
        }
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{0:.1}\" stroke=\"#333\"/><line x1=\"{LEFT}\" x2=\"{1:.1}\" y1=\"{0:.1}\" y2=\"{0:.1}\" stroke=\"#333\"/>\
             <text x=\"{2:.1}\" y=\"{3:.1}\" text-anchor=\"middle\">{4}</text>\
             <text transform=\"translate(16 {5:.1}) rotate(-90)\" text-anchor=\"middle\">{6}</text>",
            HEIGHT - BOTTOM,
            LEFT + plot_w,
            LEFT + plot_w / 2.0,
            HEIGHT - 10.0,
            escape(&self.x_label),
            TOP + plot_h / 2.0,
            escape(&self.y_label)
        );
        for mark in &self.marks {
            let x = sx(mark.x);
            let _ = write!(
                out,
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP}\" y2=\"{:.1}\" stroke=\"#555\" stroke-dasharray=\"1 3\"><title>{1}</title></line>\
                 <text x=\"{x:.1}\" y=\"{2:.1}\" font-size=\"10\" text-anchor=\"middle\">▲<title>{1}</title></text>",
                HEIGHT - BOTTOM,
                escape(&mark.label),
                TOP - 2.0
            );
        }
        for (i, series) in self.series.iter().enumerate() {
            let (hue, dash, marker) = (HUES[i % HUES.len()], DASHES[i % DASHES.len()], MARKERS[i % MARKERS.len()]);
            if !series.dots_only && series.points.len() > 1 {
                let path: Vec<String> =
                    series.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
                let _ = write!(
                    out,
                    "<polyline points=\"{}\" fill=\"none\" stroke=\"{hue}\" stroke-width=\"2\" stroke-dasharray=\"{dash}\"/>",
                    path.join(" ")
                );
            }
            // Markers on every point of a short series; on a long one (a time series), a few.
            let every = (series.points.len() / 12).max(1);
            for &(x, y) in series.points.iter().step_by(if series.dots_only { 1 } else { every }) {
                marker.draw(&mut out, sx(x), sy(y), hue);
            }
            let ly = TOP + 8.0 + i as f64 * 18.0;
            let lx = WIDTH - RIGHT + 14.0;
            let _ = write!(
                out,
                "<line x1=\"{lx:.1}\" x2=\"{:.1}\" y1=\"{ly:.1}\" y2=\"{ly:.1}\" stroke=\"{hue}\" stroke-width=\"2\" stroke-dasharray=\"{dash}\"/>",
                lx + 26.0
            );
            marker.draw(&mut out, lx + 13.0, ly, hue);
            let _ = write!(out, "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>", lx + 32.0, ly + 4.0, escape(&series.name));
        }
        out + "</svg>"
    }
}

/// Stacked horizontal bars: one row per label, one segment per part.
pub struct Bars {
    pub title: String,
    pub x_label: String,
    /// The parts' names, in the legend and in each segment's order.
    pub parts: Vec<String>,
    /// Per row, its label and one value per part.
    pub rows: Vec<(String, Vec<f64>)>,
}

impl Bars {
    pub fn svg(&self) -> String {
        const FILLS: [&str; 3] = ["url(#hatch)", "#444", "#999"];
        const ROW: f64 = 34.0;
        let height = TOP + ROW * self.rows.len().max(1) as f64 + BOTTOM;
        let mut out = String::new();
        open(&mut out, &self.title, height);
        out += "<defs><pattern id=\"hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\"><rect width=\"6\" height=\"6\" fill=\"#fff\"/><path d=\"M0,6 L6,0\" stroke=\"#555\"/></pattern></defs>";
        let top = self.rows.iter().map(|(_, v)| v.iter().sum::<f64>()).fold(0.0, f64::max);
        let xs = ticks(top);
        let x_end = *xs.last().unwrap_or(&1.0);
        let plot_w = WIDTH - LEFT - RIGHT - 40.0;
        let label_w = 110.0;
        let row_h = ROW;
        let x0 = LEFT + 40.0;
        let sx = |x: f64| x0 + x / x_end * (plot_w - label_w + 70.0);
        for &x in &xs {
            let _ = write!(
                out,
                "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{TOP}\" y2=\"{1:.1}\" stroke=\"#ddd\"/><text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3}</text>",
                sx(x),
                height - BOTTOM,
                height - BOTTOM + 16.0,
                number(x)
            );
        }
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            sx(x_end / 2.0),
            height - 10.0,
            escape(&self.x_label)
        );
        for (r, (label, values)) in self.rows.iter().enumerate() {
            let y = TOP + r as f64 * row_h + 4.0;
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                x0 - 6.0,
                y + row_h / 2.0,
                escape(label)
            );
            let mut at = 0.0;
            for (p, value) in values.iter().enumerate() {
                let _ = write!(
                    out,
                    "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\" stroke=\"#000\"><title>{}: {} {}</title></rect>",
                    sx(at),
                    sx(at + value) - sx(at),
                    row_h - 8.0,
                    FILLS[p % FILLS.len()],
                    escape(label),
                    escape(&self.parts[p]),
                    number(*value)
                );
                at += value;
            }
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{}</text>",
                sx(at) + 4.0,
                y + row_h / 2.0,
                values.iter().map(|v| number(*v)).collect::<Vec<_>>().join(" + ")
            );
        }
        for (p, part) in self.parts.iter().enumerate() {
            let ly = TOP + 4.0 + p as f64 * 18.0;
            let lx = WIDTH - RIGHT + 14.0;
            let _ = write!(
                out,
                "<rect x=\"{lx:.1}\" y=\"{ly:.1}\" width=\"14\" height=\"12\" fill=\"{}\" stroke=\"#000\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                FILLS[p % FILLS.len()],
                lx + 20.0,
                ly + 10.0,
                escape(part)
            );
        }
        out + "</svg>"
    }
}

/// A grid of shares over time: one row per label, one cell per step, darker when higher
/// (grey levels, so it reads without colour; each cell's value in its tooltip), with marks
/// over the time axis.
pub struct Heat {
    pub title: String,
    /// Seconds per step.
    pub step: f64,
    /// Per row, its label and its shares (0 to 1) per step.
    pub rows: Vec<(String, Vec<f64>)>,
    pub marks: Vec<Mark>,
}

impl Heat {
    pub fn svg(&self) -> String {
        const ROW: f64 = 16.0;
        let height = TOP + 14.0 + ROW * self.rows.len().max(1) as f64 + BOTTOM;
        let mut out = String::new();
        open(&mut out, &self.title, height);
        let steps = self.rows.iter().map(|(_, v)| v.len()).max().unwrap_or(0).max(1);
        let xs = ticks(steps as f64 * self.step);
        let x_end = *xs.last().unwrap_or(&1.0);
        let plot_w = WIDTH - LEFT - RIGHT;
        let sx = |t: f64| LEFT + t / x_end * plot_w;
        let top = TOP + 14.0;
        let bottom = top + ROW * self.rows.len() as f64;
        for (r, (label, shares)) in self.rows.iter().enumerate() {
            let y = top + r as f64 * ROW;
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                LEFT - 6.0,
                y + 12.0,
                escape(label)
            );
            for (i, share) in shares.iter().enumerate() {
                let level = (255.0 - share.clamp(0.0, 1.0) * 230.0) as u8;
                let _ = write!(
                    out,
                    "<rect x=\"{:.2}\" y=\"{y:.1}\" width=\"{:.2}\" height=\"{:.1}\" fill=\"rgb({level},{level},{level})\"><title>{} at {:.2} s: {:.0}% busy</title></rect>",
                    sx(i as f64 * self.step),
                    sx(self.step) - sx(0.0) + 0.3,
                    ROW - 2.0,
                    escape(label),
                    (i + 1) as f64 * self.step,
                    share * 100.0
                );
            }
        }
        for &x in &xs {
            let _ = write!(
                out,
                "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{2:.1}\" stroke=\"#333\"/><text x=\"{0:.1}\" y=\"{3:.1}\" text-anchor=\"middle\">{4}</text>",
                sx(x),
                bottom,
                bottom + 5.0,
                bottom + 18.0,
                number(x)
            );
        }
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">time (s)</text>",
            LEFT + plot_w / 2.0,
            bottom + 34.0
        );
        for mark in &self.marks {
            let x = sx(mark.x);
            let _ = write!(
                out,
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{bottom:.1}\" stroke=\"#000\" stroke-dasharray=\"1 2\"><title>{1}</title></line>\
                 <text x=\"{x:.1}\" y=\"{0:.1}\" font-size=\"10\" text-anchor=\"middle\">▼<title>{1}</title></text>",
                top - 2.0,
                escape(&mark.label)
            );
        }
        // The scale: what the grey levels mean.
        let lx = WIDTH - RIGHT + 14.0;
        for (k, share) in [0.0, 0.25, 0.5, 0.75, 1.0].iter().enumerate() {
            let level = (255.0 - share * 230.0) as u8;
            let y = top + k as f64 * 18.0;
            let _ = write!(
                out,
                "<rect x=\"{lx:.1}\" y=\"{y:.1}\" width=\"14\" height=\"12\" fill=\"rgb({level},{level},{level})\" stroke=\"#000\"/><text x=\"{:.1}\" y=\"{:.1}\">{:.0}% busy</text>",
                lx + 20.0,
                y + 10.0,
                share * 100.0
            );
        }
        out + "</svg>"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_top() {
        assert_eq!(ticks(9.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(1.0), vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]);
        assert_eq!(ticks(0.0), ticks(1.0), "an empty chart still has an axis");
        assert_eq!(*ticks(437.0).last().expect("ticks"), 500.0);
    }

    #[test]
    fn a_chart_names_its_axes_series_and_marks_and_escapes_them() {
        let chart = Lines {
            title: "a<b".into(),
            x_label: "calls/s".into(),
            y_label: "latency (ms)".into(),
            series: vec![Series { name: "m&n p99".into(), points: vec![(1.0, 2.0), (3.0, 4.0)], dots_only: false }],
            marks: vec![Mark { x: 2.0, label: "grow".into() }],
            y_min_top: 0.0,
        }
        .svg();
        for text in ["a&lt;b", "calls/s", "latency (ms)", "m&amp;n p99", "<title>grow</title>", "<polyline"] {
            assert!(chart.contains(text), "{text} in {chart}");
        }
        let bars = Bars {
            title: "queue vs compute".into(),
            x_label: "ms".into(),
            parts: vec!["queue".into(), "compute".into()],
            rows: vec![("m".into(), vec![1.5, 2.0])],
        }
        .svg();
        assert!(bars.contains("1.5 + 2") && bars.contains("queue") && bars.contains("compute"), "{bars}");
        let heat = Heat {
            title: "busy".into(),
            step: 0.25,
            rows: vec![("nc0".into(), vec![0.0, 1.0])],
            marks: vec![Mark { x: 0.25, label: "m grow".into() }],
        }
        .svg();
        assert!(heat.contains("rgb(255,255,255)") && heat.contains("rgb(25,25,25)"), "{heat}");
        assert!(heat.contains("nc0 at 0.50 s: 100% busy") && heat.contains("<title>m grow</title>"), "{heat}");
    }
}
