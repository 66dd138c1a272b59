//! Server settings: built-in defaults, then `config/default.toml`, then `CLAWJOBS_*` environment
//! variables, then command-line flags.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use clawjobs_actors::payments::PaymentSettings;
use clawjobs_actors::store::Location;

use crate::ServeArgs;

#[derive(Debug, Deserialize, Default)]
struct File {
    #[serde(default)]
    server: ServerFile,
    #[serde(default)]
    realtime: RealtimeFile,
    #[serde(default)]
    log: LogFile,
}

#[derive(Debug, Deserialize, Default)]
struct ServerFile {
    bind: Option<String>,
    data_dir: Option<PathBuf>,
    store: Option<String>,
    workers: Option<usize>,
    platform_config: Option<PathBuf>,
    cors_origins: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
struct RealtimeFile {
    ws_idle_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
struct LogFile {
    level: Option<String>,
    format: Option<String>,
}

/// Its `Debug` shows whether the admin token and the SMTP URL (which may hold a password) are set,
/// never them.
pub struct Settings {
    pub bind: String,
    /// Where the store lives: the embedded one in `data_dir`, or a MongoDB database.
    pub store: Location,
    pub workers: usize,
    pub platform_config: Option<PathBuf>,
    pub log_level: String,
    pub log_json: bool,
    pub admin_token: Option<String>,
    pub ws_idle_seconds: u64,
    /// Stripe (`STRIPE_SECRET_KEY`, `STRIPE_WEBHOOK_SECRET`, `STRIPE_API_BASE`) and this
    /// server's public address (`CLAWJOBS_PUBLIC_URL`); the address defaults to the bound one.
    pub payments: PaymentSettings,
    /// `CLAWJOBS_SMTP_URL` (email codes over SMTP; else the admin outbox) and its sender.
    pub smtp_url: Option<String>,
    pub smtp_from: String,
    /// `CLAWJOBS_WEBHOOKS_ALLOW_PRIVATE=1`: buyer webhooks may point at this machine and private
    /// networks, over plain HTTP too. For development and tests; never in production.
    pub webhooks_allow_private: bool,
    /// `CLAWJOBS_CORS_ORIGINS` (comma-separated) or `[server] cors_origins`: the origins whose
    /// pages may call the API from a browser. None by default.
    pub cors_origins: Vec<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |v: &Option<String>| if v.is_some() { "<set>" } else { "<none>" };
        f.debug_struct("Settings")
            .field("bind", &self.bind)
            .field("store", &self.store)
            .field("workers", &self.workers)
            .field("platform_config", &self.platform_config)
            .field("log_level", &self.log_level)
            .field("log_json", &self.log_json)
            .field("admin_token", &set(&self.admin_token))
            .field("ws_idle_seconds", &self.ws_idle_seconds)
            .field("payments", &self.payments)
            .field("smtp_url", &set(&self.smtp_url))
            .field("smtp_from", &self.smtp_from)
            .field("webhooks_allow_private", &self.webhooks_allow_private)
            .field("cors_origins", &self.cors_origins)
            .finish()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Settings {
    pub fn load(args: &ServeArgs) -> anyhow::Result<Settings> {
        let explicit = args.config != Path::new("config/default.toml");
        let file: File = match std::fs::read_to_string(&args.config) {
            Ok(text) => toml::from_str(&text)
                .with_context(|| format!("reading {}", args.config.display()))?,
            Err(e) if explicit => {
                return Err(e).with_context(|| format!("reading {}", args.config.display()));
            }
            Err(_) => File::default(),
        };
        let workers = match env("CLAWJOBS_WORKERS") {
            Some(w) => w.parse().context("CLAWJOBS_WORKERS must be a number")?,
            None => file.server.workers.unwrap_or(0),
        };
        let workers = if workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            workers
        };
        let data_dir = args
            .data_dir
            .clone()
            .or_else(|| env("CLAWJOBS_DATA_DIR").map(PathBuf::from))
            .or(file.server.data_dir)
            .unwrap_or_else(|| PathBuf::from("./data"));
        let store = args
            .store
            .clone()
            .or_else(|| env("CLAWJOBS_STORE"))
            .or(file.server.store);
        let store = Location::parse(store.as_deref(), &data_dir).map_err(anyhow::Error::msg)?;
        let cors_origins = match env("CLAWJOBS_CORS_ORIGINS") {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(str::to_string)
                .collect(),
            None => file.server.cors_origins.unwrap_or_default(),
        }
        .iter()
        .map(|o| clawjobs_web::headers::HeaderSettings::check_origin(o))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
        Ok(Settings {
            bind: args
                .bind
                .clone()
                .or_else(|| env("CLAWJOBS_BIND"))
                .or(file.server.bind)
                .unwrap_or_else(|| "127.0.0.1:8080".into()),
            store,
            workers,
            platform_config: env("CLAWJOBS_PLATFORM_CONFIG")
                .map(PathBuf::from)
                .or(file.server.platform_config),
            log_level: env("CLAWJOBS_LOG")
                .or(file.log.level)
                .unwrap_or_else(|| "info".into()),
            log_json: env("CLAWJOBS_LOG_FORMAT")
                .or(file.log.format)
                .is_some_and(|f| f == "json"),
            admin_token: env("CLAWJOBS_ADMIN_TOKEN"),
            ws_idle_seconds: match env("CLAWJOBS_WS_IDLE_SECONDS") {
                Some(v) => v
                    .parse()
                    .context("CLAWJOBS_WS_IDLE_SECONDS must be a number")?,
                None => file.realtime.ws_idle_seconds.unwrap_or(45),
            }
            .max(1),
            payments: PaymentSettings {
                secret_key: env("STRIPE_SECRET_KEY"),
                webhook_secret: env("STRIPE_WEBHOOK_SECRET"),
                api_base: env("STRIPE_API_BASE"),
                public_url: env("CLAWJOBS_PUBLIC_URL").unwrap_or_default(),
            },
            smtp_url: env("CLAWJOBS_SMTP_URL"),
            smtp_from: env("CLAWJOBS_SMTP_FROM")
                .unwrap_or_else(|| "clawjobs <no-reply@clawjobs.invalid>".into()),
            webhooks_allow_private: env("CLAWJOBS_WEBHOOKS_ALLOW_PRIVATE")
                .is_some_and(|v| v == "1" || v == "true"),
            cors_origins,
        })
    }

