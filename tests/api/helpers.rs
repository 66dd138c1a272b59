//! Starts the real `clawjobs` binary on a free port with a temporary data directory and speaks
//! HTTP to it. Set TEST_LOG=1 to see the server's log.
//!
//! With `CLAWJOBS_TEST_STORE=mongodb` the servers run on MongoDB instead: each data directory
//! stands for a database of its own on `CLAWJOBS_TEST_MONGODB_URI` (named after the directory, so
//! that a restart on the same directory finds its data).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{Value, json};

pub const ADMIN_TOKEN: &str = "cja_test_admin_token";

pub struct TestApp {
    pub base: String,
    pub client: Client,
    /// The admin token this server was started with (`CLAWJOBS_ADMIN_TOKEN`).
    pub admin: String,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

pub struct Buyer {
    pub user_id: String,
    pub token: String,
}

pub struct Worker {
    pub worker_id: String,
    pub token: String,
}

/// A server whose rate limits are out of the way (the shipped ones allow 3 registrations a
/// minute per address); `rules::rate_limits_*` tests the limits themselves.
pub async fn spawn_app() -> TestApp {
    let app = spawn_app_with_default_limits().await;
    app.patch_config("rate_limits", generous_limits()).await;
    app
}

/// [`spawn_app`] with these server settings (environment variables).
pub async fn spawn_app_with_env(env: &[(&str, &str)]) -> TestApp {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut app = start_with_env(tmp.path(), env).await;
    app._tmp = Some(tmp);
    app.patch_config("rate_limits", generous_limits()).await;
    app
}

pub async fn spawn_app_with_default_limits() -> TestApp {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut app = start(tmp.path()).await;
    app._tmp = Some(tmp);
    app
}

pub fn generous_limits() -> Value {
    json!({
        "registration": {"per_ip_per_min": 100_000, "fingerprint_per_hour": 100_000},
        "work_next": {"new_per_min": 100_000, "established_per_min": 100_000},
        "task_submit": {"per_min": 100_000},
    })
}

/// Whether these servers run on MongoDB (`CLAWJOBS_TEST_STORE=mongodb`).
pub fn on_mongodb() -> bool {
    std::env::var("CLAWJOBS_TEST_STORE").is_ok_and(|s| s == "mongodb")
}

/// The flags that put a server (or `clawjobs admin`) on the store of `data_dir`: the directory
/// itself, or its MongoDB database.
pub fn store_flags(data_dir: &Path) -> Vec<String> {
    if !on_mongodb() {
        return vec!["--data-dir".into(), data_dir.display().to_string()];
    }
    mongodb_flags(data_dir)
}

/// `--store` with the MongoDB database that stands for `data_dir`.
pub fn mongodb_flags(data_dir: &Path) -> Vec<String> {
    let base = std::env::var("CLAWJOBS_TEST_MONGODB_URI")
        .expect("CLAWJOBS_TEST_STORE=mongodb needs CLAWJOBS_TEST_MONGODB_URI");
    let name: String = data_dir
        .display()
        .to_string()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let database = format!("bb_{}", &name[name.len().saturating_sub(40)..]);
    let (head, query) = base.split_once('?').unwrap_or((&base, ""));
    let scheme = head.find("://").map_or(0, |i| i + 3);
    let hosts = head[scheme..].find('/').map_or(head.len(), |i| scheme + i);
    vec![
        "--store".into(),
        format!("{}/{database}?{query}", &head[..hosts]),
    ]
}

/// Starts a server on `data_dir` (which outlives it: used by restart tests).
pub async fn start(data_dir: &Path) -> TestApp {
    start_with_env(data_dir, &[]).await
}

pub async fn start_with_env(data_dir: &Path, env: &[(&str, &str)]) -> TestApp {
    launch(store_flags(data_dir), env, None).await
}

/// [`spawn_app_with_env`] with the server's log (its stderr) written to `log`.
pub async fn spawn_app_logging(env: &[(&str, &str)], log: std::fs::File) -> TestApp {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut app = launch(store_flags(tmp.path()), env, Some(log)).await;
    app._tmp = Some(tmp);
    app.patch_config("rate_limits", generous_limits()).await;
    app
}

/// A node on the MongoDB database that stands for `data_dir`, whatever `CLAWJOBS_TEST_STORE`
/// says: several nodes started on one directory share one database.
#[allow(dead_code)] // used by the multi-node suite (tests/nodes)
pub async fn start_node(data_dir: &Path, env: &[(&str, &str)]) -> TestApp {
    launch(mongodb_flags(data_dir), env, None).await
}

/// A node on the store these flags name (`--store URI`, or `--data-dir DIR`).
#[allow(dead_code)] // used by the multi-node suite (tests/nodes)
pub async fn start_store(flags: &[&str]) -> TestApp {
    let mut all = vec!["--store".to_string()];
    all.extend(flags.iter().map(|f| f.to_string()));
    launch(all, &[], None).await
}

async fn launch(store: Vec<String>, env: &[(&str, &str)], log: Option<std::fs::File>) -> TestApp {
    let admin = env
        .iter()
        .find(|(k, _)| *k == "CLAWJOBS_ADMIN_TOKEN")
        .map_or(ADMIN_TOKEN, |(_, v)| *v)
        .to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_clawjobs"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(store)
        .env("CLAWJOBS_WORKERS", "2")
        .env(
            "CLAWJOBS_LOG",
            if std::env::var("TEST_LOG").is_ok() {
                "info"
            } else {
                "warn"
            },
        )
        .env("CLAWJOBS_ADMIN_TOKEN", &admin)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(match log {
            Some(file) => Stdio::from(file),
            None if std::env::var("TEST_LOG").is_ok() => Stdio::inherit(),
            None => Stdio::null(),
        })
        .spawn()
        .expect("start clawjobs");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .expect("read the listening line");
        // Keep draining so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        line
    })
    .await
    .expect("reader");
    let base = line
        .trim()
        .strip_prefix("clawjobs listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();
    let client = Client::builder()
        .tls_backend_preconfigured(clawjobs_actors::webhooks::tls().expect("tls"))
        .pool_max_idle_per_host(64)
        // The server closes a connection idle for 5 s (actix's keep-alive); a pooled one reused
        // at that moment fails with IncompleteMessage. Idle connections are dropped first.
        .pool_idle_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let app = TestApp {
        base,
        client,
        admin,
        child: Some(child),
        _tmp: None,
    };
    // QA copies at the shipped rates would add random tasks to every test; the QA tests turn
    // them on themselves.
    app.patch_config("qa", qa_rates(0.0, 0.0)).await;
    app
}

