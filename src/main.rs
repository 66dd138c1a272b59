//! The `clawjobs` binary: settings, logging, and the start-up of store → actors → web.

mod admin;
mod settings;
mod simulate;
mod simulate_rt;

use std::net::TcpListener;

use anyhow::Context;
use clap::{Parser, Subcommand};
use clawjobs_actors::Engine;
use clawjobs_actors::config::PlatformConfig;

use settings::Settings;

/// glibc's allocator spends a tenth of the server's time consolidating freed chunks under load
/// (perf, scripts/bench.sh); mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "clawjobs",
    version,
    about = "Real-time marketplace server for AI task work"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (on the embedded store, or on MongoDB with --store).
    Serve(ServeArgs),
    /// Check the platform config file and print the documents it would seed.
    CheckConfig(ServeArgs),
    /// Drive load against a running server (used by scripts/bench.sh).
    Simulate(simulate::SimulateArgs),
    /// Operator tasks on a stopped server's data directory.
    Admin(admin::AdminArgs),
}

#[derive(clap::Args, Clone, Debug, Default)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long)]
    bind: Option<String>,
    /// Directory of the embedded store.
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// `mongodb://…` to run on MongoDB (a replica set; the database is the URI's path, `clawjobs`
    /// by default) instead of the embedded store. Also `CLAWJOBS_STORE`.
    #[arg(long)]
    pub store: Option<String>,
    /// Server settings file.
    #[arg(long, default_value = "config/default.toml")]
    pub config: std::path::PathBuf,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Simulate(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(simulate::run(args))
        }
        Command::Admin(args) => admin::run(args),
        Command::CheckConfig(args) => {
            let settings = Settings::load(&args)?;
            let docs = PlatformConfig::docs_from_toml(&settings.platform_toml()?)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}", serde_json::to_string_pretty(&docs)?);
            Ok(())
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::load(&args)?;
    settings.init_tracing();
    let platform_toml = settings.platform_toml()?;
    let system = actix::System::new();
    system.block_on(async move {
        let engine = Engine::start_at(&settings.store, &platform_toml)
            .await
            .map_err(|e| anyhow::anyhow!("cannot start: {}", e.for_operator()))?;
        if let Some(token) = &settings.admin_token {
            engine
                .set_env_admin_token(token)
                .await
                .map_err(|e| anyhow::anyhow!("admin token: {}", e.for_operator()))?;
        }
        let listener = TcpListener::bind(&settings.bind)
            .with_context(|| format!("cannot bind {}", settings.bind))?;
        let addr = listener.local_addr()?;
        let public_url = settings.payments(addr).public_url;
        let payments = settings
            .payments(addr)
            .build()
            .map_err(|e| anyhow::anyhow!("payments: {e}"))?;
        if payments.is_none() {
            tracing::info!(
                "payments: off (no STRIPE_SECRET_KEY); deposits answer PAYMENTS_DISABLED"
            );
        }
        let mailer = match &settings.smtp_url {
            Some(url) => {
                let m = clawjobs_actors::mail::SmtpMailer::new(url, &settings.smtp_from)
                    .map_err(|e| anyhow::anyhow!("mail: {e}"))?;
                Some(std::sync::Arc::new(m) as std::sync::Arc<dyn clawjobs_actors::mail::Mailer>)
            }
            None => None,
        };
        let engine = engine
            .with_payments(payments)
            .with_public_url(&public_url)
            .with_mailer(mailer)
            .with_private_webhooks(settings.webhooks_allow_private);
        if settings.webhooks_allow_private {
            tracing::warn!(
                "CLAWJOBS_WEBHOOKS_ALLOW_PRIVATE: webhooks may reach this machine and private networks"
            );
        }
        let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
        let web = clawjobs_web::WebSettings {
            workers: settings.workers,
            ws_idle: std::time::Duration::from_secs(settings.ws_idle_seconds),
            shutdown: stopping_rx,
            headers: clawjobs_web::headers::HeaderSettings {
                cors_origins: settings.cors_origins.clone(),
                hsts: public_url.starts_with("https://"),
            },
        };
        let server = clawjobs_web::server(engine.clone(), listener, web)?;
        let handle = server.handle();
        let stopper = engine.clone();
        actix_web::rt::spawn(async move {
            wait_for_signal().await;
            tracing::info!("stopping: closing streams and sockets, answering parked requests");
            // Streams and sockets get their final message, parked long-polls their answer…
            stopper.begin_shutdown();
            let _ = stopping_tx.send(true);
            // …then in-flight requests drain and the server stops.
            handle.stop(true).await;
        });
        #[cfg(debug_assertions)]
        crash_on_sigusr1(&engine);
        tracing::info!(%addr, store = %settings.store.describe(), "clawjobs listening");
        // Tests and scripts read this line to learn the port.
        println!("clawjobs listening on http://{addr}");
        server.await?;
        engine
            .shutdown()
            .await
            .map_err(|e| anyhow::anyhow!("flushing the store: {}", e.for_operator()))?;
        tracing::info!("clawjobs stopped");
        Ok(())
    })
}

/// Debug builds only: with `CLAWJOBS_DEBUG_CRASH=dispatcher,feed_hub,qa_comparator`, SIGUSR1
/// makes those actors panic, so that tests can watch the Supervisor restart them.
#[cfg(debug_assertions)]
fn crash_on_sigusr1(engine: &Engine) {
    let Ok(names) = std::env::var("CLAWJOBS_DEBUG_CRASH") else {
        return;
    };
    let Ok(mut usr1) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
    else {
        return;
    };
    let engine = engine.clone();
    actix_web::rt::spawn(async move {
        while usr1.recv().await.is_some() {
            let names: Vec<&str> = names.split(',').map(str::trim).collect();
            tracing::warn!(?names, "crashing actors on request");
            engine.crash(&names);
        }
    });
}

/// SIGTERM or SIGINT.
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
