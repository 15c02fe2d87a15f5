//! `chaos`: the load and the checks that `deploy/ha/chaos.sh` runs around
//! its faults (issue 13). Test tills only: `setup` needs a fresh database.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::config::Config;

#[derive(Subcommand)]
pub enum ChaosAction {
    /// Provision test tills (CH000…) and cards (CHAOS0000…, 1000.00 each)
    /// for the runs; their secrets go to DIR/state.json (mode 0600).
    Setup {
        /// The daemons' HTTP front end.
        #[arg(long, env = "CARDSWITCH_URL")]
        url: String,
        #[arg(long)]
        state: PathBuf,
        #[arg(long, default_value_t = 16)]
        terminals: usize,
        #[arg(long, default_value_t = 64)]
        cards: usize,
    },
    /// Resending clients for SECONDS; every acknowledgement is logged in
    /// DIR/acked-PHASE.json. Prints one JSON line.
    Load {
        #[arg(long, env = "CARDSWITCH_URL")]
        url: String,
        #[arg(long)]
        state: PathBuf,
        /// Names the phase's log and its orders (letters and digits).
        #[arg(long)]
        phase: String,
        #[arg(long, default_value_t = 32)]
        clients: usize,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// Every phase's acknowledgements against the balances (`query`,
    /// through the protocol) and the books; exits 1 on any difference.
    Check {
        #[arg(long, env = "CARDSWITCH_URL")]
        url: String,
        #[arg(long)]
        state: PathBuf,
    },
}

pub async fn run(action: ChaosAction, config: &Config) -> anyhow::Result<ExitCode> {
    use crate::bench::chaos;
    match action {
        ChaosAction::Setup {
            url,
            state,
            terminals,
            cards,
        } => {
            chaos::setup(config, &url, &state, terminals.max(1), cards.max(1)).await?;
            println!(
                "chaos setup: {terminals} tills, {cards} cards in {}",
                state.display()
            );
        }
        ChaosAction::Load {
            url,
            state,
            phase,
            clients,
            seconds,
        } => {
            let report = chaos::load(&url, &state, &phase, clients.max(1), seconds).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        ChaosAction::Check { url, state } => {
            let report = chaos::check(config, &url, &state).await?;
            println!("{}", serde_json::to_string(&report)?);
            if !report.problems.is_empty() {
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
