//! Real-time modes of `clawjobs simulate`: WebSocket delivery latency, idle WebSocket sessions
//! and their memory, and SSE fan-out latency to many subscribers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::simulate::{Sim, SimulateArgs, task_body};

fn ws_url(sim: &Sim, token: &str) -> String {
    format!(
        "{}/api/work/ws?token={token}",
        sim.url.replacen("http://", "ws://", 1)
    )
}

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    samples.sort_unstable();
    let at = |p: f64| {
        samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)].as_secs_f64() * 1e3
    };
    (at(0.50), at(0.99), at(1.0))
}

/// Post one task at a time to WebSocket workers that said `ready`; time post → task frame.
pub async fn ws_latency(sim: Arc<Sim>, args: &SimulateArgs) -> anyhow::Result<()> {
    let buyer = sim.buyer(0).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    for _ in 0..args.workers {
        let token = sim.worker().await?;
        let (mut socket, _) = tokio_tungstenite::connect_async(ws_url(&sim, &token)).await?;
        socket
            .send(Message::Text(
                json!({"type": "ready", "max": 1}).to_string().into(),
            ))
            .await?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = socket.next().await {
                let Message::Text(text) = msg else { continue };
                let received = Instant::now();
                let Ok(frame) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if frame["type"] != "task" {
                    continue;
                }
                let id = frame["task"]["task_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let _ = tx.send((id.clone(), received));
                let submit = json!({"type": "submit", "task_id": id, "output": {"text": "ok"}});
                if socket
                    .send(Message::Text(submit.to_string().into()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut samples = Vec::with_capacity(args.samples);
    for _ in 0..args.samples {
        let sent = Instant::now();
        let (s, v) = sim
            .call(Method::POST, "/api/task", &buyer, Some(task_body()))
            .await?;
        if s != StatusCode::CREATED {
            bail!("post: {s} {v}");
        }
        let (got, at) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await?
            .context("sockets closed")?;
        if got != v["task_id"].as_str().unwrap_or_default() {
            bail!("a worker received {got}, expected {}", v["task_id"]);
        }
        samples.push(at.duration_since(sent));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (p50, p99, max) = percentiles(samples);
    println!(
        "ws post-to-delivery: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms over {} posts with {} ready sockets",
        args.samples, args.workers
    );
    Ok(())
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Hold `connections` idle worker sockets (answering pings) and report the server's memory.
pub async fn ws_idle(sim: Arc<Sim>, args: &SimulateArgs) -> anyhow::Result<()> {
    let pid = args
        .server_pid
        .context("--server-pid is needed to read the server's memory")?;
    let before = rss_kib(pid).context("cannot read the server's RSS")?;
    let tokens = futures_util::stream::iter(0..args.connections)
        .map(|_| sim.worker())
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    let after_workers = rss_kib(pid).unwrap_or(before);
    let open = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut holders = Vec::with_capacity(tokens.len());
    for chunk in tokens.chunks(256) {
        let mut batch = Vec::with_capacity(chunk.len());
        for token in chunk {
            batch.push(tokio_tungstenite::connect_async(ws_url(&sim, token)));
        }
        for conn in futures_util::future::join_all(batch).await {
            let (mut socket, _) = conn?;
            let open = open.clone();
            open.fetch_add(1, Ordering::Relaxed);
            // Reading answers the server's pings; nothing else is sent.
            holders.push(tokio::spawn(async move {
                while let Some(Ok(_)) = socket.next().await {}
                open.fetch_sub(1, Ordering::Relaxed);
            }));
        }
    }
    let opened_in = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = open.load(Ordering::Relaxed);
    let after = rss_kib(pid).unwrap_or(after_workers);
    let per_session = (after.saturating_sub(after_workers) as f64 * 1024.0) / held.max(1) as f64;
    println!(
        "ws idle sessions: {held} held (opened in {:.1} s); server RSS {:.1} MiB before, {:.1} MiB with the sessions: {:.1} KiB per session; 50,000 sessions would need ≈ {:.2} GiB",
        opened_in.as_secs_f64(),
        after_workers as f64 / 1024.0,
        after as f64 / 1024.0,
        per_session / 1024.0,
        (after_workers as f64 * 1024.0 + per_session * 50_000.0) / (1u64 << 30) as f64
    );
    for h in holders {
        h.abort();
    }
    Ok(())
}

/// `connections` subscribers on the public feed; `samples` completions, each timed from the
/// submit being sent to the moment every subscriber has the event.
pub async fn sse_fanout(sim: Arc<Sim>, args: &SimulateArgs) -> anyhow::Result<()> {
    let addr = sim.url.trim_start_matches("http://").to_string();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let ready = Arc::new(AtomicUsize::new(0));
    for _ in 0..args.connections {
        let (addr, tx, ready) = (addr.clone(), tx.clone(), ready.clone());
        tokio::spawn(async move {
            let Ok(mut conn) = tokio::net::TcpStream::connect(&addr).await else {
                return;
            };
            let req = format!(
                "GET /api/feed HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
            );
            if conn.write_all(req.as_bytes()).await.is_err() {
                return;
            }
            ready.fetch_add(1, Ordering::Relaxed);
            let mut buf = vec![0u8; 4096];
            let mut tail = Vec::new();
            const NEEDLE: &[u8] = b"event: task_completed";
            while let Ok(n) = conn.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let now = Instant::now();
                tail.extend_from_slice(&buf[..n]);
                let hits = tail.windows(NEEDLE.len()).filter(|w| *w == NEEDLE).count();
                for _ in 0..hits {
                    let _ = tx.send(now);
                }
                let keep = tail.len().min(NEEDLE.len() - 1);
                tail.drain(..tail.len() - keep);
            }
        });
    }
    while ready.load(Ordering::Relaxed) < args.connections {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let buyer = sim.buyer(0).await?;
    let worker = sim.worker().await?;
    let mut last_delivery = Vec::with_capacity(args.samples);
    let mut all = Vec::with_capacity(args.samples * args.connections);
    for _ in 0..args.samples {
        let (s, v) = sim
            .call(Method::POST, "/api/task", &buyer, Some(task_body()))
            .await?;
        if s != StatusCode::CREATED {
            bail!("post: {s} {v}");
        }
        let (s, offer) = sim
            .call(Method::GET, "/api/work/next?wait=5", &worker, None)
            .await?;
        if s != StatusCode::OK {
            bail!("claim: {s}");
        }
        let body = json!({"task_id": offer["task_id"], "output": {"text": "ok"}});
        let sent = Instant::now();
        let (s, _) = sim
            .call(Method::POST, "/api/work/submit", &worker, Some(body))
            .await?;
        if s != StatusCode::OK {
            bail!("submit: {s}");
        }
        let mut got = 0;
        let mut latest = sent;
        while got < args.connections {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Some(at)) => {
                    got += 1;
                    latest = latest.max(at);
                    all.push(at.saturating_duration_since(sent));
                }
                _ => bail!(
                    "only {got} of {} subscribers got the event",
                    args.connections
                ),
            }
        }
        last_delivery.push(latest.duration_since(sent));
    }
    let (p50, p99, max) = percentiles(all);
    let (l50, l99, _) = percentiles(last_delivery);
    println!(
        "sse fan-out to {} subscribers: per delivery p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms; last subscriber reached p50 {l50:.1} ms, p99 {l99:.1} ms over {} events",
        args.connections, args.samples
    );
    Ok(())
}
