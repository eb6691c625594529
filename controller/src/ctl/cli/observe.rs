//! `triadctl dashboards ...` and `triadctl prometheus ...`: the NOC's Grafana dashboards written
//! and checked offline, and a Prometheus configuration for a demo.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;

use crate::ctl::observe;
use crate::Error;

#[derive(Subcommand)]
pub(super) enum DashboardsCmd {
    /// Write the dashboards (DIR/grafana/*.json) and Grafana's provisioning files
    /// (DIR/provisioning/) as this version of Triad generates them.
    Write {
        /// Where to write (the repository keeps them in `dashboards/`).
        #[arg(long, default_value = "dashboards")]
        dir: PathBuf,
    },
    /// Check dashboard JSON files offline: the pinned schema version, unique panel ids, a title,
    /// description and unit on every panel, the datasource a variable, every $variable defined.
    /// Exits 1 when any file has a problem.
    Check {
        /// JSON files, or directories of them.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
pub(super) enum PrometheusCmd {
    /// Print (or write) a Prometheus configuration that scrapes every controller and agent of a
    /// demo, from its demo.json.
    ScrapeConfig {
        /// The demo's demo.json.
        #[arg(long)]
        demo: PathBuf,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// How often to scrape and evaluate rules, in milliseconds.
        #[arg(long, default_value_t = 5000)]
        scrape_interval_ms: u64,
        /// A rule file to load (e.g. deploy/prometheus/rules.yml); repeat for several.
        #[arg(long)]
        rules: Vec<PathBuf>,
        /// An Alertmanager (HOST:PORT) to send the rules' alerts to; repeat for several.
        #[arg(long)]
        alertmanager: Vec<String>,
    },
}

pub(super) fn run_dashboards(cmd: DashboardsCmd) -> Result<(), Error> {
    let dash_err = |e: triad_dashboards::Error| Error::InvalidArgument(e.to_string());
    match cmd {
        DashboardsCmd::Write { dir } => {
            for path in triad_dashboards::write(&dir).map_err(dash_err)? {
                crate::outln!("wrote {}", path.display());
            }
        }
        DashboardsCmd::Check { paths } => {
            let mut files = Vec::new();
            for p in paths {
                if p.is_dir() {
                    files.extend(triad_dashboards::check_dir(&p).map_err(dash_err)?);
                } else {
                    let problems = triad_dashboards::lint::check(&triad_dashboards::read(&p).map_err(dash_err)?);
                    files.push((p, problems));
                }
            }
            let bad: usize = files.iter().map(|(_, p)| p.len()).sum();
            for (path, problems) in &files {
                for p in problems {
                    crate::outln!("{}: {p}", path.display());
                }
            }
            if bad > 0 {
                return Err(Error::InvalidArgument(format!("{bad} problem(s) in {} file(s)", files.len())));
            }
            crate::outln!("{} dashboard(s): no problem found", files.len());
        }
    }
    Ok(())
}

pub(super) fn run_prometheus(cmd: PrometheusCmd) -> Result<(), Error> {
    match cmd {
        PrometheusCmd::ScrapeConfig { demo, out, scrape_interval_ms, rules, alertmanager } => {
            let targets = observe::read_demo(&demo)?;
            let opts = observe::ScrapeOptions {
                interval: Duration::from_millis(scrape_interval_ms),
                rules,
                alertmanagers: alertmanager,
            };
            let yaml = observe::scrape_config(&targets, &opts, &demo)?;
            match out {
                Some(path) => {
                    std::fs::write(&path, yaml).map_err(|e| Error::io(format!("writing {}", path.display()), e))?
                }
                None => crate::out!("{yaml}"),
            }
        }
    }
    Ok(())
}
