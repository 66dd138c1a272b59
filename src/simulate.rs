//! `clawjobs simulate`: a load generator against a running server, used by `scripts/bench.sh`.
//!
//! * `lifecycles`: posters keep tasks coming, workers long-poll and submit; reports full
//!   lifecycles (post → claim → submit → settled) per second over the measured window.
//! * `priority`: the share of high-value tasks that reach trusted workers (tier priority).
//! * `latency`: workers wait parked; one task is posted at a time and the time from sending the
//!   post to a worker holding the task is recorded; reports p50/p99.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

#[derive(clap::Args, Debug, Clone)]
pub struct SimulateArgs {
    /// `lifecycles`, `latency`, `priority`, `ws-latency`, `ws-idle` or `sse-fanout`.
    #[arg(long, default_value = "lifecycles")]
    pub mode: String,
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    #[arg(long, env = "CLAWJOBS_ADMIN_TOKEN")]
    pub admin_token: String,
    /// Concurrent workers (long-poll loops).
    #[arg(long, default_value_t = 32)]
    pub workers: usize,
    /// Concurrent posting loops (lifecycles mode).
    #[arg(long, default_value_t = 16)]
    pub posters: usize,
    /// Measured seconds (lifecycles mode), after a warm-up of 2 s.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Samples (latency modes) or events (sse-fanout).
    #[arg(long, default_value_t = 2000)]
    pub samples: usize,
    /// Connections to hold (ws-idle, sse-fanout).
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// The server's process id, to read its memory (ws-idle).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// `off` turns QA copies off so that every task measured is a buyer's; `seed` keeps the
    /// server's QA rates (shadows and spot-checks then add platform-paid work).
    #[arg(long, default_value = "off")]
    pub qa: String,
    /// Sets `qa.fairness_random` before the run (priority mode; 1 turns tier priority off).
    #[arg(long)]
    pub fairness: Option<f64>,
}

pub struct Sim {
    pub client: Client,
    pub url: String,
    pub admin: String,
}

impl Sim {
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.url, path))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await?;
        let status = res.status();
        let bytes = res.bytes().await?;
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Ok((status, v))
    }

    pub async fn buyer(&self, i: usize) -> anyhow::Result<String> {
        let email = format!("sim{}-{i}@example.com", std::process::id());
        let (s, v) = self
            .call(
                reqwest::Method::POST,
                "/api/auth/register",
                "",
                Some(json!({"email": email, "password": "simulated password"})),
            )
            .await?;
        if s != StatusCode::CREATED {
            bail!("register: {s} {v}");
        }
        let user_id = v["user_id"].as_str().context("user_id")?;
        let token = v["token"].as_str().context("token")?.to_string();
        let (s, v) = self
            .call(
                reqwest::Method::POST,
                "/api/admin/credit",
                &self.admin,
                Some(
                    json!({"user_id": user_id, "amount_cents": 10_000_000, "reason": "simulation"}),
                ),
            )
            .await?;
        if s != StatusCode::OK {
            bail!("admin credit: {s} {v}");
        }
        Ok(token)
    }

    pub async fn worker(&self) -> anyhow::Result<String> {
        let body = json!({"worker_type": "simulated", "profile": {"limits": {"daily_max_tasks": 100_000_000, "concurrent": 1}}});
        let (s, v) = self
            .call(reqwest::Method::POST, "/api/worker/connect", "", Some(body))
            .await?;
        if s != StatusCode::CREATED {
            bail!("connect: {s} {v}");
        }
        Ok(v["token"].as_str().context("token")?.to_string())
    }
}

/// The shipped limits (3 registrations a minute, 2 claims a minute for new workers) would measure
/// the limiter, not the marketplace.
async fn raise_rate_limits(sim: &Sim) -> anyhow::Result<()> {
    let doc = json!({
        "registration": {"per_ip_per_min": 1_000_000, "fingerprint_per_hour": 1_000_000},
        "work_next": {"new_per_min": 1_000_000, "established_per_min": 1_000_000},
        "task_submit": {"per_min": 1_000_000},
        "withdrawal": {"daily_max_cents": 10_000, "min_cents": 1_000},
    });
    let (s, v) = sim
        .call(
            reqwest::Method::PUT,
            "/api/admin/config/rate_limits",
            &sim.admin,
            Some(doc),
        )
        .await?;
    if s != StatusCode::OK {
        bail!("raising rate limits: {s} {v}");
    }
    Ok(())
}

