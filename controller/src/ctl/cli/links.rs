//! `triadctl links ...`: the NOC's links (list, define, remove) and their dispatch to
//! `ctl/links.rs`.

use clap::{Args, Subcommand};
use triad_proto::v1 as pb;

use super::{json, Output};
use crate::ctl::{client, links};
use crate::Error;

/// `triadctl links` alone lists them.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(super) struct LinksArgs {
    #[command(subcommand)]
    cmd: Option<LinksCmd>,
    #[arg(short, long, value_enum, default_value = "table")]
    output: Output,
}

// Parsed once per run: boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub(super) enum LinksCmd {
    /// Every link: its state and since when, and what the probes at both ends measure now.
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Define a link, or change one (its recorded state stays). Unset thresholds take their
    /// defaults.
    Put {
        /// Its name, e.g. dwdm-dc-ndc.
        name: String,
        /// The site at one end.
        #[arg(long)]
        a: String,
        /// The site at the other end.
        #[arg(long)]
        b: String,
        /// dwdm, wan or lan.
        #[arg(long)]
        kind: String,
        #[arg(long, default_value_t = 0)]
        capacity_mbps: u64,
        #[arg(long, default_value = "")]
        provider: String,
        #[arg(long, default_value = "")]
        circuit: String,
        /// A database cluster whose replication runs over it; repeat for several.
        #[arg(long)]
        carries: Vec<String>,
        /// The agent probing from end a (default: chosen among the site's agents).
        #[arg(long, default_value = "")]
        a_agent: String,
        #[arg(long, default_value = "")]
        b_agent: String,
        /// A network device at its ends (address or host name); repeat for several.
        #[arg(long = "device")]
        devices: Vec<String>,
        /// How often each end probes, in ms (default 200).
        #[arg(long, default_value_t = 0)]
        probe_interval_ms: u32,
        /// Degraded above this mean round trip, in ms (default 20).
        #[arg(long)]
        degraded_rtt_ms: Option<f64>,
        /// Degraded at this loss or more, in percent (default 5).
        #[arg(long)]
        degraded_loss_percent: Option<f64>,
        /// Degraded above this jitter, in ms (default 10).
        #[arg(long)]
        degraded_jitter_ms: Option<f64>,
        /// Down at this loss or more, in percent (default 50).
        #[arg(long)]
        down_loss_percent: Option<f64>,
        /// Down when no probe was answered for this long, in ms (default 1500).
        #[arg(long)]
        down_silence_ms: Option<u64>,
    },
    /// Remove a link.
    Delete { name: String },
}

pub(super) async fn run_links(c: &client::Client, args: LinksArgs) -> Result<(), Error> {
    match args.cmd.unwrap_or(LinksCmd::List { output: args.output }) {
        LinksCmd::List { output } => {
            let (lines, stale) = links::list(c).await?;
            match output {
                Output::Json => crate::outln!("{}", json(&lines)),
                Output::Table => crate::out!("{}", links::render(&lines, stale)),
            }
        }
        LinksCmd::Put {
            name,
            a,
            b,
            kind,
            capacity_mbps,
            provider,
            circuit,
            carries,
            a_agent,
            b_agent,
            devices,
            probe_interval_ms,
            degraded_rtt_ms,
            degraded_loss_percent,
            degraded_jitter_ms,
            down_loss_percent,
            down_silence_ms,
        } => {
            let thresholds = pb::LinkThresholds {
                degraded_rtt_ms,
                degraded_loss_percent,
                degraded_jitter_ms,
                down_loss_percent,
                down_silence_ms,
                ..Default::default()
            };
            let spec = pb::LinkSpec {
                name,
                a,
                b,
                kind,
                capacity_mbps,
                provider,
                circuit,
                carries,
                a_agent,
                b_agent,
                probe_interval_ms,
                devices,
                thresholds: Some(thresholds),
            };
            crate::outln!("{}", links::put(c, spec).await?);
        }
        LinksCmd::Delete { name } => crate::outln!("{}", links::delete(c, &name).await?),
    }
    Ok(())
}