/// The `qa` config changes for a spot-check rate (every tier) and a shadow rate.
pub fn qa_rates(spot_check: f64, shadow: f64) -> Value {
    json!({
        "spot_check_rates": {"new": spot_check, "proven": spot_check, "trusted": spot_check,
                             "elite": spot_check, "suspicious": spot_check},
        "shadow_execution_rate": shadow,
    })
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl TestApp {
    /// The temporary data directory of a server from `spawn_app*` (it also names the server's
    /// MongoDB database, see [`mongodb_flags`]).
    #[allow(dead_code)] // used by the API suite, not the multi-node one
    pub fn data_dir(&self) -> Option<&Path> {
        self._tmp.as_ref().map(|t| t.path())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        req.send().await.expect("request")
    }

    /// Sends and returns status and JSON body (Null for an empty body).
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let res = self.call(method, path, token, body).await;
        let status = res.status();
        let text = res.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    /// A POST with an `Idempotency-Key` (none when None).
    pub async fn post_keyed(
        &self,
        path: &str,
        token: &str,
        body: Value,
        key: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body);
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.json(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.json(Method::POST, path, token, Some(&body)).await
    }

    pub async fn register(&self, email: &str) -> Buyer {
        let (s, v) = self
            .post(
                "/api/auth/register",
                None,
                json!({"email": email, "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        Buyer {
            user_id: v["user_id"].as_str().unwrap().into(),
            token: v["token"].as_str().unwrap().into(),
        }
    }

    /// A buyer with `cents` added by an admin credit on top of the signup credit.
    pub async fn funded_buyer(&self, email: &str, cents: i64) -> Buyer {
        let b = self.register(email).await;
        let (s, v) = self
            .post(
                "/api/admin/credit",
                Some(ADMIN_TOKEN),
                json!({"user_id": b.user_id, "amount_cents": cents, "reason": "test funds"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        b
    }

    pub async fn worker(&self) -> Worker {
        self.worker_with(json!({})).await
    }

    pub async fn worker_with(&self, body: Value) -> Worker {
        let (s, v) = self.post("/api/worker/connect", None, body).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        Worker {
            worker_id: v["worker_id"].as_str().unwrap().into(),
            token: v["token"].as_str().unwrap().into(),
        }
    }

    pub async fn post_task(&self, buyer: &Buyer, body: Value) -> (StatusCode, Value) {
        self.post("/api/task", Some(&buyer.token), body).await
    }

    pub async fn chat_task(&self, buyer: &Buyer) -> String {
        let (s, v) = self.post_task(buyer, json!({"type": "chat", "input": {"messages": [{"role": "user", "content": "hello"}]}})).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["task_id"].as_str().unwrap().to_string()
    }

    pub async fn next(&self, w: &Worker, wait: u32) -> (StatusCode, Value) {
        self.get(&format!("/api/work/next?wait={wait}"), &w.token)
            .await
    }

    pub async fn submit(&self, w: &Worker, task_id: &str, text: &str) -> (StatusCode, Value) {
        self.post(
            "/api/work/submit",
            Some(&w.token),
            json!({"task_id": task_id, "output": {"text": text}}),
        )
        .await
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn balance(&self, token: &str) -> Value {
        let (s, v) = self.get("/api/balance", token).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    /// Replaces fields of a config document through the admin API.
    pub async fn patch_config(&self, key: &str, changes: Value) {
        let (s, mut doc) = self
            .get(&format!("/api/admin/config/{key}"), &self.admin)
            .await;
        assert_eq!(s, StatusCode::OK, "{doc}");
        merge(&mut doc, changes);
        if let Some(o) = doc.as_object_mut() {
            o.remove("version");
        }
        let (s, v) = self
            .json(
                Method::PUT,
                &format!("/api/admin/config/{key}"),
                Some(&self.admin),
                Some(&doc),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }

    /// The ledger audit must pass after every test that moves money.
    pub async fn assert_audit(&self) -> Value {
        let (s, v) = self.get("/api/admin/ledger/audit", &self.admin).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["ok"], json!(true), "ledger audit failed: {v}");
        assert_eq!(v["sum_cents"], json!(0));
        v
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let status = c.wait().expect("wait");
            assert!(status.success(), "clean stop exited with {status}");
        }
    }

    /// Sends `signal` (e.g. "USR1") to the server.
    pub fn signal(&self, signal: &str) {
        if let Some(c) = &self.child {
            let status = Command::new("kill")
                .args([&format!("-{signal}"), &c.id().to_string()])
                .status()
                .expect("kill");
            assert!(status.success());
        }
    }

    /// SIGKILL: no chance to flush anything. Takes `&self` so that load tasks may still hold the app.
    pub fn kill9(&self) {
        if let Some(c) = &self.child {
            let status = Command::new("kill")
                .args(["-KILL", &c.id().to_string()])
                .status()
                .expect("kill -9");
            assert!(status.success());
        }
    }
}

pub fn merge(doc: &mut Value, changes: Value) {
    match (doc, changes) {
        (Value::Object(d), Value::Object(c)) => {
            for (k, v) in c {
                merge(d.entry(k).or_insert(Value::Null), v);
            }
        }
        (d, c) => *d = c,
    }
}

pub fn cents(v: &Value, field: &str) -> i64 {
    v[field]
        .as_i64()
        .unwrap_or_else(|| panic!("{field} missing in {v}"))
}

/// A task as a worker sees it has exactly the fields of the contract: nothing hidden leaks.
pub fn assert_worker_view(task: &Value) {
    let mut keys: Vec<_> = task
        .as_object()
        .expect("a task object")
        .keys()
        .cloned()
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "constraints",
            "deadline",
            "input",
            "price_cents",
            "task_id",
            "type"
        ],
        "worker view: {task}"
    );
}

/// Runs `clawjobs ARGS…` to completion: (exit success, stdout, stderr).
pub fn clawjobs(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_clawjobs"))
        .args(args)
        .env("CLAWJOBS_LOG", "warn")
        .output()
        .expect("run clawjobs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits until `check` yields something, looking again every 20 ms: tests wait for the event they
/// expect, not for a fixed time. Fails the test, naming `what`, if nothing came `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {within:?} for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Until `n` workers are parked in the Dispatcher (read from `/metrics`).
pub async fn until_parked(app: &TestApp, n: usize) {
    let want = format!("clawjobs_parked_claimers {n}\n");
    eventually(
        &format!("{n} parked workers"),
        Duration::from_secs(10),
        || async { app.metrics().await.contains(&want).then_some(()) },
    )
    .await
}

/// Where in the store `needle` occurs: the files (or collections) that hold its bytes.
pub async fn found_in(app: &TestApp, needle: &str) -> Vec<String> {
    let dir = app.data_dir().expect("a server of spawn_app");
    let needle = needle.as_bytes();
    let holds = |hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    let mut found = Vec::new();
    if on_mongodb() {
        use futures_util::TryStreamExt;
        use mongodb::bson::{RawDocumentBuf, doc};
        let uri = mongodb_flags(dir).pop().expect("the URI");
        let client = mongodb::Client::with_uri_str(&uri).await.expect("client");
        let db = client.default_database().expect("a database in the URI");
        for name in db.list_collection_names().await.expect("collections") {
            let docs: Vec<RawDocumentBuf> = db
                .collection::<RawDocumentBuf>(&name)
                .find(doc! {})
                .await
                .expect("find")
                .try_collect()
                .await
                .expect("documents");
            if docs.iter().any(|d| holds(d.as_bytes())) {
                found.push(name);
            }
        }
    } else {
        for entry in std::fs::read_dir(dir).expect("data dir") {
            let path = entry.expect("entry").path();
            if path.is_file() && holds(&std::fs::read(&path).expect("read")) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}