    /// The payment settings, with the public address defaulting to `http://{addr}`.
    pub fn payments(&self, addr: std::net::SocketAddr) -> PaymentSettings {
        let mut p = self.payments.clone();
        if p.public_url.is_empty() {
            p.public_url = format!("http://{addr}");
        }
        p
    }

    /// The platform TOML: the configured file if it exists, else the defaults built into the binary.
    pub fn platform_toml(&self) -> anyhow::Result<String> {
        match &self.platform_config {
            Some(path) if path.exists() => {
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
            }
            _ => Ok(clawjobs_actors::config::PlatformConfig::defaults_toml().to_string()),
        }
    }

    pub fn init_tracing(&self) {
        let filter = tracing_subscriber::EnvFilter::try_new(&self.log_level)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        if self.log_json {
            builder.json().init();
        } else {
            builder.init();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the settings print shows no secret: the admin token, the SMTP password, the Stripe
    /// keys and a MongoDB password are only "set".
    #[test]
    fn settings_print_no_secret() {
        let s = Settings {
            bind: "127.0.0.1:0".into(),
            store: Location::MongoDb("mongodb://app:hunter2@db.example/clawjobs".into()),
            workers: 1,
            platform_config: None,
            log_level: "info".into(),
            log_json: false,
            admin_token: Some("cja_the-admin-token".into()),
            ws_idle_seconds: 45,
            payments: PaymentSettings {
                secret_key: Some("sk_test_the-stripe-key".into()),
                webhook_secret: Some("whsec_the-stripe-secret".into()),
                api_base: None,
                public_url: String::new(),
            },
            smtp_url: Some("smtp://mail:smtp-password@mail.example:587".into()),
            smtp_from: "x <x@example.com>".into(),
            webhooks_allow_private: false,
            cors_origins: Vec::new(),
        };
        let shown = format!("{s:?}");
        for secret in [
            "hunter2",
            "cja_the-admin-token",
            "sk_test_the-stripe-key",
            "whsec_the-stripe-secret",
            "smtp-password",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("<set>") && shown.contains("db.example"),
            "{shown}"
        );
    }
}
