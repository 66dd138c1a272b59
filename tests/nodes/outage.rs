//! The database goes away: a node that cannot reach it at start says so and exits; a running
//! node answers 503 with `Retry-After` while it is away and recovers by itself when it returns.
//! These tests run a MongoDB stand-in of their own (secantusdb), so that they can stop it.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::handoff::mongodb_or_skip;
use crate::helpers::*;

/// A secantusdb server on `port`, its data in `dir` (kept across restarts).
struct StandIn {
    child: Child,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl StandIn {
    fn start(port: u16, dir: &Path) -> StandIn {
        let args = [
            "--host".to_string(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
            "--storage-path".into(),
            dir.display().to_string(),
            "--log-level".into(),
            "WARNING".into(),
        ];
        let launcher = which("secantusd-py");
        let mut command = match &launcher {
            Some(path) => Command::new(path),
            None => {
                let mut c = Command::new("python3");
                c.args([
                    "-c",
                    "import sys; from secantus.cli import main; sys.argv[0] = 'secantusd-py'; sys.exit(main())",
                ]);
                c
            }
        };
        let child = command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start secantusd (pip install secantusdb==0.7.0b3)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the stand-in did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        StandIn { child }
    }

    /// SIGTERM, and wait until it is gone.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn chat() -> serde_json::Value {
    json!({"type": "chat", "input": {"messages": [{"role": "user", "content": "x"}]}})
}

#[tokio::test]
async fn an_unreachable_database_at_start_is_a_clear_error_within_fifteen_seconds() {
    if !mongodb_or_skip() {
        return;
    }
    let uri = format!("mongodb://127.0.0.1:{}/clawjobs", free_port());
    let started = Instant::now();
    let (ok, _, err) = clawjobs(&["serve", "--bind", "127.0.0.1:0", "--store", &uri]);
    let took = started.elapsed();
    assert!(!ok, "it must not start");
    assert!(err.contains("cannot reach MongoDB"), "{err}");
    assert!(took < Duration::from_secs(15), "gave up after {took:?}");
}

#[tokio::test]
async fn a_node_answers_503_while_the_database_is_away_and_recovers_by_itself() {
    if !mongodb_or_skip() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let db = StandIn::start(port, data.path());
    let uri = format!("mongodb://127.0.0.1:{port}/outage?replicaSet=secantus");
    let store: [&str; 1] = [&uri];
    let a = start_store(&store).await;
    let b = start_store(&store).await;
    a.patch_config("rate_limits", generous_limits()).await;
    let buyer = a.funded_buyer("outage@example.com", 1_000).await;
    let (s, v) = a.post_task(&buyer, chat()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let before = v["task_id"].as_str().unwrap().to_string();

    db.stop();
    let res = a
        .call(
            reqwest::Method::POST,
            "/api/task",
            Some(&buyer.token),
            Some(&chat()),
        )
        .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "UNAVAILABLE", "{v}");

    // Back on the same port with the same data: both nodes carry on without a restart.
    let _db = StandIn::start(port, data.path());
    let after = eventually("A takes posts again", Duration::from_secs(30), || async {
        let (s, v) = a.post_task(&buyer, chat()).await;
        (s == StatusCode::CREATED).then(|| v["task_id"].as_str().unwrap().to_string())
    })
    .await;
    let (s, v) = a.get(&format!("/api/task/{before}"), &buyer.token).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("pending")),
        "{v}"
    );
    // B's change stream came back too: a task posted on A now reaches a worker parked on B.
    let worker = b.worker().await;
    let mut got = Vec::new();
    while got.len() < 3 {
        let (s, v) = b.next(&worker, 10).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let id = v["task_id"].as_str().unwrap().to_string();
        b.submit(&worker, &id, "done").await;
        got.push(id);
        if got.len() == 2 {
            let third = a.chat_task(&buyer).await;
            eprintln!("posted {third} on A after the outage");
        }
    }
    assert!(got.contains(&before) && got.contains(&after), "{got:?}");
    a.assert_audit().await;
}
