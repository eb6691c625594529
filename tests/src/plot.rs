//! Pictures of a dashboard from the data a real Prometheus returned for its queries, drawn with
//! gnuplot (Debian's gnuplot-nox): no Grafana can run here, so the runbook's screenshots are the
//! queried series plotted one panel per cell, titled as the dashboard titles them.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};

/// One panel's series: its legend and (Unix seconds, value) points.
pub struct PanelData {
    pub title: String,
    pub unit: String,
    pub series: Vec<(String, Vec<(f64, f64)>)>,
}

/// Grafana's `{{label}}` legend filled from a series' labels.
pub fn legend(format: &str, labels: &serde_json::Map<String, serde_json::Value>) -> String {
    let mut out = format.to_string();
    for (k, v) in labels {
        out = out.replace(&format!("{{{{{k}}}}}"), v.as_str().unwrap_or(""));
    }
    if out.trim().is_empty() {
        "value".into()
    } else {
        out
    }
}

/// gnuplot's quoting: a double-quoted string with its quotes and backslashes escaped.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"").replace('@', ""))
}

/// Draws `panels` into `out` (PNG), three per row, under `title`.
pub fn dashboard(title: &str, panels: &[PanelData], out: &Path) -> Result<()> {
    ensure!(!panels.is_empty(), "nothing to plot for {title}");
    let dir = out.parent().context("output directory")?;
    std::fs::create_dir_all(dir)?;
    let cols = 3usize;
    let rows = panels.len().div_ceil(cols);
    let mut script = String::new();
    writeln!(script, "set terminal pngcairo size {},{} font 'DejaVu Sans,9'", 420 * cols, 260 * rows + 40)?;
    writeln!(script, "set output {}", quote(&out.display().to_string()))?;
    writeln!(script, "set multiplot layout {rows},{cols} title {} font ',13'", quote(title))?;
    writeln!(script, "set xdata time\nset timefmt '%s'\nset format x '%H:%M:%S'\nset key bottom left font ',7'")?;
    writeln!(script, "set grid\nset xtics rotate by 30 right font ',7'")?;
    for (i, p) in panels.iter().enumerate() {
        writeln!(script, "set title {}", quote(&format!("{} ({})", p.title, p.unit)))?;
        let drawable: Vec<_> = p.series.iter().filter(|(_, pts)| !pts.is_empty()).collect();
        if drawable.is_empty() {
            writeln!(script, "unset key\nplot 0 notitle with lines lc rgb 'white'\nset key")?;
            continue;
        }
        let mut plots = Vec::new();
        for (j, (name, points)) in drawable.iter().enumerate() {
            let file = dir.join(format!(".plot-{}-{i}-{j}.dat", std::process::id()));
            let mut data = String::new();
            for (t, v) in points {
                writeln!(data, "{t:.3} {v}")?;
            }
            std::fs::write(&file, data)?;
            plots.push(format!(
                "{} using 1:2 with lines lw 1.5 title {}",
                quote(&file.display().to_string()),
                quote(name)
            ));
        }
        writeln!(script, "plot {}", plots.join(", "))?;
    }
    writeln!(script, "unset multiplot")?;
    let script_file = dir.join(format!(".plot-{}.gp", std::process::id()));
    std::fs::write(&script_file, &script)?;
    let result = Command::new("gnuplot").arg(&script_file).output().context("gnuplot (Debian's gnuplot-nox)");
    for entry in std::fs::read_dir(dir)?.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&format!(".plot-{}-", std::process::id())) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let out_put = result?;
    ensure!(out_put.status.success(), "gnuplot: {}", String::from_utf8_lossy(&out_put.stderr));
    ensure!(
        std::fs::metadata(out).map(|m| m.len() > 1000).unwrap_or(false),
        "gnuplot wrote no picture to {}",
        out.display()
    );
    Ok(())
}
