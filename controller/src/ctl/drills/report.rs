//! A drill run's report, as an auditor reads it: plan, who started it, pre-checks, each step with
//! its start, end and result, the measured moves (write outage, RTO, data-loss window), when the
//! services came back, the targets with pass or fail, and the alerts raised meanwhile. One
//! document ([`Report`], the JSON form) rendered as text, Markdown or HTML.

use serde::Serialize;
use triad_proto::words::format_utc;

use crate::state::drills::{DrillRun, Verdict};

/// The report: the run as recorded, with the figures and verdicts it is judged by.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub run: DrillRun,
    /// `running`, `passed`, `failed` or `aborted`.
    pub result: String,
    pub write_outage_ms: Option<u64>,
    pub rto_ms: Option<u64>,
    pub data_loss_ms: Option<u64>,
    pub verdicts: Vec<Verdict>,
}

impl Report {
    pub fn of(run: DrillRun) -> Self {
        Report {
            result: run.end.as_ref().map_or("running".into(), |e| e.result.to_string()),
            write_outage_ms: run.write_outage_ms(),
            rto_ms: run.rto_ms(),
            data_loss_ms: run.data_loss_ms(),
            verdicts: run.verdicts(),
            run,
        }
    }
}

/// The three rendered forms share one layout: a title, key facts, then tables.
struct Doc {
    title: String,
    facts: Vec<(String, String)>,
    tables: Vec<Table>,
}