/// Sets every spot-check rate and the shadow rate to 0.
async fn qa_off(sim: &Sim) -> anyhow::Result<()> {
    let (s, mut doc) = sim
        .call(
            reqwest::Method::GET,
            "/api/admin/config/qa",
            &sim.admin,
            None,
        )
        .await?;
    if s != StatusCode::OK {
        bail!("reading config qa: {s} {doc}");
    }
    let obj = doc.as_object_mut().context("qa document")?;
    for k in ["key", "version", "updated_at", "updated_by"] {
        obj.remove(k);
    }
    obj.insert("shadow_execution_rate".into(), json!(0.0));
    if let Some(Value::Object(rates)) = obj.get_mut("spot_check_rates") {
        for rate in rates.values_mut() {
            *rate = json!(0.0);
        }
    }
    let (s, v) = sim
        .call(
            reqwest::Method::PUT,
            "/api/admin/config/qa",
            &sim.admin,
            Some(doc),
        )
        .await?;
    if s != StatusCode::OK {
        bail!("turning QA off: {s} {v}");
    }
    Ok(())
}

pub fn task_body() -> Value {
    json!({"type": "chat", "input": {"messages": [{"role": "user", "content": "Summarise the plot of Hamlet in one line."}]}})
}

pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let client = Client::builder()
        .tls_backend_preconfigured(clawjobs_actors::webhooks::tls()?)
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(60))
        .build()?;
    let sim = Arc::new(Sim {
        client,
        url: args.url.trim_end_matches('/').to_string(),
        admin: args.admin_token.clone(),
    });
    raise_rate_limits(&sim).await?;
    match args.qa.as_str() {
        "off" => qa_off(&sim).await?,
        "seed" => {}
        other => bail!("--qa is off or seed, not {other}"),
    }
    match args.mode.as_str() {
        "lifecycles" => lifecycles(sim, &args).await,
        "latency" => latency(sim, &args).await,
        "priority" => priority(sim, &args).await,
        "ws-latency" => crate::simulate_rt::ws_latency(sim, &args).await,
        "ws-idle" => crate::simulate_rt::ws_idle(sim, &args).await,
        "sse-fanout" => crate::simulate_rt::sse_fanout(sim, &args).await,
        other => bail!("unknown mode {other}"),
    }
}

async fn lifecycles(sim: Arc<Sim>, args: &SimulateArgs) -> anyhow::Result<()> {
    let buyers = futures_util::future::try_join_all((0..args.posters).map(|i| {
        let sim = sim.clone();
        async move { sim.buyer(i).await }
    }))
    .await?;
    let workers =
        futures_util::future::try_join_all((0..args.workers).map(|_| sim.worker())).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let settled = Arc::new(AtomicU64::new(0));
    let posted = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut handles = vec![];
    for token in buyers {
        let (sim, stop, posted, settled, errors) = (
            sim.clone(),
            stop.clone(),
            posted.clone(),
            settled.clone(),
            errors.clone(),
        );
        handles.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // Keep the backlog bounded: a queue growing without end measures nothing useful.
                if posted.load(Ordering::Relaxed) > settled.load(Ordering::Relaxed) + 2_000 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                }
                match sim
                    .call(
                        reqwest::Method::POST,
                        "/api/task",
                        &token,
                        Some(task_body()),
                    )
                    .await
                {
                    Ok((StatusCode::CREATED, _)) => posted.fetch_add(1, Ordering::Relaxed),
                    _ => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for token in workers {
        let (sim, stop, settled, errors) =
            (sim.clone(), stop.clone(), settled.clone(), errors.clone());
        handles.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok((s, offer)) = sim.call(reqwest::Method::GET, "/api/work/next?wait=2", &token, None).await else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                if s != StatusCode::OK {
                    continue;
                }
                let body = json!({"task_id": offer["task_id"], "output": {"text": "Prince avenges father, everyone dies."}});
                match sim.call(reqwest::Method::POST, "/api/work/submit", &token, Some(body)).await {
                    Ok((StatusCode::OK, _)) => settled.fetch_add(1, Ordering::Relaxed),
                    _ => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (start_count, started) = (settled.load(Ordering::Relaxed), Instant::now());
    let posts_at_start = posted.load(Ordering::Relaxed);
    let mut per_second = vec![];
    let mut last = start_count;
    for _ in 0..args.seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = settled.load(Ordering::Relaxed);
        per_second.push(now - last);
        last = now;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = settled.load(Ordering::Relaxed) - start_count;
    let posts_measured = posted.load(Ordering::Relaxed) - posts_at_start;
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.await;
    }
    per_second.sort_unstable();
    let median = per_second.get(per_second.len() / 2).copied().unwrap_or(0);
    let (s, audit) = sim
        .call(
            reqwest::Method::GET,
            "/api/admin/ledger/audit",
            &sim.admin,
            None,
        )
        .await?;
    println!(
        "lifecycles: {:.0}/s mean, {median}/s median second, over {elapsed:.1}s; buyer posts {:.0}/s (workers={}, posters={}, errors={}, qa={}); audit {} {}",
        total as f64 / elapsed,
        posts_measured as f64 / elapsed,
        args.workers,
        args.posters,
        errors.load(Ordering::Relaxed),
        args.qa,
        s.as_u16(),
        audit["ok"]
    );
    Ok(())
}

async fn latency(sim: Arc<Sim>, args: &SimulateArgs) -> anyhow::Result<()> {
    let buyer = sim.buyer(0).await?;
    let workers =
        futures_util::future::try_join_all((0..args.workers).map(|_| sim.worker())).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = vec![];
    for token in workers {
        let (sim, tx, stop) = (sim.clone(), tx.clone(), stop.clone());
        handles.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok((s, offer)) = sim
                    .call(reqwest::Method::GET, "/api/work/next?wait=1", &token, None)
                    .await
                else {
                    continue;
                };
                if s != StatusCode::OK {
                    continue;
                }
                let received = Instant::now();
                let id = offer["task_id"].as_str().unwrap_or_default().to_string();
                let _ = tx.send((id.clone(), received));
                let body = json!({"task_id": id, "output": {"text": "ok"}});
                let _ = sim
                    .call(
                        reqwest::Method::POST,
                        "/api/work/submit",
                        &token,
                        Some(body),
                    )
                    .await;
            }
        }));
    }
    // Let every worker park first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut samples = Vec::with_capacity(args.samples);
    for _ in 0..args.samples {
        let sent = Instant::now();
        let (s, v) = sim
            .call(
                reqwest::Method::POST,
                "/api/task",
                &buyer,
                Some(task_body()),
            )
            .await?;
        if s != StatusCode::CREATED {
            bail!("post: {s} {v}");
        }
        let id = v["task_id"].as_str().unwrap_or_default();
        let (got, at) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await?
            .context("workers stopped")?;
        if got != id {
            bail!("a worker received {got}, expected {id}");
        }
        samples.push(at.duration_since(sent));
        // Give the worker time to submit and park again.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.await;
    }
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "post-to-claim: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} posts with {} parked workers",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        pct(1.0).as_secs_f64() * 1e3,
        samples.len(),
        args.workers
    );
    Ok(())
}

