//! `triadctl alerts ...`: the SOC's subcommands (the queue, triage, incidents, silences, sources)
//! and their dispatch to `ctl/alerts.rs`.

use clap::Subcommand;

use super::{json, Output};
use crate::ctl::{alerts, client};
use crate::Error;

#[derive(Subcommand)]
pub(super) enum AlertsCmd {
    /// Alerts, newest first, filtered.
    List {
        /// open, acknowledged, resolved, false-positive, or active (open and acknowledged);
        /// repeat for several. Default: all.
        #[arg(long)]
        status: Vec<String>,
        /// The lowest severity shown: info, low, medium, high, critical.
        #[arg(long, default_value = "")]
        severity: String,
        #[arg(long, default_value = "")]
        site: String,
        /// The configured source, e.g. prometheus.
        #[arg(long, default_value = "")]
        source: String,
        /// Text in the title, description, host or labels (any case).
        #[arg(long, default_value = "")]
        text: String,
        /// Only alerts seen within this long, e.g. 30m, 2h, 1d.
        #[arg(long, value_parser = alerts::parse_duration_ms)]
        since: Option<u64>,
        /// At most this many (at most 10000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Search the on-disk history of closed alerts that have left memory
        /// ([alerts.retention]) instead of the live queue.
        #[arg(long)]
        archived: bool,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// One alert with its place, labels and history.
    Show {
        id: u64,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Acknowledge alerts: you are on them.
    #[command(alias = "acknowledge")]
    Ack {
        #[arg(required = true)]
        ids: Vec<u64>,
    },
    /// Give alerts to someone (acknowledging open ones).
    Assign {
        #[arg(required = true)]
        ids: Vec<u64>,
        #[arg(long)]
        to: String,
    },
    /// Raise alerts one level: the next level is notified.
    Escalate {
        #[arg(required = true)]
        ids: Vec<u64>,
        #[arg(long)]
        reason: String,
    },
    /// Add a comment to alerts' history.
    Comment {
        #[arg(required = true)]
        ids: Vec<u64>,
        #[arg(long)]
        text: String,
    },
    /// Close alerts as dealt with.
    Resolve {
        #[arg(required = true)]
        ids: Vec<u64>,
        #[arg(long)]
        reason: String,
    },
    /// Close alerts as not real problems (repeats are counted, not reopened).
    FalsePositive {
        #[arg(required = true)]
        ids: Vec<u64>,
        #[arg(long)]
        reason: String,
    },
    /// Open closed alerts again.
    Reopen {
        #[arg(required = true)]
        ids: Vec<u64>,
        #[arg(long)]
        reason: String,
    },
    /// Incidents: alerts grouped with an infrastructure event (a failover, an agent down...) at
    /// their sites and time. Newest first.
    Incidents {
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Mute alerts that match, for a while.
    #[command(subcommand)]
    Silence(SilenceCmd),
    /// Who may send alerts over HTTPS, in which format, with which token.
    #[command(subcommand)]
    Sources(SourcesCmd),
}

#[derive(Subcommand)]
pub(super) enum SilenceCmd {
    /// Mute alerts matching every --match (FIELD=VALUE or FIELD!=VALUE; FIELD is source, kind,
    /// severity, site, host, address, title or a label name) that open from now on.
    Add {
        #[arg(long = "match", required = true)]
        matchers: Vec<String>,
        /// How long, e.g. 30m, 2h, 1d.
        #[arg(long = "for", value_parser = alerts::parse_duration_ms)]
        duration: u64,
        /// Start later than now, e.g. 1h.
        #[arg(long, value_parser = alerts::parse_duration_ms, default_value = "0s")]
        starts_in: u64,
        #[arg(long)]
        reason: String,
    },
    /// Silences, ended ones included (for 30 days).
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// End a silence now.
    Expire { id: u64 },
}

#[derive(Subcommand)]
pub(super) enum SourcesCmd {
    /// Create a source and print its token (shown once: the controllers keep only its SHA-256).
    /// The sender posts to https://CONTROLLER_HTTP_ADDR/ingest/KIND with `Authorization: Bearer
    /// TOKEN`.
    Add {
        name: String,
        /// alertmanager, wazuh or generic.
        #[arg(long)]
        kind: String,
    },
    /// Give a source a new token (printed once); the old one stays valid for --grace.
    Rotate {
        name: String,
        /// alertmanager, wazuh or generic: as the source was created.
        #[arg(long)]
        kind: String,
        /// How long the old token keeps working, e.g. 0s, 10m, 1h.
        #[arg(long, value_parser = alerts::parse_duration_ms, default_value = "1h")]
        grace: u64,
    },
    /// Delete a source: its tokens are refused from now.
    Delete { name: String },
    /// The sources.
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
}

pub(super) async fn run_alerts(c: &client::Client, cmd: AlertsCmd) -> Result<(), Error> {
    let triage = |ids: Vec<u64>, action: &'static str, text: String| async move {
        crate::outln!("{}", alerts::triage(c, ids, action, &text).await?);
        Ok::<(), Error>(())
    };
    match cmd {
        AlertsCmd::List { status, severity, site, source, text, since, limit, archived, output } => {
            let since_ms = since.map(|d| crate::context::now_ms().saturating_sub(d)).unwrap_or(0);
            let req = triad_proto::v1::ListAlertsRequest {
                status,
                min_severity: severity,
                site,
                source,
                text,
                since_ms,
                until_ms: 0,
                limit,
                archived,
            };
            let (list, matched, stale) = alerts::list(c, req).await?;
            match output {
                Output::Json => crate::outln!("{}", json(&list)),
                Output::Table => crate::out!("{}", alerts::render_list(&list, matched, stale)),
            }
        }
        AlertsCmd::Show { id, output } => {
            let a = alerts::show(c, id).await?;
            match output {
                Output::Json => crate::outln!("{}", json(&a)),
                Output::Table => crate::out!("{}", alerts::render_show(&a)),
            }
        }
        AlertsCmd::Incidents { limit, output } => {
            let lines = alerts::incidents(c, limit).await?;
            match output {
                Output::Json => crate::outln!("{}", json(&lines)),
                Output::Table => crate::out!("{}", alerts::render_incidents(&lines)),
            }
        }
        AlertsCmd::Ack { ids } => triage(ids, "acknowledge", String::new()).await?,
        AlertsCmd::Assign { ids, to } => triage(ids, "assign", to).await?,
        AlertsCmd::Escalate { ids, reason } => triage(ids, "escalate", reason).await?,
        AlertsCmd::Comment { ids, text } => triage(ids, "comment", text).await?,
        AlertsCmd::Resolve { ids, reason } => triage(ids, "resolve", reason).await?,
        AlertsCmd::FalsePositive { ids, reason } => triage(ids, "false-positive", reason).await?,
        AlertsCmd::Reopen { ids, reason } => triage(ids, "reopen", reason).await?,
        AlertsCmd::Silence(SilenceCmd::Add { matchers, duration, starts_in, reason }) => {
            let starts = crate::context::now_ms() + starts_in;
            crate::outln!("{}", alerts::silence(c, matchers, starts, starts + duration, &reason).await?)
        }
        AlertsCmd::Silence(SilenceCmd::List { output }) => {
            let lines = alerts::silences(c).await?;
            match output {
                Output::Json => crate::outln!("{}", json(&lines)),
                Output::Table => crate::out!("{}", alerts::render_silences(&lines)),
            }
        }
        AlertsCmd::Silence(SilenceCmd::Expire { id }) => crate::outln!("{}", alerts::expire_silence(c, id).await?),
        AlertsCmd::Sources(SourcesCmd::Add { name, kind }) => {
            let (token, said) = alerts::put_source(c, &name, &kind, 0).await?;
            crate::outln!("{said}\ntoken (shown once, keep it in the sender's secret store):\n{token}");
        }
        AlertsCmd::Sources(SourcesCmd::Rotate { name, kind, grace }) => {
            let (token, said) = alerts::put_source(c, &name, &kind, grace).await?;
            crate::outln!("{said}\nnew token (shown once):\n{token}");
        }
        AlertsCmd::Sources(SourcesCmd::Delete { name }) => crate::outln!("{}", alerts::delete_source(c, &name).await?),
        AlertsCmd::Sources(SourcesCmd::List { output }) => {
            let lines = alerts::sources(c).await?;
            match output {
                Output::Json => crate::outln!("{}", json(&lines)),
                Output::Table => crate::out!("{}", alerts::render_sources(&lines)),
            }
        }
    }
    Ok(())
}
