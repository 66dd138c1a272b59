//! `clawjobs admin`: operator tasks on the store. On the embedded store the server must be
//! stopped (the store's lock makes a running server refuse them, with a message that says so); a
//! MongoDB database is shared, so they run beside the nodes.

use anyhow::Context;
use clap::{Args, Subcommand};
use clawjobs_actors::clock::{now_ms, rfc3339};
use clawjobs_actors::domain::{self, Role};
use clawjobs_actors::store::{AdminToken, NoObserver};

use crate::ServeArgs;
use crate::settings::Settings;

#[derive(Args, Debug)]
pub struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
    /// Directory of the embedded store (as for `serve`).
    #[arg(long, global = true)]
    data_dir: Option<std::path::PathBuf>,
    /// `mongodb://…` (as for `serve`; also `CLAWJOBS_STORE`).
    #[arg(long, global = true)]
    store: Option<String>,
    /// Server settings file (as for `serve`).
    #[arg(long, global = true, default_value = "config/default.toml")]
    config: std::path::PathBuf,
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Admin tokens: list, create, revoke.
    #[command(subcommand)]
    Tokens(TokensCommand),
}

#[derive(Subcommand, Debug)]
enum TokensCommand {
    /// Every admin token: its id (the start of its hash), label and creation time.
    List,
    /// Makes a new admin token and prints it (once: only its hash is stored).
    Create {
        /// A name to recognise it by in `list`.
        #[arg(long)]
        label: String,
    },
    /// Revokes the admin token whose id starts with ID.
    Revoke { id: String },
}

pub fn run(args: AdminArgs) -> anyhow::Result<()> {
    let settings = Settings::load(&ServeArgs {
        data_dir: args.data_dir.clone(),
        store: args.store.clone(),
        config: args.config.clone(),
        ..ServeArgs::default()
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = settings
            .store
            .open(Box::new(NoObserver))
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.for_operator()))?;
        let failed = |e: clawjobs_actors::EngineError| anyhow::anyhow!("{}", e.for_operator());
        match args.command {
            AdminCommand::Tokens(TokensCommand::List) => {
                let tokens = store.admin_tokens().await.map_err(failed)?;
                println!("{:<14} {:<20} created", "id", "label");
                for t in &tokens {
                    print_token(t);
                }
            }
            AdminCommand::Tokens(TokensCommand::Create { label }) => {
                anyhow::ensure!(
                    !label.is_empty() && label.len() <= 64,
                    "a label is 1 to 64 characters"
                );
                anyhow::ensure!(
                    label != clawjobs_actors::store::ENV_TOKEN_LABEL,
                    "the label `env` belongs to CLAWJOBS_ADMIN_TOKEN"
                );
                let token = domain::new_token(Role::Admin);
                let t = store
                    .add_admin_token(domain::token_hash(&token), label, now_ms())
                    .await
                    .map_err(failed)?;
                println!("{token}");
                eprintln!("admin token {} created; it is shown only now", t.id);
            }
            AdminCommand::Tokens(TokensCommand::Revoke { id }) => {
                let t = store.revoke_admin_token(id).await.map_err(failed)?;
                print!("revoked ");
                print_token(&t);
            }
        }
        store
            .flush()
            .await
            .map_err(failed)
            .context("flushing the store")
    })
}

fn print_token(t: &AdminToken) {
    println!(
        "{:<14} {:<20} {}",
        t.id,
        t.label.as_deref().unwrap_or("-"),
        rfc3339(t.created_at_ms)
    );
}