/// The share of high-value tasks that reach the higher tiers. Half of `--workers` are made
/// `trusted` first (each completes enough tasks to pass the tier's bar, set well above what any
/// worker completes while measured, so nobody changes tier during the run); then every worker
/// claims and submits in a loop while posters keep a bounded backlog of one high-value task
/// (`analyze`, at `tiers.priority_min_price_cents` or above) to one cheap one (`chat`). Prints
/// the share of high-value tasks the trusted half claimed, and of cheap ones, over `--samples`
/// high-value claims. `--fairness` sets `qa.fairness_random` first (1 turns priority off).
pub async fn priority(sim: Arc<Sim>, args: &SimulateArgs) -> anyhow::Result<()> {
    let half = (args.workers / 2).max(1);
    let samples = args.samples.max(1);
    // Nobody completes this many while measured: a worker's share of all claims is about
    // 2 * samples / workers, so the bar is twice that.
    let bar = ((4 * samples) / args.workers.max(1)).max(10) as u64;
    put_doc(&sim, "tiers", |t| {
        t["levels"]["proven"]["min_tasks"] = json!(bar - 1);
        t["levels"]["proven"]["min_completion"] = json!(0.5);
        t["levels"]["trusted"]["min_tasks"] = json!(bar);
        t["levels"]["trusted"]["min_completion"] = json!(0.5);
        t["levels"]["elite"]["min_tasks"] = json!(1_000_000_000_u64);
    })
    .await?;
    if let Some(f) = args.fairness {
        put_doc(&sim, "qa", |q| q["fairness_random"] = json!(f)).await?;
    }
    let buyer = sim.buyer(0).await?;
    let workers =
        futures_util::future::try_join_all((0..args.workers).map(|_| sim.worker())).await?;

    // The trusted half earns its tier.
    let promote = futures_util::future::try_join_all(workers[..half].iter().map(|token| {
        let (sim, buyer) = (sim.clone(), buyer.clone());
        async move {
            for _ in 0..bar {
                let (s, v) = sim
                    .call(
                        reqwest::Method::POST,
                        "/api/task",
                        &buyer,
                        Some(task_body()),
                    )
                    .await?;
                if s != StatusCode::CREATED {
                    bail!("post: {s} {v}");
                }
                loop {
                    let (s, offer) = sim
                        .call(reqwest::Method::GET, "/api/work/next?wait=2", token, None)
                        .await?;
                    if s == StatusCode::OK {
                        let body = json!({"task_id": offer["task_id"], "output": {"text": "ok"}});
                        sim.call(reqwest::Method::POST, "/api/work/submit", token, Some(body))
                            .await?;
                        break;
                    }
                }
            }
            let (_, me) = sim
                .call(reqwest::Method::GET, "/api/worker/me", token, None)
                .await?;
            if me["tier"] != "trusted" {
                bail!("a promoted worker is {} after {bar} tasks", me["tier"]);
            }
            anyhow::Ok(())
        }
    }));
    promote.await?;

    let stop = Arc::new(AtomicBool::new(false));
    // [cheap by new, cheap by trusted, high by new, high by trusted]
    let counts: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    let posted = Arc::new(AtomicU64::new(0));
    let claimed = Arc::new(AtomicU64::new(0));
    let mut handles = vec![];
    for (i, token) in workers.iter().cloned().enumerate() {
        let trusted = i < half;
        let (sim, stop, counts, claimed) =
            (sim.clone(), stop.clone(), counts.clone(), claimed.clone());
        handles.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok((StatusCode::OK, offer)) = sim
                    .call(reqwest::Method::GET, "/api/work/next?wait=1", &token, None)
                    .await
                else {
                    continue;
                };
                let high = offer["type"] == "analyze";
                counts[usize::from(high) * 2 + usize::from(trusted)]
                    .fetch_add(1, Ordering::Relaxed);
                claimed.fetch_add(1, Ordering::Relaxed);
                let body = json!({"task_id": offer["task_id"], "output": {"text": "ok"}});
                let _ = sim
                    .call(
                        reqwest::Method::POST,
                        "/api/work/submit",
                        &token,
                        Some(body),
                    )
                    .await;
            }
        }));
    }
    let backlog = args.workers as u64;
    let (sim2, stop2, posted2, claimed2) =
        (sim.clone(), stop.clone(), posted.clone(), claimed.clone());
    let poster = tokio::spawn(async move {
        let mut n = 0u64;
        while !stop2.load(Ordering::Relaxed) {
            if posted2.load(Ordering::Relaxed) > claimed2.load(Ordering::Relaxed) + backlog {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            let body = if n.is_multiple_of(2) {
                json!({"type": "analyze", "input": {"text": "Which of these is the odd one out?"}})
            } else {
                task_body()
            };
            n += 1;
            if let Ok((StatusCode::CREATED, _)) = sim2
                .call(reqwest::Method::POST, "/api/task", &buyer, Some(body))
                .await
            {
                posted2.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let started = Instant::now();
    while counts[2].load(Ordering::Relaxed) + counts[3].load(Ordering::Relaxed) < samples as u64 {
        if started.elapsed() > Duration::from_secs(300) {
            bail!("fewer than {samples} high-value claims in 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = poster.await;
    for h in handles {
        let _ = h.await;
    }
    let c: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let share = |by_trusted: u64, by_new: u64| {
        100.0 * by_trusted as f64 / (by_trusted + by_new).max(1) as f64
    };
    let (_, cfg) = sim
        .call(
            reqwest::Method::GET,
            "/api/admin/config/qa",
            &sim.admin,
            None,
        )
        .await?;
    println!(
        "priority: trusted workers ({half} of {}) claimed {:.1}% of {} high-value tasks and {:.1}% of {} cheap ones (fairness_random {})",
        args.workers,
        share(c[3], c[2]),
        c[2] + c[3],
        share(c[1], c[0]),
        c[0] + c[1],
        cfg["fairness_random"]
    );
    Ok(())
}

/// Reads the config document `key`, changes it with `edit`, and puts it back.
async fn put_doc(sim: &Sim, key: &str, edit: impl FnOnce(&mut Value)) -> anyhow::Result<()> {
    let path = format!("/api/admin/config/{key}");
    let (s, mut doc) = sim
        .call(reqwest::Method::GET, &path, &sim.admin, None)
        .await?;
    if s != StatusCode::OK {
        bail!("reading config {key}: {s} {doc}");
    }
    if let Some(obj) = doc.as_object_mut() {
        for k in ["key", "version", "updated_at", "updated_by"] {
            obj.remove(k);
        }
    }
    edit(&mut doc);
    let (s, v) = sim
        .call(reqwest::Method::PUT, &path, &sim.admin, Some(doc))
        .await?;
    if s != StatusCode::OK {
        bail!("putting config {key}: {s} {v}");
    }
    Ok(())
}
