//! `triadctl services ...`: the services that follow the clusters (list, define, remove) and
//! their dispatch to `ctl/services.rs`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{json, Output};
use crate::ctl::{client, services};
use crate::Error;

/// `triadctl services` alone lists them.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(super) struct ServicesArgs {
    #[command(subcommand)]
    cmd: Option<ServicesCmd>,
    #[arg(short, long, value_enum, default_value = "table")]
    output: Output,
}

#[derive(Subcommand)]
pub(super) enum ServicesCmd {
    /// Every service in recovery-group order: its health, and what each instance's checks say.
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Define a service, or change one, from a TOML file written like one `[[services]]` entry of
    /// the controllers' config (name, cluster, kind, group, [[instances]], checks, hooks).
    Put {
        /// The service's definition.
        #[arg(long)]
        file: PathBuf,
    },
    /// Remove a service.
    Delete { name: String },
}

pub(super) async fn run_services(c: &client::Client, args: ServicesArgs) -> Result<(), Error> {
    match args.cmd.unwrap_or(ServicesCmd::List { output: args.output }) {
        ServicesCmd::List { output } => {
            let (lines, stale) = services::list(c).await?;
            match output {
                Output::Json => crate::outln!("{}", json(&lines)),
                Output::Table => crate::out!("{}", services::render(&lines, stale)),
            }
        }
        ServicesCmd::Put { file } => crate::outln!("{}", services::put(c, &file).await?),
        ServicesCmd::Delete { name } => crate::outln!("{}", services::delete(c, &name).await?),
    }
    Ok(())
}