/// A titled table: its name, its header, its rows.
type Table = (String, Vec<&'static str>, Vec<Vec<String>>);

fn ms(v: Option<u64>) -> String {
    v.map_or("not measured".into(), |v| format!("{v} ms"))
}

fn offset(from: u64, at: u64) -> String {
    format!("+{:.1} s", at.saturating_sub(from) as f64 / 1000.0)
}

fn doc(r: &Report) -> Doc {
    let run = &r.run;
    let p = &run.plan;
    let title =
        format!("Drill {}: plan {} ({} of {}, {} → {})", run.id, p.name, p.kind, p.cluster, run.origin, p.target);
    let mut facts = vec![
        ("Result".to_string(), r.result.to_uppercase()),
        ("Started".to_string(), format!("{} by {}", format_utc(run.started_ms), run.started_by)),
    ];
    if let Some(e) = &run.end {
        let took = format!("{:.1} s", e.at_ms.saturating_sub(run.started_ms) as f64 / 1000.0);
        facts.push(("Ended".into(), format!("{} ({took}); primary now {}", format_utc(e.at_ms), e.primary)));
        if !e.why.is_empty() {
            facts.push(("Why".into(), e.why.clone()));
        }
    }
    if let Some(a) = &run.abort {
        facts.push(("Abort".into(), format!("asked by {} at {}: {}", a.by, format_utc(a.at_ms), a.reason)));
    }
    facts.push(("Write outage (worst move)".into(), ms(r.write_outage_ms)));
    facts.push(("RTO (worst move)".into(), ms(r.rto_ms)));
    facts.push(("Data-loss window (worst move)".into(), ms(r.data_loss_ms)));
    let prechecks = run
        .prechecks
        .iter()
        .map(|c| {
            let verdict = match (c.ok, &c.overridden) {
                (true, _) => "ok".to_string(),
                (false, Some(o)) => format!("overridden ({o})"),
                (false, None) => "FAILED".into(),
            };
            vec![c.name.to_string(), verdict, c.detail.clone()]
        })
        .collect();
    let steps = run
        .steps
        .iter()
        .map(|s| {
            let result = match s.ok {
                Some(true) => "ok",
                Some(false) => "FAILED",
                None => "under way",
            };
            let took = s.ended_ms.map_or(String::new(), |e| format!("{} ms", e.saturating_sub(s.started_ms)));
            vec![s.kind.to_string(), offset(run.started_ms, s.started_ms), took, result.into(), s.note.clone()]
        })
        .collect();
    let legs = run
        .legs
        .iter()
        .map(|l| {
            vec![
                format!("{} → {}", l.from, l.to),
                l.workflow.to_string(),
                ms(l.write_outage_ms),
                ms(l.rto_ms),
                ms(l.data_loss_ms),
                l.outcome.clone(),
            ]
        })
        .collect();
    let mut services: Vec<Vec<String>> = run
        .checks
        .iter()
        .map(|c| {
            let ok = if c.ok { "ok" } else { "FAILED" };
            vec![c.step.to_string(), c.group.to_string(), c.service.clone(), ok.into(), c.detail.clone()]
        })
        .collect();
    for l in &run.legs {
        for c in &l.services_back {
            let ok = if c.ok { "back" } else { "NOT BACK" };
            let step = format!("{} (after the promote)", l.step);
            services.push(vec![step, c.group.to_string(), c.service.clone(), ok.into(), c.detail.clone()]);
        }
    }
    let copies = run
        .copy
        .iter()
        .map(|c| {
            vec![c.member.clone(), c.name.clone(), format!("{} ms", c.ready_ms), ms(c.data_age_ms), c.detail.clone()]
        })
        .collect();
    let targets = r
        .verdicts
        .iter()
        .map(|v| {
            let pass = if v.pass { "pass" } else { "FAIL" };
            vec![v.target.to_string(), format!("{} ms", v.limit_ms), ms(v.measured_ms), pass.into()]
        })
        .collect();
    let anomalies = run
        .end
        .iter()
        .flat_map(|e| &e.anomalies)
        .map(|a| {
            vec![
                format!("#{}", a.alert),
                a.severity.clone(),
                a.site.clone(),
                offset(run.started_ms, a.at_ms),
                a.title.clone(),
            ]
        })
        .collect();
    Doc {
        title,
        facts,
        tables: vec![
            ("Pre-checks".into(), vec!["check", "verdict", "found"], prechecks),
            ("Steps".into(), vec!["step", "start", "took", "result", "note"], steps),
            ("Moves".into(), vec!["move", "workflow", "write outage", "RTO", "data loss", "outcome"], legs),
            ("DR copy".into(), vec!["member", "copy", "usable after (RTO)", "newest data age (RPO)", "detail"], copies),
            ("Services".into(), vec!["step", "group", "service", "result", "detail"], services),
            ("Targets".into(), vec!["target", "limit", "measured", "verdict"], targets),
            (
                "Anomalies (alerts raised during the drill)".into(),
                vec!["alert", "severity", "site", "at", "title"],
                anomalies,
            ),
        ],
    }
}

/// Plain text, for a terminal.
pub fn text(r: &Report) -> String {
    let d = doc(r);
    let mut out = format!("{}\n", d.title);
    for (k, v) in &d.facts {
        out += &format!("  {:<30} {v}\n", format!("{k}:"));
    }
    for (name, header, rows) in &d.tables {
        out += &format!("\n{name}:\n");
        if rows.is_empty() {
            out += "  none\n";
            continue;
        }
        let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
        for row in rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: Vec<String>| {
            let n = cells.len();
            let mut s = String::from(" ");
            for (i, (c, w)) in cells.into_iter().zip(&widths).enumerate() {
                // The last column is not padded.
                s += &if i + 1 == n { format!(" {c}") } else { format!(" {c:<w$}") };
            }
            s.trim_end().to_string() + "\n"
        };
        out += &line(header.iter().map(|h| h.to_uppercase()).collect());
        for row in rows {
            out += &line(row.clone());
        }
    }
    out
}

/// Markdown, for a ticket or a wiki.
pub fn markdown(r: &Report) -> String {
    let d = doc(r);
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let mut out = format!("# {}\n\n", cell(&d.title));
    for (k, v) in &d.facts {
        out += &format!("- **{k}:** {}\n", cell(v));
    }
    for (name, header, rows) in &d.tables {
        out += &format!("\n## {name}\n\n");
        if rows.is_empty() {
            out += "None.\n";
            continue;
        }
        out += &format!("| {} |\n", header.join(" | "));
        out += &format!("|{}\n", "---|".repeat(header.len()));
        for row in rows {
            out += &format!("| {} |\n", row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | "));
        }
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A standalone HTML page, to archive or mail.
pub fn html(r: &Report) -> String {
    let d = doc(r);
    let mut out = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>body{{font-family:sans-serif;\
         margin:2em}}table{{border-collapse:collapse;margin-bottom:1em}}td,th{{border:1px solid #999;padding:4px 8px;\
         text-align:left}}th{{background:#eee}}</style></head><body>\n<h1>{t}</h1>\n<dl>\n",
        t = escape(&d.title)
    );
    for (k, v) in &d.facts {
        out += &format!("<dt><b>{}</b></dt><dd>{}</dd>\n", escape(k), escape(v));
    }
    out += "</dl>\n";
    for (name, header, rows) in &d.tables {
        out += &format!("<h2>{}</h2>\n", escape(name));
        if rows.is_empty() {
            out += "<p>None.</p>\n";
            continue;
        }
        out += "<table><tr>";
        for h in header {
            out += &format!("<th>{}</th>", escape(h));
        }
        out += "</tr>\n";
        for row in rows {
            out += "<tr>";
            for c in row {
                out += &format!("<td>{}</td>", escape(c));
            }
            out += "</tr>\n";
        }
        out += "</table>\n";
    }
    out + "</body></html>\n"
}
