//! The embedded SQLite backend: WAL, `synchronous=FULL` (a commit is on disk before anyone hears
//! "done"), and one writer thread that runs commands as savepoints inside one transaction per
//! batch (group commit): a failing command rolls back alone, the batch pays for one fsync.
//! Reads use a small pool of read-only connections; WAL lets them run beside the writer.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::config::PlatformConfig;
use crate::domain::{Principal, Role, TaskStatus};
use crate::economics;
use crate::error::EngineError;
use crate::ledger::{self, AuditReport, Entry, UserBalance};
use crate::rules::{self, penalty::FrozenLot};

/// Most commands one commit carries.
const MAX_BATCH: usize = 1024;
/// Commands waiting for the writer before senders are made to wait (backpressure).
const QUEUE_DEPTH: usize = 16_384;
/// Read connections kept open.
const READ_POOL: usize = 8;

const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
  id TEXT PRIMARY KEY,
  role TEXT NOT NULL,
  email TEXT UNIQUE,
  password_hash TEXT,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
  hash TEXT PRIMARY KEY,
  user_id TEXT NOT NULL REFERENCES users(id),
  role TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  -- An admin token's name: 'env' for the one CLAWJOBS_ADMIN_TOKEN set, or what the operator chose.
  label TEXT
);
CREATE TABLE IF NOT EXISTS workers (
  id TEXT PRIMARY KEY REFERENCES users(id),
  worker_type TEXT,
  model_info TEXT NOT NULL,
  profile TEXT NOT NULL,
  tier TEXT NOT NULL,
  tasks_claimed INTEGER NOT NULL DEFAULT 0,
  tasks_completed INTEGER NOT NULL DEFAULT 0,
  tasks_expired INTEGER NOT NULL DEFAULT 0,
  consecutive_expires INTEGER NOT NULL DEFAULT 0,
  credit_requests INTEGER NOT NULL DEFAULT 0,
  total_earned_cents INTEGER NOT NULL DEFAULT 0,
  suspended_until INTEGER,
  -- Invisible QA: per-worker verdicts, tiers held down by downgrades, the ban.
  qa_pass INTEGER NOT NULL DEFAULT 0,
  qa_flag INTEGER NOT NULL DEFAULT 0,
  qa_fail INTEGER NOT NULL DEFAULT 0,
  tier_penalty INTEGER NOT NULL DEFAULT 0,
  banned_at INTEGER,
  balance_frozen INTEGER NOT NULL DEFAULT 0,
  -- Claims made on the UTC day starting at claims_day (ms), for limits.daily_max_tasks.
  claims_day INTEGER NOT NULL DEFAULT 0,
  claims_today INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  last_seen INTEGER
);
-- A user's two ledger accounts (available, frozen) and running totals.
CREATE TABLE IF NOT EXISTS balances (
  user_id TEXT PRIMARY KEY REFERENCES users(id),
  available_cents INTEGER NOT NULL DEFAULT 0 CHECK (available_cents >= 0),
  frozen_cents INTEGER NOT NULL DEFAULT 0 CHECK (frozen_cents >= 0),
  total_deposited_cents INTEGER NOT NULL DEFAULT 0,
  total_earned_cents INTEGER NOT NULL DEFAULT 0,
  total_withdrawn_cents INTEGER NOT NULL DEFAULT 0,
  version INTEGER NOT NULL DEFAULT 0
);
-- The platform's and the outside world's ledger accounts.
CREATE TABLE IF NOT EXISTS accounts (
  id TEXT PRIMARY KEY,
  balance_cents INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS entries (
  id INTEGER PRIMARY KEY,
  kind TEXT NOT NULL,
  ref_id TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS postings (
  id INTEGER PRIMARY KEY,
  entry_id INTEGER NOT NULL REFERENCES entries(id),
  account TEXT NOT NULL,
  amount_cents INTEGER NOT NULL,
  task_id TEXT
);
CREATE TABLE IF NOT EXISTS tasks (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  buyer_id TEXT NOT NULL,
  type TEXT NOT NULL,
  input TEXT NOT NULL,
  timeout_seconds INTEGER NOT NULL,
  min_output_length INTEGER NOT NULL,
  price_cents INTEGER NOT NULL CHECK (price_cents > 0),
  status TEXT NOT NULL,
  worker_id TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  assigned_at INTEGER,
  deadline INTEGER,
  output TEXT,
  earned_cents INTEGER,
  commission_cents INTEGER,
  completed_at INTEGER,
  credited_at INTEGER,
  funded_by TEXT NOT NULL DEFAULT 'buyer',
  created_at INTEGER NOT NULL,
  -- Invisible QA (never shown to workers): the comparison group, the input key no worker gets
  -- twice, and the part the task plays (original, copy, tiebreak, benchmark).
  qa_group TEXT,
  qa_key TEXT,
  qa_role TEXT
);
CREATE INDEX IF NOT EXISTS tasks_by_buyer ON tasks (buyer_id, seq);
CREATE INDEX IF NOT EXISTS tasks_live ON tasks (status, seq) WHERE status IN ('pending', 'assigned');
CREATE INDEX IF NOT EXISTS tasks_held ON tasks (worker_id) WHERE status = 'assigned';
-- One row per claim: who held which task, so a late submit is told TASK_EXPIRED.
CREATE TABLE IF NOT EXISTS claims (
  task_id TEXT NOT NULL,
  worker_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  claimed_at INTEGER NOT NULL,
  PRIMARY KEY (task_id, attempt)
);
-- Each earning is its own lot, released when its window ends or reversed by a buyer's credit.
CREATE TABLE IF NOT EXISTS lots (
  id INTEGER PRIMARY KEY,
  worker_id TEXT NOT NULL,
  task_id TEXT NOT NULL UNIQUE,
  amount_cents INTEGER NOT NULL CHECK (amount_cents >= 0),
  commission_cents INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  release_at INTEGER NOT NULL,
  -- frozen, released, reversed, or held (a banned worker's: never released).
  status TEXT NOT NULL,
  -- Taken into the QA fund by a penalty.
  deducted_cents INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS lots_due ON lots (release_at) WHERE status = 'frozen';
CREATE INDEX IF NOT EXISTS lots_by_worker ON lots (worker_id, created_at);
CREATE TABLE IF NOT EXISTS idempotency (
  scope TEXT NOT NULL,
  key TEXT NOT NULL,
  body_hash TEXT NOT NULL,
  response TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (scope, key)
);
CREATE TABLE IF NOT EXISTS config (
  key TEXT PRIMARY KEY,
  doc TEXT NOT NULL,
  version INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  updated_by TEXT
);
-- A buyer's task with its QA copies, or one benchmark task.
CREATE TABLE IF NOT EXISTS qa_groups (
  id TEXT PRIMARY KEY,
  qa_type TEXT NOT NULL,
  task_id TEXT NOT NULL,
  qa_task_id TEXT NOT NULL,
  tiebreak_task_id TEXT,
  expected_output TEXT,
  state TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS qa_groups_undecided ON qa_groups (state) WHERE state IN ('open', 'tiebreak');
CREATE TABLE IF NOT EXISTS qa_results (
  seq INTEGER PRIMARY KEY,
  group_id TEXT NOT NULL UNIQUE,
  task_id TEXT NOT NULL,
  qa_task_id TEXT NOT NULL,
  qa_type TEXT NOT NULL,
  similarity REAL NOT NULL,
  dimensions TEXT NOT NULL,
  verdict TEXT NOT NULL,
  worker_ids TEXT NOT NULL,
  blamed_worker_id TEXT,
  tiebreak_task_id TEXT,
  tiebreak TEXT,
  decided_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS qa_results_by_verdict ON qa_results (verdict, seq);
-- Each worker's verdict in a decided comparison, with its tier then.
CREATE TABLE IF NOT EXISTS qa_outcomes (
  worker_id TEXT NOT NULL,
  result_seq INTEGER NOT NULL,
  tier TEXT NOT NULL,
  qa_type TEXT NOT NULL,
  verdict TEXT NOT NULL,
  PRIMARY KEY (worker_id, result_seq)
);
CREATE TABLE IF NOT EXISTS worker_notices (
  id INTEGER PRIMARY KEY,
  worker_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  message TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS worker_notices_by_worker ON worker_notices (worker_id, id);
CREATE TABLE IF NOT EXISTS audit_log (
  id INTEGER PRIMARY KEY,
  actor_id TEXT NOT NULL,
  action TEXT NOT NULL,
  details TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
"#;

/// Version 1 data directories get the QA columns.
const MIGRATE_1_TO_2: &str = r#"
ALTER TABLE workers ADD COLUMN qa_pass INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workers ADD COLUMN qa_flag INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workers ADD COLUMN qa_fail INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workers ADD COLUMN tier_penalty INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workers ADD COLUMN banned_at INTEGER;
ALTER TABLE workers ADD COLUMN balance_frozen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN qa_group TEXT;
ALTER TABLE tasks ADD COLUMN qa_key TEXT;
ALTER TABLE tasks ADD COLUMN qa_role TEXT;
ALTER TABLE lots ADD COLUMN deducted_cents INTEGER NOT NULL DEFAULT 0;
"#;

/// Version 2 data directories get token labels (admin token rotation).
const MIGRATE_2_TO_3: &str = "ALTER TABLE tokens ADD COLUMN label TEXT;";

/// Indexes on columns version 2 added (created after the migration).
const SCHEMA_V2_INDEXES: &str = r#"
CREATE INDEX IF NOT EXISTS tasks_by_qa_key ON tasks (qa_key) WHERE qa_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_by_qa_group ON tasks (qa_group) WHERE qa_group IS NOT NULL;
"#;

/// Claims a pending task that is in no QA group (?1 task, ?2 worker, ?3 now).
const CLAIM_PLAIN: &str = "UPDATE tasks SET status = 'assigned', worker_id = ?2, attempts = attempts + 1, assigned_at = ?3,
        deadline = ?3 + timeout_seconds * 1000
    WHERE id = ?1 AND status = 'pending' AND qa_key IS NULL
    RETURNING type, input, timeout_seconds, min_output_length, price_cents, deadline, attempts";

/// Claims a pending QA task once the worker was found not to have had its input.
const CLAIM_QA: &str = "UPDATE tasks SET status = 'assigned', worker_id = ?2, attempts = attempts + 1, assigned_at = ?3,
        deadline = ?3 + timeout_seconds * 1000
    WHERE id = ?1 AND status = 'pending' AND qa_key IS NOT NULL
    RETURNING type, input, timeout_seconds, min_output_length, price_cents, deadline, attempts";

fn db_err(e: rusqlite::Error) -> EngineError {
    EngineError::Internal(format!("store: {e}"))
}

fn json_err(e: serde_json::Error) -> EngineError {
    EngineError::Internal(format!("store json: {e}"))
}

/// What a command sees: the connection inside the batch's transaction, and a list of the user
/// balances it changed (reported to the observer once the batch commits).
pub struct Tx<'c> {
    conn: &'c Connection,
    touched: Vec<String>,
}

type Done = Box<dyn FnOnce(Result<(), EngineError>) + Send>;
type Job = Box<dyn FnOnce(&mut Tx<'_>) -> (bool, Done) + Send>;

pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
    /// The data directory's lock, held while the store is open: one process per directory.
    _lock: std::fs::File,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

/// Takes the exclusive lock on `data_dir/clawjobs.lock` (released by the OS when the process
/// ends, however it ends), so that a second process cannot open the same store and recover the
/// first one's live tasks while it runs.
fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File, EngineError> {
    use std::io::{Read, Seek, Write};
    let path = data_dir.join("clawjobs.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| EngineError::internal(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(EngineError::internal(format!(
                "the data directory {} is in use by another clawjobs process{}: stop it first, or \
                 give this one its own --data-dir",
                data_dir.display(),
                if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {holder})")
                }
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(EngineError::internal(format!(
                "cannot lock {}: {e}",
                path.display()
            )));
        }
    }
    // The holder's pid, for the message a second process prints.
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    let _ = file.flush();
    Ok(file)
}

fn open_writer(path: &Path) -> Result<Connection, EngineError> {
    let conn = Connection::open(path).map_err(db_err)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = OFF;
         PRAGMA busy_timeout = 5000;
         PRAGMA cache_size = -65536;
         PRAGMA wal_autocheckpoint = 4000;
         PRAGMA temp_store = MEMORY;",
    )
    .map_err(db_err)?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

fn open_reader(path: &Path) -> Result<Connection, EngineError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(db_err)?;
    conn.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA cache_size = -16384;")
        .map_err(db_err)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<(), EngineError> {
    conn.execute_batch(SCHEMA).map_err(db_err)?;
    let found: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(db_err)?;
    match found.and_then(|v| v.parse::<i64>().ok()) {
        None => {
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1)",
                params![SCHEMA_VERSION.to_string()],
            )
            .map_err(db_err)?;
        }
        Some(v) if v > SCHEMA_VERSION => {
            return Err(EngineError::internal(format!(
                "the data directory has schema version {v}, newer than this binary's {SCHEMA_VERSION}"
            )));
        }
        Some(found) => {
            // Each step takes the schema one version further, in order.
            let steps = [
                (1, MIGRATE_1_TO_2, "QA columns"),
                (2, MIGRATE_2_TO_3, "token labels"),
            ];
            for (from, sql, what) in steps.into_iter().filter(|(from, ..)| *from >= found) {
                conn.execute_batch(sql).map_err(db_err)?;
                tracing::info!("store: migrated schema {from} -> {} ({what})", from + 1);
            }
            conn.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
                params![SCHEMA_VERSION.to_string()],
            )
            .map_err(db_err)?;
        }
    }
    conn.execute_batch(SCHEMA_V2_INDEXES).map_err(db_err)?;
    for account in ledger::PLATFORM_ACCOUNTS {
        conn.execute(
            "INSERT OR IGNORE INTO accounts (id) VALUES (?1)",
            params![account],
        )
        .map_err(db_err)?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating and migrating) `clawjobs.db` in `data_dir` and starts the writer thread.
    pub fn open(
        data_dir: &Path,
        observer: Box<dyn BalanceObserver>,
    ) -> Result<SqliteStore, EngineError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            EngineError::internal(format!(
                "cannot create data dir {}: {e}",
                data_dir.display()
            ))
        })?;
        let lock = lock_data_dir(data_dir)?;
        let path = data_dir.join("clawjobs.db");
        let conn = open_writer(&path)?;
        migrate(&conn)?;
        let (tx, rx) = mpsc::channel::<Job>(QUEUE_DEPTH);
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(conn, rx, observer))
            .map_err(EngineError::internal)?;
        Ok(SqliteStore {
            jobs: tx,
            readers: Arc::new(Mutex::new(Vec::new())),
            path,
            _lock: lock,
        })
    }

    /// Runs `f` as one command in the next group commit; resolves after the commit.
    fn write<T, F>(&self, f: F) -> StoreFuture<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T, EngineError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<T, EngineError>>();
        let job: Job = Box::new(move |tx| {
            let result = f(tx);
            let ok = result.is_ok();
            let done: Done = Box::new(move |commit| {
                let _ = reply.send(match (result, commit) {
                    (Err(e), _) | (Ok(_), Err(e)) => Err(e),
                    (Ok(v), Ok(())) => Ok(v),
                });
            });
            (ok, done)
        });
        let jobs = self.jobs.clone();
        Box::pin(async move {
            jobs.send(job)
                .await
                .map_err(|_| EngineError::internal("store writer stopped"))?;
            answer
                .await
                .map_err(|_| EngineError::internal("store writer dropped a command"))?
        })
    }

    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let conn = {
            let mut pool = self
                .readers
                .lock()
                .map_err(|_| EngineError::internal("reader pool poisoned"))?;
            pool.pop()
        };
        let conn = match conn {
            Some(c) => c,
            None => open_reader(&self.path)?,
        };
        let result = f(&conn);
        if let Ok(mut pool) = self.readers.lock()
            && pool.len() < READ_POOL
        {
            pool.push(conn);
        }
        result
    }

    /// Several reads that must agree with each other: one read transaction, one snapshot.
    fn read_snapshot<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, EngineError>,
    ) -> StoreFuture<T> {
        self.read(|c| {
            c.execute_batch("BEGIN").map_err(db_err)?;
            let out = f(c);
            let _ = c.execute_batch("COMMIT");
            out
        })
    }

    /// A short point read, answered at once on the caller's thread.
    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, EngineError>,
    ) -> StoreFuture<T> {
        let r = self.with_reader(f);
        Box::pin(async move { r })
    }
}

fn writer_loop(conn: Connection, mut rx: mpsc::Receiver<Job>, observer: Box<dyn BalanceObserver>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut dones: Vec<Done> = Vec::with_capacity(MAX_BATCH);
    let mut touched: Vec<String> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            // Dropping the jobs unanswered tells each caller that the command did not run.
            tracing::error!(error = %e, "store: cannot begin a transaction");
            batch.clear();
            continue;
        }
        for job in batch.drain(..) {
            savepoint(&conn, "SAVEPOINT cmd");
            let mut tx = Tx {
                conn: &conn,
                touched: Vec::new(),
            };
            let outcome = catch_unwind(AssertUnwindSafe(|| job(&mut tx)));
            match outcome {
                Ok((true, done)) => {
                    savepoint(&conn, "RELEASE cmd");
                    touched.append(&mut tx.touched);
                    dones.push(done);
                }
                Ok((false, done)) => {
                    savepoint(&conn, "ROLLBACK TO cmd");
                    savepoint(&conn, "RELEASE cmd");
                    dones.push(done);
                }
                Err(_) => {
                    // A bug in a command: undo it; its caller sees the channel closed.
                    tracing::error!("store: a command panicked and was rolled back");
                    let _ = conn.execute_batch("ROLLBACK TO cmd; RELEASE cmd");
                }
            }
        }
        let committed = conn.execute_batch("COMMIT").map_err(db_err);
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
            touched.clear();
        }
        if !touched.is_empty() {
            touched.sort();
            touched.dedup();
            let snapshots: Vec<BalanceSnapshot> = touched
                .drain(..)
                .filter(|u| observer.watches(u))
                .filter_map(|u| read_balance(&conn, &u).ok().flatten())
                .collect();
            if !snapshots.is_empty() {
                observer.observe(&snapshots);
            }
        }
        for done in dones.drain(..) {
            done(committed.clone());
        }
    }
    tracing::info!("store writer stopped");
}

/// Savepoint statements run for every command, so they are prepared once.
fn savepoint(conn: &Connection, sql: &str) {
    if let Err(e) = conn.prepare_cached(sql).and_then(|mut s| s.execute([])) {
        tracing::error!(error = %e, sql, "store: savepoint statement failed");
    }
}

// ---------- helpers used inside commands ----------

impl Tx<'_> {
    /// Writes a journal entry and applies its postings, refusing to take a guarded account below
    /// zero. Runs inside the command's savepoint, so a refusal undoes everything the command did.
    fn apply(&mut self, entry: &Entry, now_ms: i64) -> Result<i64, EngineError> {
        entry
            .check()
            .map_err(|e| EngineError::internal(format!("ledger: {e}")))?;
        let c = self.conn;
        c.prepare_cached("INSERT INTO entries (kind, ref_id, created_at) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute(params![entry.kind.as_str(), entry.ref_id, now_ms]))
            .map_err(db_err)?;
        let entry_id = c.last_insert_rowid();
        for p in &entry.postings {
            c.prepare_cached("INSERT INTO postings (entry_id, account, amount_cents, task_id) VALUES (?1, ?2, ?3, ?4)")
                .and_then(|mut s| s.execute(params![entry_id, p.account, p.amount_cents, entry.task_id]))
                .map_err(db_err)?;
            let after: Option<i64> = match ledger::owner(&p.account) {
                Some((user, which)) => {
                    let sql = match which {
                        UserBalance::Available => {
                            "UPDATE balances SET available_cents = available_cents + ?1, version = version + 1
                             WHERE user_id = ?2 RETURNING available_cents"
                        }
                        UserBalance::Frozen => {
                            "UPDATE balances SET frozen_cents = frozen_cents + ?1, version = version + 1
                             WHERE user_id = ?2 RETURNING frozen_cents"
                        }
                    };
                    let user = user.to_string();
                    let after = c
                        .prepare_cached(sql)
                        .and_then(|mut s| s.query_row(params![p.amount_cents, user], |r| r.get(0)).optional());
                    if !self.touched.contains(&user) {
                        self.touched.push(user);
                    }
                    match after {
                        Ok(v) => v,
                        // The CHECK constraint is the last line of defence for user balances.
                        Err(rusqlite::Error::SqliteFailure(f, _)) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                            return Err(EngineError::internal(format!("ledger: {} would go negative", p.account)));
                        }
                        Err(e) => return Err(db_err(e)),
                    }
                }
                None => c
                    .prepare_cached("UPDATE accounts SET balance_cents = balance_cents + ?1 WHERE id = ?2 RETURNING balance_cents")
                    .and_then(|mut s| s.query_row(params![p.amount_cents, p.account], |r| r.get(0)).optional())
                    .map_err(db_err)?,
            };
            match after {
                None => {
                    return Err(EngineError::internal(format!(
                        "ledger: no account {}",
                        p.account
                    )));
                }
                Some(v) if v < 0 && !ledger::may_go_negative(&p.account) => {
                    return Err(EngineError::internal(format!(
                        "ledger: {} would go negative",
                        p.account
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(entry_id)
    }

    fn available(&self, user_id: &str) -> Result<Option<i64>, EngineError> {
        self.conn
            .prepare_cached("SELECT available_cents FROM balances WHERE user_id = ?1")
            .and_then(|mut s| s.query_row(params![user_id], |r| r.get(0)).optional())
            .map_err(db_err)
    }

    fn audit(
        &self,
        actor: &str,
        action: &str,
        details: &Value,
        now_ms: i64,
    ) -> Result<(), EngineError> {
        self.conn
            .prepare_cached("INSERT INTO audit_log (actor_id, action, details, created_at) VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut s| s.execute(params![actor, action, details.to_string(), now_ms]))
            .map_err(db_err)?;
        Ok(())
    }

    /// Runs `f` once per idempotency key: a repeat with the same body gets the stored answer back
    /// (through `replay`), a repeat with another body is refused.
    fn idempotent<T: Serialize + DeserializeOwned>(
        &mut self,
        idem: Option<&IdemKey>,
        now_ms: i64,
        replay: impl FnOnce(T) -> T,
        f: impl FnOnce(&mut Self) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let Some(k) = idem else { return f(self) };
        let found: Option<(String, String)> = self
            .conn
            .prepare_cached(
                "SELECT body_hash, response FROM idempotency WHERE scope = ?1 AND key = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![k.scope, k.key], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(db_err)?;
        if let Some((hash, response)) = found {
            if hash != k.body_hash {
                return Err(EngineError::Conflict(
                    "this Idempotency-Key was already used with a different request body".into(),
                ));
            }
            return Ok(replay(serde_json::from_str(&response).map_err(json_err)?));
        }
        let out = f(self)?;
        let response = serde_json::to_string(&out).map_err(json_err)?;
        self.conn
            .prepare_cached("INSERT INTO idempotency (scope, key, body_hash, response, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")
            .and_then(|mut s| s.execute(params![k.scope, k.key, k.body_hash, response, now_ms]))
            .map_err(db_err)?;
        Ok(out)
    }

    /// A worker's stats, tier, and how many levels QA downgrades hold it down.
    fn worker_stats(
        &self,
        worker_id: &str,
    ) -> Result<Option<(WorkerStats, String, u32)>, EngineError> {
        self.conn
            .prepare_cached(
                "SELECT tasks_claimed, tasks_completed, tasks_expired, consecutive_expires, credit_requests,
                        total_earned_cents, tier, tier_penalty FROM workers WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.query_row(params![worker_id], |r| Ok((stats_from_row(r, 0)?, r.get(6)?, r.get(7)?)))
                    .optional()
            })
            .map_err(db_err)
    }

    fn set_tier(&self, worker_id: &str, tier: &str) -> Result<(), EngineError> {
        self.conn
            .prepare_cached("UPDATE workers SET tier = ?2 WHERE id = ?1 AND tier <> ?2")
            .and_then(|mut s| s.execute(params![worker_id, tier]))
            .map_err(db_err)?;
        Ok(())
    }

    fn task_live(&self, task_id: &str) -> Result<Option<LiveTask>, EngineError> {
        self.conn
            .prepare_cached(&format!("SELECT {LIVE_COLS} FROM tasks WHERE id = ?1"))
            .and_then(|mut s| s.query_row(params![task_id], live_from_row).optional())
            .map_err(db_err)
    }

    /// Returns a live task's escrow to whoever paid it (the buyer, or the QA fund for a QA copy)
    /// and marks it failed; its QA group, if any, can no longer be compared. Returns the buyer.
    fn refund(&mut self, task_id: &str, now_ms: i64) -> Result<Option<String>, EngineError> {
        let found: Option<(String, i64, String, Option<String>)> = self
            .conn
            .prepare_cached(
                "UPDATE tasks SET status = 'failed', worker_id = NULL, deadline = NULL, completed_at = ?2
                 WHERE id = ?1 AND status IN ('pending', 'assigned')
                 RETURNING buyer_id, price_cents, funded_by, qa_group",
            )
            .and_then(|mut s| {
                s.query_row(params![task_id, now_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                    .optional()
            })
            .map_err(db_err)?;
        let Some((buyer_id, price_cents, funded_by, qa_group)) = found else {
            return Ok(None);
        };
        let entry = rules::money::refund(
            task_id,
            &buyer_id,
            funded_by == FUNDED_BY_PLATFORM,
            price_cents,
        );
        self.apply(&entry, now_ms)?;
        if let Some(group) = qa_group {
            self.conn
                .prepare_cached("UPDATE qa_groups SET state = 'void' WHERE id = ?1 AND state IN ('open', 'tiebreak')")
                .and_then(|mut s| s.execute(params![group]))
                .map_err(db_err)?;
        }
        Ok(Some(buyer_id))
    }

    /// Pays a QA task's escrow from the QA fund.
    fn fund_qa_task(
        &mut self,
        task_id: &str,
        price_cents: i64,
        now_ms: i64,
    ) -> Result<(), EngineError> {
        self.apply(&rules::money::qa_pay(task_id, price_cents), now_ms)?;
        Ok(())
    }

    /// Makes a buyer's task the original of a new QA group of `qa_type` with one copy.
    fn open_group(
        &mut self,
        task_id: &str,
        qa_type: QaType,
        now_ms: i64,
    ) -> Result<LiveTask, EngineError> {
        self.conn
            .prepare_cached(
                "UPDATE tasks SET qa_group = ?1, qa_key = ?1, qa_role = 'original' WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![task_id]))
            .map_err(db_err)?;
        let copy = self.copy_task(task_id, task_id, QaRole::Copy, now_ms)?;
        self.conn
            .prepare_cached(
                "INSERT INTO qa_groups (id, qa_type, task_id, qa_task_id, state, created_at) VALUES (?1, ?2, ?1, ?3, 'open', ?4)",
            )
            .and_then(|mut s| s.execute(params![task_id, qa_type.as_str(), copy.task_id, now_ms]))
            .map_err(db_err)?;
        Ok(copy)
    }

    /// A pending copy of `source` (same type, input, constraints and price), paid by the QA fund.
    fn copy_task(
        &mut self,
        source: &str,
        group: &str,
        role: QaRole,
        now_ms: i64,
    ) -> Result<LiveTask, EngineError> {
        let task_id = crate::domain::new_id("task");
        let (seq, task_type, price_cents): (i64, String, i64) = self
            .conn
            .prepare_cached(
                "INSERT INTO tasks (id, buyer_id, type, input, timeout_seconds, min_output_length, price_cents, status,
                                    funded_by, created_at, qa_group, qa_key, qa_role)
                 SELECT ?2, ?3, type, input, timeout_seconds, min_output_length, price_cents, 'pending',
                        'platform', ?4, ?5, qa_key, ?6
                 FROM tasks WHERE id = ?1
                 RETURNING seq, type, price_cents",
            )
            .and_then(|mut s| {
                s.query_row(params![source, task_id, QA_BUYER, now_ms, group, role.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
            })
            .map_err(db_err)?;
        self.fund_qa_task(&task_id, price_cents, now_ms)?;
        let qa_key = Some(group.to_string());
        Ok(LiveTask {
            seq,
            task_id,
            task_type,
            price_cents,
            created_at_ms: now_ms,
            buyer_id: QA_BUYER.into(),
            assigned: None,
            qa_key,
        })
    }

    fn notice(
        &self,
        worker_id: &str,
        kind: &str,
        message: &str,
        now_ms: i64,
    ) -> Result<(), EngineError> {
        self.conn
            .prepare_cached("INSERT INTO worker_notices (worker_id, kind, message, created_at) VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut s| s.execute(params![worker_id, kind, message, now_ms]))
            .map_err(db_err)?;
        Ok(())
    }

    /// Re-places a worker's tier after its stats or its QA downgrades changed.
    fn replace_tier(&self, worker_id: &str, cfg: &PlatformConfig) -> Result<(), EngineError> {
        if let Some((stats, tier, penalty)) = self.worker_stats(worker_id)? {
            let placed = economics::placement_penalised(cfg, &stats.tier_stats(), penalty);
            if placed != tier {
                self.set_tier(worker_id, placed)?;
            }
        }
        Ok(())
    }

    /// Gives a buyer back a task's price out of the worker's lot for it: the lot is reversed (its
    /// commission comes back from revenue, anything a penalty took from the QA fund). With
    /// `count_credit`, the worker's record counts a credit request. None when the lot is gone.
    fn reverse_lot(
        &mut self,
        task_id: &str,
        buyer_id: &str,
        count_credit: bool,
        now_ms: i64,
    ) -> Result<Option<(String, i64)>, EngineError> {
        let lot: Option<(i64, String, i64, i64, i64)> = self
            .conn
            .prepare_cached(
                "SELECT id, worker_id, amount_cents, commission_cents, deducted_cents FROM lots
                 WHERE task_id = ?1 AND status IN ('frozen', 'held')",
            )
            .and_then(|mut s| {
                s.query_row(params![task_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .optional()
            })
            .map_err(db_err)?;
        let Some((lot_id, worker_id, amount, commission, deducted)) = lot else {
            return Ok(None);
        };
        let lot = rules::money::Lot {
            worker_id: &worker_id,
            amount_cents: amount,
            commission_cents: commission,
            deducted_cents: deducted,
        };
        let price = lot.price_cents();
        self.apply(&rules::money::reversal(task_id, buyer_id, &lot), now_ms)?;
        self.conn
            .prepare_cached("UPDATE lots SET status = 'reversed' WHERE id = ?1")
            .and_then(|mut s| s.execute(params![lot_id]))
            .map_err(db_err)?;
        self.mark_credited(task_id, now_ms)?;
        self.unearn(&worker_id, amount, count_credit)?;
        Ok(Some((worker_id, price)))
    }

    fn mark_credited(&self, task_id: &str, now_ms: i64) -> Result<(), EngineError> {
        self.conn
            .prepare_cached("UPDATE tasks SET status = 'credited', credited_at = ?2 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![task_id, now_ms]))
            .map_err(db_err)?;
        Ok(())
    }

    /// Takes `cents` off a worker's earned totals (a reversed lot or a QA deduction); with
    /// `count_credit`, its record counts a credit request.
    fn unearn(&self, worker_id: &str, cents: i64, count_credit: bool) -> Result<(), EngineError> {
        self.conn
            .prepare_cached(
                "UPDATE balances SET total_earned_cents = total_earned_cents - ?2, version = version + 1 WHERE user_id = ?1",
            )
            .and_then(|mut s| s.execute(params![worker_id, cents]))
            .map_err(db_err)?;
        self.conn
            .prepare_cached(
                "UPDATE workers SET credit_requests = credit_requests + ?3, total_earned_cents = total_earned_cents - ?2 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![worker_id, cents, i64::from(count_credit)]))
            .map_err(db_err)?;
        Ok(())
    }
}

impl Tx<'_> {
    /// Walks `worker_id` one step down the penalty ladder for a QA fail (its `qa_fail` count is
    /// already raised), as [`rules::penalty::plan`] says. Returns whether the worker is now banned.
    fn penalise(
        &mut self,
        worker_id: &str,
        now_ms: i64,
        cfg: &PlatformConfig,
    ) -> Result<bool, EngineError> {
        let fails: u32 = self
            .conn
            .prepare_cached("SELECT qa_fail FROM workers WHERE id = ?1")
            .and_then(|mut s| s.query_row(params![worker_id], |r| r.get(0)))
            .map_err(db_err)?;
        let lots: Vec<FrozenLot> = {
            let mut s = self
                .conn
                .prepare_cached("SELECT id, amount_cents FROM lots WHERE worker_id = ?1 AND status IN ('frozen', 'held')")
                .map_err(db_err)?;
            let rows = s
                .query_map(params![worker_id], |r| {
                    Ok(FrozenLot {
                        lot_id: r.get(0)?,
                        amount_cents: r.get(1)?,
                    })
                })
                .map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?
        };
        let plan = rules::penalty::plan(worker_id, fails, &lots, &cfg.qa.penalty);
        for (lot_id, cut) in &plan.cuts {
            self.conn
                .prepare_cached(
                    "UPDATE lots SET amount_cents = amount_cents - ?2, deducted_cents = deducted_cents + ?2 WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![lot_id, cut]))
                .map_err(db_err)?;
        }
        if let Some(entry) = &plan.entry {
            self.apply(entry, now_ms)?;
            self.unearn(worker_id, plan.deducted_cents, false)?;
        }
        if plan.downgrade {
            self.conn
                .prepare_cached("UPDATE workers SET tier_penalty = tier_penalty + 1 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![worker_id]))
                .map_err(db_err)?;
            self.replace_tier(worker_id, cfg)?;
        }
        if plan.freeze_balance {
            // Held lots are never released; buyers can still be credited from them.
            self.conn
                .prepare_cached(
                    "UPDATE lots SET status = 'held' WHERE worker_id = ?1 AND status = 'frozen'",
                )
                .and_then(|mut s| s.execute(params![worker_id]))
                .map_err(db_err)?;
        }
        if plan.ban || plan.freeze_balance {
            self.conn
                .prepare_cached(
                    "UPDATE workers SET banned_at = CASE WHEN ?2 THEN coalesce(banned_at, ?3) ELSE banned_at END,
                            balance_frozen = max(balance_frozen, ?4)
                     WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![worker_id, plan.ban, now_ms, plan.freeze_balance]))
                .map_err(db_err)?;
        }
        self.notice(worker_id, plan.notice.kind, &plan.notice.message, now_ms)?;
        Ok(plan.ban)
    }

    /// The buyer's original failed QA: the buyer gets its price back, from the worker's lot while
    /// it is frozen, else from the QA fund. Not counted as a credit request of the worker (the
    /// penalty ladder already answers for it). Returns (buyer, task, cents).
    fn auto_credit(
        &mut self,
        task_id: &str,
        now_ms: i64,
    ) -> Result<Option<(String, String, i64)>, EngineError> {
        let found: Option<(String, i64)> = self
            .conn
            .prepare_cached("SELECT buyer_id, price_cents FROM tasks WHERE id = ?1 AND status = 'completed' AND funded_by = 'buyer'")
            .and_then(|mut s| s.query_row(params![task_id], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .map_err(db_err)?;
        let Some((buyer_id, price)) = found else {
            return Ok(None);
        };
        let cents = match self.reverse_lot(task_id, &buyer_id, false, now_ms)? {
            Some((_, cents)) => cents,
            None => {
                self.apply(&rules::money::qa_credit(task_id, &buyer_id, price), now_ms)?;
                self.mark_credited(task_id, now_ms)?;
                price
            }
        };
        self.audit(
            "qa",
            "task.auto_credit",
            &serde_json::json!({ "task_id": task_id, "cents": cents }),
            now_ms,
        )?;
        Ok(Some((buyer_id, task_id.to_string(), cents)))
    }
}

/// `tasks.funded_by` of QA copies and benchmarks.
const FUNDED_BY_PLATFORM: &str = "platform";

fn stats_from_row(r: &Row<'_>, at: usize) -> rusqlite::Result<WorkerStats> {
    Ok(WorkerStats {
        tasks_claimed: r.get::<_, i64>(at)? as u64,
        tasks_completed: r.get::<_, i64>(at + 1)? as u64,
        tasks_expired: r.get::<_, i64>(at + 2)? as u64,
        consecutive_expires: r.get::<_, i64>(at + 3)? as u64,
        credit_requests: r.get::<_, i64>(at + 4)? as u64,
        total_earned_cents: r.get(at + 5)?,
    })
}

const BALANCE_COLS: &str = "user_id, available_cents, frozen_cents, total_deposited_cents, total_earned_cents, total_withdrawn_cents, version";

fn balance_from_row(r: &Row<'_>) -> rusqlite::Result<BalanceSnapshot> {
    Ok(BalanceSnapshot {
        user_id: r.get(0)?,
        available_cents: r.get(1)?,
        frozen_cents: r.get(2)?,
        total_deposited_cents: r.get(3)?,
        total_earned_cents: r.get(4)?,
        total_withdrawn_cents: r.get(5)?,
        version: r.get(6)?,
    })
}

fn read_balance(c: &Connection, user_id: &str) -> Result<Option<BalanceSnapshot>, EngineError> {
    c.prepare_cached(&format!(
        "SELECT {BALANCE_COLS} FROM balances WHERE user_id = ?1"
    ))
    .and_then(|mut s| s.query_row(params![user_id], balance_from_row).optional())
    .map_err(db_err)
}

const WORKER_COLS: &str =
    "id, worker_type, model_info, profile, tier, tasks_claimed, tasks_completed, tasks_expired,
    consecutive_expires, credit_requests, total_earned_cents, suspended_until, created_at, claims_day, claims_today,
    (SELECT count(*) FROM tasks t WHERE t.worker_id = workers.id AND t.status = 'assigned'), banned_at";

fn worker_from_row(r: &Row<'_>) -> rusqlite::Result<(WorkerRecord, String, String)> {
    Ok((
        WorkerRecord {
            worker_id: r.get(0)?,
            worker_type: r.get(1)?,
            model_info: Value::Null,
            profile: WorkerProfile::default(),
            tier: r.get(4)?,
            stats: stats_from_row(r, 5)?,
            suspended_until_ms: r.get(11)?,
            created_at_ms: r.get(12)?,
            claims_day_ms: r.get(13)?,
            claims_today: r.get(14)?,
            held: r.get(15)?,
            banned_at_ms: r.get(16)?,
        },
        r.get(2)?,
        r.get(3)?,
    ))
}

fn read_worker(c: &Connection, worker_id: &str) -> Result<Option<WorkerRecord>, EngineError> {
    let found = c
        .prepare_cached(&format!("SELECT {WORKER_COLS} FROM workers WHERE id = ?1"))
        .and_then(|mut s| s.query_row(params![worker_id], worker_from_row).optional())
        .map_err(db_err)?;
    let Some((mut w, model_info, profile)) = found else {
        return Ok(None);
    };
    w.model_info = serde_json::from_str(&model_info).map_err(json_err)?;
    w.profile = serde_json::from_str(&profile).map_err(json_err)?;
    Ok(Some(w))
}

const TASK_COLS: &str =
    "seq, id, buyer_id, type, input, timeout_seconds, min_output_length, price_cents, status,
    worker_id, attempts, deadline, output, earned_cents, created_at, completed_at";

fn task_from_row(r: &Row<'_>) -> rusqlite::Result<TaskRecord> {
    let status: String = r.get(8)?;
    Ok(TaskRecord {
        seq: r.get(0)?,
        task_id: r.get(1)?,
        buyer_id: r.get(2)?,
        task_type: r.get(3)?,
        input: r.get(4)?,
        constraints: Constraints {
            timeout_seconds: r.get(5)?,
            min_output_length: r.get(6)?,
        },
        price_cents: r.get(7)?,
        status: TaskStatus::parse(&status).unwrap_or(TaskStatus::Failed),
        worker_id: r.get(9)?,
        attempts: r.get(10)?,
        deadline_ms: r.get(11)?,
        output: r.get(12)?,
        earned_cents: r.get(13)?,
        created_at_ms: r.get(14)?,
        completed_at_ms: r.get(15)?,
    })
}

const LIVE_COLS: &str = "seq, id, type, price_cents, created_at, status, worker_id, attempts, deadline, buyer_id, qa_key";

fn live_from_row(r: &Row<'_>) -> rusqlite::Result<LiveTask> {
    let status: String = r.get(5)?;
    let assigned = if status == "assigned" {
        Some(Assignment {
            worker_id: r.get(6)?,
            attempt: r.get(7)?,
            deadline_ms: r.get(8)?,
        })
    } else {
        None
    };
    Ok(LiveTask {
        seq: r.get(0)?,
        task_id: r.get(1)?,
        task_type: r.get(2)?,
        price_cents: r.get(3)?,
        created_at_ms: r.get(4)?,
        buyer_id: r.get(9)?,
        assigned,
        qa_key: r.get(10)?,
    })
}

fn read_task(c: &Connection, task_id: &str) -> Result<Option<TaskRecord>, EngineError> {
    c.prepare_cached(&format!("SELECT {TASK_COLS} FROM tasks WHERE id = ?1"))
        .and_then(|mut s| s.query_row(params![task_id], task_from_row).optional())
        .map_err(db_err)
}

/// The hidden QA side of a task, read only inside the store.
struct QaTag {
    /// A QA copy or benchmark: paid from the QA fund.
    platform_paid: bool,
    group: Option<String>,
}

/// A task with its hidden QA side, in one read (settlement needs both).
fn read_task_tagged(
    c: &Connection,
    task_id: &str,
) -> Result<Option<(TaskRecord, QaTag)>, EngineError> {
    c.prepare_cached(&format!(
        "SELECT {TASK_COLS}, funded_by, qa_group FROM tasks WHERE id = ?1"
    ))
    .and_then(|mut s| {
        s.query_row(params![task_id], |r| {
            let tag = QaTag {
                platform_paid: r.get::<_, String>(16)? == FUNDED_BY_PLATFORM,
                group: r.get(17)?,
            };
            Ok((task_from_row(r)?, tag))
        })
        .optional()
    })
    .map_err(db_err)
}

fn insert_user(
    c: &Connection,
    id: &str,
    role: Role,
    email: Option<&str>,
    password_hash: Option<&str>,
    now_ms: i64,
) -> Result<(), EngineError> {
    let inserted = c
        .prepare_cached("INSERT INTO users (id, role, email, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")
        .and_then(|mut s| s.execute(params![id, role.as_str(), email, password_hash, now_ms]));
    match inserted {
        Ok(_) => {}
        Err(rusqlite::Error::SqliteFailure(f, _))
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            return Err(EngineError::Conflict(
                "an account with this email already exists".into(),
            ));
        }
        Err(e) => return Err(db_err(e)),
    }
    c.prepare_cached("INSERT INTO balances (user_id) VALUES (?1)")
        .and_then(|mut s| s.execute(params![id]))
        .map_err(db_err)?;
    Ok(())
}

fn insert_token(
    c: &Connection,
    hash: &str,
    user_id: &str,
    role: Role,
    now_ms: i64,
) -> Result<(), EngineError> {
    insert_labelled_token(c, hash, user_id, role, None, now_ms)
}

fn insert_labelled_token(
    c: &Connection,
    hash: &str,
    user_id: &str,
    role: Role,
    label: Option<&str>,
    now_ms: i64,
) -> Result<(), EngineError> {
    c.prepare_cached(
        "INSERT INTO tokens (hash, user_id, role, created_at, label) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| s.execute(params![hash, user_id, role.as_str(), now_ms, label]))
    .map_err(db_err)?;
    Ok(())
}

/// The id an operator names an admin token by: the first characters of its hash.
const TOKEN_ID_CHARS: usize = 12;

impl Store for SqliteStore {
    fn create_buyer(&self, b: NewBuyer) -> StoreFuture<BalanceSnapshot> {
        self.write(move |tx| {
            insert_user(
                tx.conn,
                &b.user_id,
                Role::Buyer,
                Some(&b.email),
                Some(&b.password_hash),
                b.now_ms,
            )?;
            insert_token(tx.conn, &b.token_hash, &b.user_id, Role::Buyer, b.now_ms)?;
            if let Some(entry) = rules::money::signup_credit(&b.user_id, b.signup_credit_cents) {
                tx.apply(&entry, b.now_ms)?;
            }
            read_balance(tx.conn, &b.user_id)?
                .ok_or_else(|| EngineError::internal("new buyer has no balance row"))
        })
    }

    fn find_login(&self, email: String) -> StoreFuture<Option<(String, String)>> {
        self.read(move |c| {
            c.prepare_cached("SELECT id, password_hash FROM users WHERE email = ?1 AND password_hash IS NOT NULL")
                .and_then(|mut s| s.query_row(params![email], |r| Ok((r.get(0)?, r.get(1)?))).optional())
                .map_err(db_err)
        })
    }

    fn add_token(
        &self,
        token_hash: String,
        user_id: String,
        role: Role,
        now_ms: i64,
    ) -> StoreFuture<()> {
        self.write(move |tx| insert_token(tx.conn, &token_hash, &user_id, role, now_ms))
    }

    fn resolve_token(&self, token_hash: String) -> StoreFuture<Option<Principal>> {
        self.read(move |c| {
            let found: Option<(String, String)> = c
                .prepare_cached("SELECT user_id, role FROM tokens WHERE hash = ?1")
                .and_then(|mut s| {
                    s.query_row(params![token_hash], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                })
                .map_err(db_err)?;
            Ok(found.and_then(|(id, role)| Role::parse(&role).map(|role| Principal { id, role })))
        })
    }

    fn add_admin_token(
        &self,
        token_hash: String,
        label: String,
        now_ms: i64,
    ) -> StoreFuture<AdminToken> {
        self.write(move |tx| {
            if label == ENV_TOKEN_LABEL {
                // The environment's token replaces the one it set before (and only that one).
                tx.conn
                    .prepare_cached(
                        "DELETE FROM tokens WHERE role = 'admin' AND label = ?1 AND hash <> ?2",
                    )
                    .and_then(|mut s| s.execute(params![label, token_hash]))
                    .map_err(db_err)?;
            }
            let exists: bool = tx
                .conn
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM tokens WHERE hash = ?1)")
                .and_then(|mut s| s.query_row(params![token_hash], |r| r.get(0)))
                .map_err(db_err)?;
            if exists {
                tx.conn
                    .prepare_cached(
                        "UPDATE tokens SET label = ?2 WHERE hash = ?1 AND role = 'admin'",
                    )
                    .and_then(|mut s| s.execute(params![token_hash, label]))
                    .map_err(db_err)?;
            } else {
                insert_labelled_token(
                    tx.conn,
                    &token_hash,
                    "admin",
                    Role::Admin,
                    Some(&label),
                    now_ms,
                )?;
            }
            Ok(AdminToken {
                id: token_hash[..TOKEN_ID_CHARS].to_string(),
                label: Some(label),
                created_at_ms: now_ms,
            })
        })
    }

    fn admin_tokens(&self) -> StoreFuture<Vec<AdminToken>> {
        self.read(|c| {
            let mut s = c
                .prepare("SELECT hash, label, created_at FROM tokens WHERE role = 'admin' ORDER BY created_at, hash")
                .map_err(db_err)?;
            let rows = s
                .query_map([], |r| {
                    let hash: String = r.get(0)?;
                    Ok(AdminToken { id: hash[..TOKEN_ID_CHARS.min(hash.len())].to_string(), label: r.get(1)?, created_at_ms: r.get(2)? })
                })
                .map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
    }

    fn revoke_admin_token(&self, id: String) -> StoreFuture<AdminToken> {
        self.write(move |tx| {
            if id.len() < 6 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(EngineError::validation_field("id", "a token id is 6 or more hex characters, as `admin tokens list` shows"));
            }
            let found: Vec<(String, Option<String>, i64)> = {
                let mut s = tx
                    .conn
                    .prepare_cached("SELECT hash, label, created_at FROM tokens WHERE role = 'admin' AND substr(hash, 1, ?2) = ?1")
                    .map_err(db_err)?;
                let rows = s
                    .query_map(params![id.to_ascii_lowercase(), id.len() as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .map_err(db_err)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?
            };
            let (hash, label, created_at_ms) = match found.as_slice() {
                [one] => one.clone(),
                [] => return Err(EngineError::NotFound(format!("no admin token {id}"))),
                _ => return Err(EngineError::Conflict(format!("{id} names {} admin tokens: give more of the id", found.len()))),
            };
            tx.conn
                .prepare_cached("DELETE FROM tokens WHERE hash = ?1")
                .and_then(|mut s| s.execute(params![hash]))
                .map_err(db_err)?;
            Ok(AdminToken { id: hash[..TOKEN_ID_CHARS].to_string(), label, created_at_ms })
        })
    }

    fn create_worker(&self, w: NewWorker) -> StoreFuture<WorkerRecord> {
        self.write(move |tx| {
            insert_user(tx.conn, &w.worker_id, Role::Worker, None, None, w.now_ms)?;
            insert_token(tx.conn, &w.token_hash, &w.worker_id, Role::Worker, w.now_ms)?;
            let profile = serde_json::to_string(&w.profile).map_err(json_err)?;
            tx.conn
                .prepare_cached(
                    "INSERT INTO workers (id, worker_type, model_info, profile, tier, created_at, last_seen)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                )
                .and_then(|mut s| s.execute(params![w.worker_id, w.worker_type, w.model_info.to_string(), profile, w.tier, w.now_ms]))
                .map_err(db_err)?;
            read_worker(tx.conn, &w.worker_id)?.ok_or_else(|| EngineError::internal("new worker not found"))
        })
    }

    fn worker(&self, worker_id: String) -> StoreFuture<Option<WorkerRecord>> {
        self.read(move |c| read_worker(c, &worker_id))
    }

    fn update_worker_profile(
        &self,
        worker_id: String,
        profile: WorkerProfile,
    ) -> StoreFuture<WorkerRecord> {
        self.write(move |tx| {
            let text = serde_json::to_string(&profile).map_err(json_err)?;
            let n = tx
                .conn
                .prepare_cached("UPDATE workers SET profile = ?2 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![worker_id, text]))
                .map_err(db_err)?;
            if n == 0 {
                return Err(EngineError::NotFound("no such worker".into()));
            }
            read_worker(tx.conn, &worker_id)?
                .ok_or_else(|| EngineError::NotFound("no such worker".into()))
        })
    }

    fn worker_earned_since(&self, worker_id: String, since_ms: i64) -> StoreFuture<i64> {
        self.read(move |c| {
            c.prepare_cached(
                "SELECT coalesce(sum(amount_cents), 0) FROM lots WHERE worker_id = ?1 AND created_at >= ?2 AND status <> 'reversed'",
            )
            .and_then(|mut s| s.query_row(params![worker_id, since_ms], |r| r.get(0)))
            .map_err(db_err)
        })
    }

    fn balance(&self, user_id: String) -> StoreFuture<Option<BalanceSnapshot>> {
        self.read(move |c| read_balance(c, &user_id))
    }

    fn post_task(&self, t: NewTask) -> StoreFuture<TaskPosted> {
        self.write(move |tx| {
            let idem = t.idempotency.clone();
            tx.idempotent(idem.as_ref(), t.now_ms, |mut p: TaskPosted| { p.replayed = true; p }, |tx| {
                let available = tx.available(&t.buyer_id)?.ok_or_else(|| EngineError::NotFound("no such buyer".into()))?;
                if available < t.price_cents {
                    return Err(EngineError::InsufficientBalance { needed_cents: t.price_cents, available_cents: available });
                }
                tx.conn
                    .prepare_cached(
                        "INSERT INTO tasks (id, buyer_id, type, input, timeout_seconds, min_output_length, price_cents, status, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            t.task_id, t.buyer_id, t.task_type, t.input, t.constraints.timeout_seconds,
                            t.constraints.min_output_length, t.price_cents, t.now_ms
                        ])
                    })
                    .map_err(db_err)?;
                let seq = tx.conn.last_insert_rowid();
                tx.apply(&rules::money::task_pay(&t.buyer_id, &t.task_id, t.price_cents), t.now_ms)?;
                let shadow = if t.shadow {
                    let task = tx.open_group(&t.task_id, QaType::Shadow, t.now_ms)?;
                    Some(QaCopy { task, barred: Vec::new() })
                } else {
                    None
                };
                Ok(TaskPosted {
                    task_id: t.task_id.clone(),
                    price_cents: t.price_cents,
                    balance_after_cents: available - t.price_cents,
                    created_at_ms: t.now_ms,
                    seq,
                    replayed: false,
                    shadow,
                })
            })
        })
    }

    fn task(&self, task_id: String) -> StoreFuture<Option<TaskRecord>> {
        self.read(move |c| read_task(c, &task_id))
    }

    fn list_tasks(
        &self,
        buyer_id: String,
        before_seq: Option<i64>,
        limit: u32,
    ) -> StoreFuture<Vec<TaskRecord>> {
        self.read(move |c| {
            let mut s = c
                .prepare_cached(&format!(
                    "SELECT {TASK_COLS} FROM tasks WHERE buyer_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3"
                ))
                .map_err(db_err)?;
            let rows = s
                .query_map(params![buyer_id, before_seq.unwrap_or(i64::MAX), limit], task_from_row)
                .map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
    }

    fn claim(&self, task_id: String, worker_id: String, now_ms: i64) -> StoreFuture<ClaimOutcome> {
        self.write(move |tx| {
            let c = tx.conn;
            let day = crate::clock::day_start_ms(now_ms);
            let worker: Option<(Option<i64>, String, u32, Option<i64>)> = c
                .prepare_cached(
                    "SELECT suspended_until, profile, CASE WHEN claims_day = ?2 THEN claims_today ELSE 0 END, banned_at
                     FROM workers WHERE id = ?1",
                )
                .and_then(|mut s| {
                    s.query_row(params![worker_id, day], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).optional()
                })
                .map_err(db_err)?;
            let Some((suspended_until, profile, claims_today, banned_at)) = worker else {
                return Ok(ClaimOutcome::UnknownWorker);
            };
            if banned_at.is_some() {
                return Ok(ClaimOutcome::WorkerBanned);
            }
            if let Some(until) = suspended_until.filter(|u| *u > now_ms) {
                return Ok(ClaimOutcome::WorkerSuspended { until_ms: until });
            }
            let profile: WorkerProfile = serde_json::from_str(&profile).map_err(json_err)?;
            let held: u32 = c
                .prepare_cached("SELECT count(*) FROM tasks WHERE worker_id = ?1 AND status = 'assigned'")
                .and_then(|mut s| s.query_row(params![worker_id], |r| r.get(0)))
                .map_err(db_err)?;
            if held >= profile.limits.concurrent.max(1) {
                return Ok(ClaimOutcome::WorkerBusy);
            }
            if claims_today >= profile.limits.daily_max_tasks {
                return Ok(ClaimOutcome::DailyCapReached);
            }
            let take = |sql: &str| -> Result<Option<ClaimedTask>, EngineError> {
                c.prepare_cached(sql)
                    .and_then(|mut s| {
                        s.query_row(params![task_id, worker_id, now_ms], |r| {
                            Ok(ClaimedTask {
                                task_id: task_id.clone(),
                                task_type: r.get(0)?,
                                input: r.get(1)?,
                                constraints: Constraints { timeout_seconds: r.get(2)?, min_output_length: r.get(3)? },
                                price_cents: r.get(4)?,
                                deadline_ms: r.get(5)?,
                                attempt: r.get(6)?,
                            })
                        })
                        .optional()
                    })
                    .map_err(db_err)
            };
            // Tasks outside QA (nearly all) are claimed by one plain statement; a task with a QA
            // key is checked first: a worker never gets a second task with the same input. (A
            // correlated subquery in the claim itself made SQLite re-prepare it on every run.)
            let task = match take(CLAIM_PLAIN)? {
                Some(t) => t,
                None => {
                    let still: Option<(String, Option<String>)> = c
                        .prepare_cached("SELECT status, qa_key FROM tasks WHERE id = ?1")
                        .and_then(|mut s| s.query_row(params![task_id], |r| Ok((r.get(0)?, r.get(1)?))).optional())
                        .map_err(db_err)?;
                    let Some((_, Some(qa_key))) = still.filter(|(status, _)| status == "pending") else {
                        return Ok(ClaimOutcome::TaskGone);
                    };
                    let had_it: bool = c
                        .prepare_cached(
                            "SELECT EXISTS (SELECT 1 FROM tasks s JOIN claims c ON c.task_id = s.id
                                            WHERE s.qa_key = ?1 AND c.worker_id = ?2)",
                        )
                        .and_then(|mut s| s.query_row(params![qa_key, worker_id], |r| r.get(0)))
                        .map_err(db_err)?;
                    if had_it {
                        return Ok(ClaimOutcome::NotForWorker { qa_key });
                    }
                    match take(CLAIM_QA)? {
                        Some(t) => t,
                        None => return Ok(ClaimOutcome::TaskGone),
                    }
                }
            };
            c.prepare_cached("INSERT INTO claims (task_id, worker_id, attempt, claimed_at) VALUES (?1, ?2, ?3, ?4)")
                .and_then(|mut s| s.execute(params![task_id, worker_id, task.attempt, now_ms]))
                .map_err(db_err)?;
            c.prepare_cached(
                "UPDATE workers SET tasks_claimed = tasks_claimed + 1, last_seen = ?2,
                        claims_today = CASE WHEN claims_day = ?3 THEN claims_today + 1 ELSE 1 END, claims_day = ?3
                 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![worker_id, now_ms, crate::clock::day_start_ms(now_ms)]))
                .map_err(db_err)?;
            Ok(ClaimOutcome::Claimed(task))
        })
    }

    fn unclaim(
        &self,
        task_id: String,
        worker_id: String,
        attempt: u32,
    ) -> StoreFuture<Option<LiveTask>> {
        self.write(move |tx| {
            let n = tx
                .conn
                .prepare_cached(
                    "UPDATE tasks SET status = 'pending', worker_id = NULL, deadline = NULL, assigned_at = NULL,
                            attempts = attempts - 1
                     WHERE id = ?1 AND status = 'assigned' AND worker_id = ?2 AND attempts = ?3",
                )
                .and_then(|mut s| s.execute(params![task_id, worker_id, attempt]))
                .map_err(db_err)?;
            if n == 0 {
                return Ok(None);
            }
            tx.conn
                .prepare_cached("DELETE FROM claims WHERE task_id = ?1 AND attempt = ?2")
                .and_then(|mut s| s.execute(params![task_id, attempt]))
                .map_err(db_err)?;
            tx.conn
                .prepare_cached(
                    "UPDATE workers SET tasks_claimed = max(tasks_claimed - 1, 0), claims_today = max(claims_today - 1, 0)
                     WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![worker_id]))
                .map_err(db_err)?;
            tx.task_live(&task_id)
        })
    }

    fn release(&self, task_id: String, worker_id: String) -> StoreFuture<Option<LiveTask>> {
        self.write(move |tx| {
            let n = tx
                .conn
                .prepare_cached(
                    "UPDATE tasks SET status = 'pending', worker_id = NULL, deadline = NULL, assigned_at = NULL
                     WHERE id = ?1 AND status = 'assigned' AND worker_id = ?2",
                )
                .and_then(|mut s| s.execute(params![task_id, worker_id]))
                .map_err(db_err)?;
            if n == 0 {
                return Ok(None);
            }
            tx.task_live(&task_id)
        })
    }

    fn submit(
        &self,
        task_id: String,
        worker_id: String,
        output: String,
        now_ms: i64,
        cfg: Arc<PlatformConfig>,
        spot_roll_bp: u32,
    ) -> StoreFuture<Settlement> {
        self.write(move |tx| {
            let (task, tag) =
                read_task_tagged(tx.conn, &task_id)?.ok_or_else(|| EngineError::NotFound("no such task".into()))?;
            let mine = task.worker_id.as_deref() == Some(worker_id.as_str());
            let (stats, tier, tier_penalty) = tx
                .worker_stats(&worker_id)?
                .ok_or_else(|| EngineError::Unauthorized("unknown worker".into()))?;
            match task.status {
                TaskStatus::Completed | TaskStatus::Credited if mine => {
                    return Ok(Settlement {
                        task_id,
                        task_type: task.task_type.clone(),
                        buyer_id: task.buyer_id,
                        earned_cents: task.earned_cents.unwrap_or(0),
                        commission_cents: task.price_cents - task.earned_cents.unwrap_or(0),
                        stats,
                        tier,
                        repeated: true,
                        qa_group: None,
                        spot_check: None,
                    });
                }
                TaskStatus::Assigned if mine => {
                    if task.deadline_ms.is_some_and(|d| now_ms > d) {
                        return Err(EngineError::TaskExpired);
                    }
                }
                _ => {
                    let held_before: bool = tx
                        .conn
                        .prepare_cached("SELECT EXISTS (SELECT 1 FROM claims WHERE task_id = ?1 AND worker_id = ?2)")
                        .and_then(|mut s| s.query_row(params![task_id, worker_id], |r| r.get(0)))
                        .map_err(db_err)?;
                    return Err(if held_before {
                        EngineError::TaskExpired
                    } else {
                        EngineError::Forbidden("this task is not assigned to you".into())
                    });
                }
            }
            let min_len = task.constraints.min_output_length as usize;
            if min_len > 0 && output_text_len(&output) < min_len {
                return Err(EngineError::validation_field(
                    "output",
                    format!("output is shorter than the task's min_output_length of {min_len} characters"),
                ));
            }
            let task_type = crate::domain::TaskType::parse(&task.task_type)?;
            let QaTag { platform_paid, group: qa_group } = tag;
            let settled = rules::settlement::settle(
                &cfg,
                &rules::settlement::Submitted {
                    task_id: &task_id,
                    task_type: &task_type,
                    price_cents: task.price_cents,
                    platform_paid,
                    in_qa_group: qa_group.is_some(),
                    worker_id: &worker_id,
                    stats,
                    tier: &tier,
                    tier_penalty,
                    now_ms,
                    spot_roll_bp,
                },
            );
            let (earned, commission) = (settled.earned_cents, settled.commission_cents);
            tx.conn
                .prepare_cached(
                    "UPDATE tasks SET status = 'completed', output = ?2, earned_cents = ?3, commission_cents = ?4,
                            completed_at = ?5, deadline = NULL
                     WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![task_id, output, earned, commission, now_ms]))
                .map_err(db_err)?;
            tx.conn
                .prepare_cached(
                    "INSERT INTO lots (worker_id, task_id, amount_cents, commission_cents, created_at, release_at, status)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'frozen')",
                )
                .and_then(|mut s| s.execute(params![worker_id, task_id, earned, commission, now_ms, settled.release_at_ms]))
                .map_err(db_err)?;
            tx.apply(&settled.entry, now_ms)?;
            let spot_check = if settled.spot_check {
                let task = tx.open_group(&task_id, QaType::SpotCheck, now_ms)?;
                Some(QaCopy { task, barred: vec![worker_id.clone()] })
            } else {
                None
            };
            tx.conn
                .prepare_cached("UPDATE balances SET total_earned_cents = total_earned_cents + ?2, version = version + 1 WHERE user_id = ?1")
                .and_then(|mut s| s.execute(params![worker_id, earned]))
                .map_err(db_err)?;
            let rules::settlement::Settled { stats, tier: new_tier, .. } = settled;
            tx.conn
                .prepare_cached(
                    "UPDATE workers SET tasks_completed = tasks_completed + 1, consecutive_expires = 0,
                            total_earned_cents = total_earned_cents + ?2, tier = ?3, last_seen = ?4
                     WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![worker_id, earned, new_tier, now_ms]))
                .map_err(db_err)?;
            Ok(Settlement {
                task_id,
                task_type: task.task_type.clone(),
                buyer_id: task.buyer_id,
                earned_cents: earned,
                commission_cents: commission,
                stats,
                tier: new_tier,
                repeated: false,
                qa_group,
                spot_check,
            })
        })
    }

    fn expire(
        &self,
        task_id: String,
        worker_id: String,
        attempt: u32,
        now_ms: i64,
        cfg: Arc<PlatformConfig>,
    ) -> StoreFuture<ExpireOutcome> {
        self.write(move |tx| {
            let found: Option<(String, u32)> = tx
                .conn
                .prepare_cached(
                    "SELECT buyer_id, attempts FROM tasks
                     WHERE id = ?1 AND status = 'assigned' AND worker_id = ?2 AND attempts = ?3",
                )
                .and_then(|mut s| s.query_row(params![task_id, worker_id, attempt], |r| Ok((r.get(0)?, r.get(1)?))).optional())
                .map_err(db_err)?;
            let Some((buyer_id, attempts)) = found else { return Ok(ExpireOutcome::Stale) };
            // The worker who let it lapse: count it, and suspend after too many in a row.
            let (stats, tier, tier_penalty) = tx
                .worker_stats(&worker_id)?
                .ok_or_else(|| EngineError::internal("expired task's worker is missing"))?;
            let lapsed = rules::expiry::lapse(
                &cfg,
                &rules::expiry::Lapse { stats, tier: &tier, tier_penalty, attempts, now_ms },
            );
            let suspended_until_ms = lapsed.suspended_until_ms;
            tx.conn
                .prepare_cached(
                    "UPDATE workers SET tasks_expired = ?2, consecutive_expires = ?3,
                            suspended_until = coalesce(?4, suspended_until)
                     WHERE id = ?1",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        worker_id,
                        lapsed.stats.tasks_expired as i64,
                        lapsed.stats.consecutive_expires as i64,
                        suspended_until_ms
                    ])
                })
                .map_err(db_err)?;
            if lapsed.tier != tier {
                tx.set_tier(&worker_id, &lapsed.tier)?;
            }
            if lapsed.fails {
                tx.refund(&task_id, now_ms)?;
                return Ok(ExpireOutcome::Failed { buyer_id, suspended_until_ms });
            }
            tx.conn
                .prepare_cached("UPDATE tasks SET status = 'pending', worker_id = NULL, deadline = NULL, assigned_at = NULL WHERE id = ?1")
                .and_then(|mut s| s.execute(params![task_id]))
                .map_err(db_err)?;
            let task = tx.task_live(&task_id)?.ok_or_else(|| EngineError::internal("requeued task vanished"))?;
            Ok(ExpireOutcome::Requeued { task, suspended_until_ms })
        })
    }

    fn credit(
        &self,
        task_id: String,
        buyer_id: String,
        reason: Option<String>,
        now_ms: i64,
        idem: Option<IdemKey>,
        cfg: Arc<PlatformConfig>,
    ) -> StoreFuture<Credited> {
        self.write(move |tx| {
            tx.idempotent(idem.as_ref(), now_ms, |c| c, |tx| {
                let task = read_task(tx.conn, &task_id)?
                    .filter(|t| t.buyer_id == buyer_id)
                    .ok_or_else(|| EngineError::NotFound("no such task".into()))?;
                let in_window: bool = tx
                    .conn
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM lots WHERE task_id = ?1 AND release_at > ?2)")
                    .and_then(|mut s| s.query_row(params![task_id, now_ms], |r| r.get(0)))
                    .map_err(db_err)?;
                rules::money::check_credit(task.status, in_window)?;
                let Some((worker_id, price)) = tx.reverse_lot(&task_id, &buyer_id, true, now_ms)? else {
                    return Err(EngineError::Conflict("the refund window for this task has closed".into()));
                };
                tx.replace_tier(&worker_id, &cfg)?;
                tx.audit(&buyer_id, "task.credit", &serde_json::json!({ "task_id": task_id, "reason": reason, "cents": price }), now_ms)?;
                let balance_after = tx.available(&buyer_id)?.unwrap_or(0);
                Ok(Credited { task_id: task_id.clone(), credited_cents: price, balance_after_cents: balance_after, worker_id })
            })
        })
    }

    fn live_tasks(&self) -> StoreFuture<Vec<LiveTask>> {
        self.read(|c| {
            let mut s = c
                .prepare(&format!("SELECT {LIVE_COLS} FROM tasks WHERE status IN ('pending', 'assigned') ORDER BY seq"))
                .map_err(db_err)?;
            let rows = s.query_map([], live_from_row).map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
    }

    fn overdue(&self, now_ms: i64, limit: u32) -> StoreFuture<Vec<LiveTask>> {
        self.read(move |c| {
            let mut s = c
                .prepare_cached(&format!(
                    "SELECT {LIVE_COLS} FROM tasks WHERE status = 'assigned' AND deadline < ?1 ORDER BY deadline LIMIT ?2"
                ))
                .map_err(db_err)?;
            let rows = s.query_map(params![now_ms, limit], live_from_row).map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
    }

    fn fail_stale(&self, created_before_ms: i64, limit: u32) -> StoreFuture<Vec<FailedTask>> {
        self.write(move |tx| {
            let stale: Vec<String> = {
                let mut s = tx
                    .conn
                    .prepare_cached("SELECT id FROM tasks WHERE status = 'pending' AND created_at < ?1 ORDER BY seq LIMIT ?2")
                    .map_err(db_err)?;
                let rows = s.query_map(params![created_before_ms, limit], |r| r.get(0)).map_err(db_err)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?
            };
            let now_ms = crate::clock::now_ms();
            let mut failed = Vec::with_capacity(stale.len());
            for task_id in stale {
                if let Some(buyer_id) = tx.refund(&task_id, now_ms)? {
                    failed.push(FailedTask { task_id, buyer_id });
                }
            }
            Ok(failed)
        })
    }

    fn unfreeze_due(&self, now_ms: i64, limit: u32) -> StoreFuture<u64> {
        self.write(move |tx| {
            let due: Vec<(i64, String, String, i64)> = {
                let mut s = tx
                    .conn
                    .prepare_cached(
                        "SELECT id, worker_id, task_id, amount_cents FROM lots
                         WHERE status = 'frozen' AND release_at <= ?1 ORDER BY release_at LIMIT ?2",
                    )
                    .map_err(db_err)?;
                let rows = s
                    .query_map(params![now_ms, limit], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })
                    .map_err(db_err)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?
            };
            for (lot_id, worker_id, task_id, amount) in &due {
                if let Some(entry) = rules::money::unfreeze(task_id, worker_id, *amount) {
                    tx.apply(&entry, now_ms)?;
                }
                tx.conn
                    .prepare_cached("UPDATE lots SET status = 'released' WHERE id = ?1")
                    .and_then(|mut s| s.execute(params![lot_id]))
                    .map_err(db_err)?;
            }
            Ok(due.len() as u64)
        })
    }

    fn next_unfreeze_ms(&self) -> StoreFuture<Option<i64>> {
        self.read(|c| {
            c.prepare_cached("SELECT min(release_at) FROM lots WHERE status = 'frozen'")
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .map_err(db_err)
        })
    }

    fn qa_group(&self, group_id: String) -> StoreFuture<Option<QaGroup>> {
        self.read_snapshot(move |c| {
            let head: Option<(String, String, Option<String>)> = c
                .prepare_cached("SELECT qa_type, state, expected_output FROM qa_groups WHERE id = ?1")
                .and_then(|mut s| s.query_row(params![group_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
                .map_err(db_err)?;
            let Some((qa_type, state, expected_output)) = head else { return Ok(None) };
            let bad = |what: &str| EngineError::internal(format!("qa group {group_id}: bad {what}"));
            let mut s = c
                .prepare_cached("SELECT id, qa_role, status, worker_id, output FROM tasks WHERE qa_group = ?1 ORDER BY seq")
                .map_err(db_err)?;
            let rows = s
                .query_map(params![group_id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get(3)?, r.get(4)?))
                })
                .map_err(db_err)?;
            let mut members = Vec::new();
            for row in rows {
                let (task_id, role, status, worker_id, output) = row.map_err(db_err)?;
                members.push(QaMember {
                    task_id,
                    role: QaRole::parse(&role).ok_or_else(|| bad("role"))?,
                    status: TaskStatus::parse(&status).ok_or_else(|| bad("status"))?,
                    worker_id,
                    output,
                });
            }
            Ok(Some(QaGroup {
                id: group_id.clone(),
                qa_type: QaType::parse(&qa_type).ok_or_else(|| bad("type"))?,
                state: QaState::parse(&state).ok_or_else(|| bad("state"))?,
                expected_output,
                members,
            }))
        })
    }

    fn qa_undecided(&self) -> StoreFuture<Vec<String>> {
        self.read(|c| {
            let mut s = c
                .prepare_cached("SELECT id FROM qa_groups WHERE state IN ('open', 'tiebreak') ORDER BY created_at")
                .map_err(db_err)?;
            let rows = s.query_map([], |r| r.get(0)).map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
    }

    fn qa_apply(
        &self,
        group_id: String,
        from: QaState,
        decision: QaDecision,
        now_ms: i64,
        cfg: Arc<PlatformConfig>,
    ) -> StoreFuture<QaApplied> {
        self.write(move |tx| {
            let head: Option<(String, String, String, String, Option<String>)> = tx
                .conn
                .prepare_cached("SELECT state, qa_type, task_id, qa_task_id, tiebreak_task_id FROM qa_groups WHERE id = ?1")
                .and_then(|mut s| {
                    s.query_row(params![group_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))).optional()
                })
                .map_err(db_err)?;
            let Some((state, qa_type, task_id, qa_task_id, tiebreak_task_id)) = head else {
                return Ok(QaApplied::default());
            };
            if state != from.as_str() {
                return Ok(QaApplied::default());
            }
            let mut applied = QaApplied { applied: true, ..QaApplied::default() };
            match decision {
                QaDecision::Tiebreak { .. } => {
                    let barred: Vec<String> = {
                        let mut s = tx
                            .conn
                            .prepare_cached("SELECT DISTINCT worker_id FROM tasks WHERE qa_group = ?1 AND worker_id IS NOT NULL")
                            .map_err(db_err)?;
                        let rows = s.query_map(params![group_id], |r| r.get(0)).map_err(db_err)?;
                        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?
                    };
                    let task = tx.copy_task(&task_id, &group_id, QaRole::Tiebreak, now_ms)?;
                    tx.conn
                        .prepare_cached("UPDATE qa_groups SET state = 'tiebreak', tiebreak_task_id = ?2 WHERE id = ?1")
                        .and_then(|mut s| s.execute(params![group_id, task.task_id]))
                        .map_err(db_err)?;
                    applied.tiebreak = Some(QaCopy { task, barred });
                }
                QaDecision::Decide { score, verdict, outcomes, blamed, tiebreak } => {
                    applied.decided = true;
                    applied.failed = blamed.is_some();
                    let worker_ids: Vec<&str> = outcomes.iter().map(|(w, _)| w.as_str()).collect();
                    let seq: i64 = tx
                        .conn
                        .prepare_cached(
                            "INSERT INTO qa_results (group_id, task_id, qa_task_id, qa_type, similarity, dimensions, verdict,
                                                     worker_ids, blamed_worker_id, tiebreak_task_id, tiebreak, decided_at)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) RETURNING seq",
                        )
                        .and_then(|mut s| {
                            s.query_row(
                                params![
                                    group_id,
                                    task_id,
                                    qa_task_id,
                                    qa_type,
                                    score.similarity,
                                    serde_json::to_string(&score.dimensions).unwrap_or_default(),
                                    verdict.as_str(),
                                    serde_json::to_string(&worker_ids).unwrap_or_default(),
                                    blamed,
                                    tiebreak_task_id,
                                    tiebreak.map(|t| serde_json::to_string(&t).unwrap_or_default()),
                                    now_ms
                                ],
                                |r| r.get(0),
                            )
                        })
                        .map_err(db_err)?;
                    for (worker_id, v) in &outcomes {
                        let column = match v {
                            crate::qa::similarity::Verdict::Pass => "qa_pass",
                            crate::qa::similarity::Verdict::Flag => "qa_flag",
                            crate::qa::similarity::Verdict::Fail => "qa_fail",
                        };
                        tx.conn
                            .prepare_cached(
                                "INSERT OR IGNORE INTO qa_outcomes (worker_id, result_seq, tier, qa_type, verdict)
                                 SELECT id, ?2, tier, ?3, ?4 FROM workers WHERE id = ?1",
                            )
                            .and_then(|mut s| s.execute(params![worker_id, seq, qa_type, v.as_str()]))
                            .map_err(db_err)?;
                        tx.conn
                            .prepare_cached(&format!("UPDATE workers SET {column} = {column} + 1 WHERE id = ?1"))
                            .and_then(|mut s| s.execute(params![worker_id]))
                            .map_err(db_err)?;
                    }
                    if let Some(worker_id) = &blamed {
                        if tx.penalise(worker_id, now_ms, &cfg)? {
                            applied.banned.push(worker_id.clone());
                        }
                        // The buyer's own result failed: the buyer gets the price back.
                        let original_worker: Option<String> = tx
                            .conn
                            .prepare_cached("SELECT worker_id FROM tasks WHERE id = ?1 AND funded_by = 'buyer' AND status = 'completed'")
                            .and_then(|mut s| s.query_row(params![task_id], |r| r.get(0)).optional())
                            .map_err(db_err)?
                            .flatten();
                        if rules::penalty::credits_buyer(&cfg, worker_id, original_worker.as_deref()) {
                            applied.auto_credit = tx.auto_credit(&task_id, now_ms)?;
                        }
                    }
                    tx.conn
                        .prepare_cached("UPDATE qa_groups SET state = 'decided' WHERE id = ?1")
                        .and_then(|mut s| s.execute(params![group_id]))
                        .map_err(db_err)?;
                }
            }
            Ok(applied)
        })
    }

    fn inject_benchmark(&self, b: NewBenchmark) -> StoreFuture<QaCopy> {
        self.write(move |tx| {
            // Re-injections of the same benchmark share a key: no worker sees one input twice.
            let key = format!("bench:{}", &crate::domain::token_hash(&format!("{}\n{}", b.task_type, b.input))[..24]);
            tx.conn
                .prepare_cached(
                    "INSERT INTO tasks (id, buyer_id, type, input, timeout_seconds, min_output_length, price_cents, status,
                                        funded_by, created_at, qa_group, qa_key, qa_role)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', 'platform', ?8, ?1, ?9, 'benchmark')",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        b.task_id, QA_BUYER, b.task_type, b.input, b.constraints.timeout_seconds,
                        b.constraints.min_output_length, b.price_cents, b.now_ms, key
                    ])
                })
                .map_err(db_err)?;
            let seq = tx.conn.last_insert_rowid();
            tx.fund_qa_task(&b.task_id, b.price_cents, b.now_ms)?;
            tx.conn
                .prepare_cached(
                    "INSERT INTO qa_groups (id, qa_type, task_id, qa_task_id, expected_output, state, created_at)
                     VALUES (?1, 'benchmark', ?1, ?1, ?2, 'open', ?3)",
                )
                .and_then(|mut s| s.execute(params![b.task_id, b.expected_output, b.now_ms]))
                .map_err(db_err)?;
            Ok(QaCopy {
                task: LiveTask {
                    seq,
                    task_id: b.task_id.clone(),
                    task_type: b.task_type.clone(),
                    price_cents: b.price_cents,
                    created_at_ms: b.now_ms,
                    buyer_id: QA_BUYER.into(),
                    assigned: None,
                    qa_key: Some(key),
                },
                barred: Vec::new(),
            })
        })
    }

    fn qa_results(
        &self,
        worker_id: Option<String>,
        verdict: Option<String>,
        before_seq: Option<i64>,
        limit: u32,
    ) -> StoreFuture<Vec<QaResult>> {
        self.read(move |c| {
            let mut s = c
                .prepare_cached(
                    "SELECT seq, task_id, qa_task_id, qa_type, similarity, dimensions, verdict, worker_ids, blamed_worker_id,
                            tiebreak_task_id, tiebreak, decided_at
                     FROM qa_results r
                     WHERE seq < ?1 AND (?2 IS NULL OR verdict = ?2)
                       AND (?3 IS NULL OR EXISTS (SELECT 1 FROM qa_outcomes o WHERE o.worker_id = ?3 AND o.result_seq = r.seq))
                     ORDER BY seq DESC LIMIT ?4",
                )
                .map_err(db_err)?;
            let rows = s
                .query_map(params![before_seq.unwrap_or(i64::MAX), verdict, worker_id, limit], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, f64>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, String>(7)?,
                        r.get::<_, Option<String>>(8)?,
                        r.get::<_, Option<String>>(9)?,
                        r.get::<_, Option<String>>(10)?,
                        r.get::<_, i64>(11)?,
                    ))
                })
                .map_err(db_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, task_id, qa_task_id, qa_type, similarity, dims, verdict, workers, blamed, tb_id, tb, at) =
                    row.map_err(db_err)?;
                out.push(QaResult {
                    seq,
                    task_id,
                    qa_task_id,
                    qa_type: QaType::parse(&qa_type).ok_or_else(|| EngineError::internal("bad qa type"))?,
                    similarity,
                    dimensions: serde_json::from_str(&dims).map_err(json_err)?,
                    verdict,
                    worker_ids: serde_json::from_str(&workers).map_err(json_err)?,
                    blamed_worker_id: blamed,
                    tiebreak_task_id: tb_id,
                    tiebreak: tb.map(|t| serde_json::from_str(&t)).transpose().map_err(json_err)?,
                    decided_at: crate::clock::rfc3339(at),
                });
            }
            Ok(out)
        })
    }

    fn qa_stats(&self) -> StoreFuture<QaStats> {
        self.read_snapshot(|c| {
            let mut stats = QaStats::default();
            let add = |counts: &mut VerdictCounts, verdict: &str, n: u64| match verdict {
                "pass" => counts.pass += n,
                "flag" => counts.flag += n,
                _ => counts.fail += n,
            };
            let mut s = c
                .prepare("SELECT tier, qa_type, verdict, count(*) FROM qa_outcomes GROUP BY tier, qa_type, verdict")
                .map_err(db_err)?;
            let rows = s
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?)))
                .map_err(db_err)?;
            for row in rows {
                let (tier, qa_type, verdict, n) = row.map_err(db_err)?;
                let n = n as u64;
                add(&mut stats.overall, &verdict, n);
                add(stats.by_tier.entry(tier).or_default(), &verdict, n);
                add(stats.by_type.entry(qa_type).or_default(), &verdict, n);
            }
            let mut s = c
                .prepare(
                    "SELECT o.worker_id, count(*), w.qa_fail, w.tier FROM qa_outcomes o JOIN workers w ON w.id = o.worker_id
                     WHERE o.verdict = 'flag' GROUP BY o.worker_id ORDER BY count(*) DESC, o.worker_id LIMIT 100",
                )
                .map_err(db_err)?;
            let rows = s
                .query_map([], |r| {
                    Ok(serde_json::json!({
                        "worker_id": r.get::<_, String>(0)?, "flags": r.get::<_, i64>(1)?,
                        "fails": r.get::<_, i64>(2)?, "tier": r.get::<_, String>(3)?,
                    }))
                })
                .map_err(db_err)?;
            stats.flagged_workers = rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?;
            let mut s = c
                .prepare("SELECT id, banned_at, qa_fail, balance_frozen FROM workers WHERE banned_at IS NOT NULL ORDER BY banned_at DESC LIMIT 1000")
                .map_err(db_err)?;
            let rows = s
                .query_map([], |r| {
                    Ok(serde_json::json!({
                        "worker_id": r.get::<_, String>(0)?, "banned_at": crate::clock::rfc3339(r.get(1)?),
                        "fails": r.get::<_, i64>(2)?, "balance_frozen": r.get::<_, bool>(3)?,
                    }))
                })
                .map_err(db_err)?;
            stats.banned_workers = rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?;
            let (waiting, void): (i64, i64) = c
                .query_row(
                    "SELECT count(*) FILTER (WHERE state IN ('open', 'tiebreak')), count(*) FILTER (WHERE state = 'void') FROM qa_groups",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(db_err)?;
            stats.waiting = waiting as u64;
            stats.void = void as u64;
            stats.qa_fund_cents = c
                .query_row("SELECT balance_cents FROM accounts WHERE id = ?1", params![ledger::QA_FUND], |r| r.get(0))
                .map_err(db_err)?;
            Ok(stats)
        })
    }

    fn worker_notices(&self, worker_id: String) -> StoreFuture<Vec<WorkerNotice>> {
        self.read(move |c| {
            let mut s = c
                .prepare_cached("SELECT kind, message, created_at FROM worker_notices WHERE worker_id = ?1 ORDER BY id DESC LIMIT 20")
                .map_err(db_err)?;
            let rows = s
                .query_map(params![worker_id], |r| {
                    Ok(WorkerNotice { kind: r.get(0)?, message: r.get(1)?, at: crate::clock::rfc3339(r.get(2)?) })
                })
                .map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
    }

    fn banned_workers(&self) -> StoreFuture<Vec<String>> {
        self.read(|c| {
            let mut s = c
                .prepare("SELECT id FROM workers WHERE banned_at IS NOT NULL")
                .map_err(db_err)?;
            let rows = s.query_map([], |r| r.get(0)).map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
    }

    fn admin_credit(
        &self,
        user_id: String,
        amount_cents: i64,
        reason: String,
        admin_id: String,
        now_ms: i64,
        idem: Option<IdemKey>,
    ) -> StoreFuture<AdminCredited> {
        self.write(move |tx| {
            tx.idempotent(idem.as_ref(), now_ms, |c| c, |tx| {
                if tx.available(&user_id)?.is_none() {
                    return Err(EngineError::NotFound(format!("no user {user_id}")));
                }
                tx.apply(&rules::money::admin_credit(&user_id, amount_cents), now_ms)?;
                tx.audit(
                    &admin_id,
                    "admin.credit",
                    &serde_json::json!({ "user_id": user_id, "amount_cents": amount_cents, "reason": reason }),
                    now_ms,
                )?;
                let balance_after_cents = tx.available(&user_id)?.unwrap_or(0);
                Ok(AdminCredited { user_id: user_id.clone(), amount_cents, balance_after_cents })
            })
        })
    }

    fn load_config(&self) -> StoreFuture<BTreeMap<String, StoredConfig>> {
        self.read(|c| {
            let mut s = c
                .prepare("SELECT key, doc, version, updated_at, updated_by FROM config")
                .map_err(db_err)?;
            let rows = s
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                    ))
                })
                .map_err(db_err)?;
            let mut out = BTreeMap::new();
            for row in rows {
                let (key, doc, version, updated_at_ms, updated_by) = row.map_err(db_err)?;
                let doc = serde_json::from_str(&doc).map_err(json_err)?;
                out.insert(
                    key,
                    StoredConfig {
                        doc,
                        version,
                        updated_at_ms,
                        updated_by,
                    },
                );
            }
            Ok(out)
        })
    }

    fn seed_config(&self, docs: BTreeMap<String, Value>, now_ms: i64) -> StoreFuture<u32> {
        self.write(move |tx| {
            let mut added = 0;
            for (key, doc) in docs {
                added += tx
                    .conn
                    .prepare_cached("INSERT OR IGNORE INTO config (key, doc, version, updated_at, updated_by) VALUES (?1, ?2, 1, ?3, 'seed')")
                    .and_then(|mut s| s.execute(params![key, doc.to_string(), now_ms]))
                    .map_err(db_err)? as u32;
            }
            Ok(added)
        })
    }

    fn put_config(
        &self,
        key: String,
        doc: Value,
        expected_version: Option<i64>,
        admin_id: String,
        now_ms: i64,
    ) -> StoreFuture<StoredConfig> {
        self.write(move |tx| {
            let current: Option<i64> = tx
                .conn
                .prepare_cached("SELECT version FROM config WHERE key = ?1")
                .and_then(|mut s| s.query_row(params![key], |r| r.get(0)).optional())
                .map_err(db_err)?;
            let current = current.unwrap_or(0);
            if let Some(expected) = expected_version.filter(|v| *v != current) {
                return Err(EngineError::Conflict(format!(
                    "config {key} is at version {current}, not {expected}: read it again and reapply your change"
                )));
            }
            let version = current + 1;
            tx.conn
                .prepare_cached(
                    "INSERT INTO config (key, doc, version, updated_at, updated_by) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (key) DO UPDATE SET doc = excluded.doc, version = excluded.version,
                        updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                )
                .and_then(|mut s| s.execute(params![key, doc.to_string(), version, now_ms, admin_id]))
                .map_err(db_err)?;
            tx.audit(&admin_id, "config.put", &serde_json::json!({ "key": key, "version": version, "doc": doc }), now_ms)?;
            Ok(StoredConfig { doc, version, updated_at_ms: now_ms, updated_by: Some(admin_id) })
        })
    }

    fn flush(&self) -> StoreFuture<()> {
        self.write(|_| Ok(()))
    }

    fn audit(&self) -> StoreFuture<AuditReport> {
        let path = self.path.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let c = open_reader(&path)?;
                // One read transaction: every query sees the same snapshot.
                c.execute_batch("BEGIN").map_err(db_err)?;
                let report = audit_snapshot(&c);
                let _ = c.execute_batch("COMMIT");
                report
            })
            .await
            .map_err(EngineError::internal)?
        })
    }
}

/// Counts characters of the output's text: the `text` field when there is one, else the JSON.
fn output_text_len(output: &str) -> usize {
    match serde_json::from_str::<Value>(output) {
        Ok(Value::Object(o)) => match o.get("text") {
            Some(Value::String(s)) => s.chars().count(),
            _ => output.chars().count(),
        },
        Ok(Value::String(s)) => s.chars().count(),
        _ => output.chars().count(),
    }
}

fn audit_snapshot(c: &Connection) -> Result<AuditReport, EngineError> {
    let mut violations = Vec::new();
    let q = |sql: &str| -> Result<Vec<(String, i64, i64)>, EngineError> {
        let mut s = c.prepare(sql).map_err(db_err)?;
        let rows = s
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(db_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
    };
    // Stored balances of every account, as (account, stored, 0).
    let mut stored: BTreeMap<String, i64> = BTreeMap::new();
    for (user, available, frozen) in
        q("SELECT user_id, available_cents, frozen_cents FROM balances")?
    {
        stored.insert(ledger::available(&user), available);
        stored.insert(ledger::frozen(&user), frozen);
    }
    for (id, balance, _) in q("SELECT id, balance_cents, 0 FROM accounts")? {
        stored.insert(id, balance);
    }
    let sum_cents: i64 = stored.values().sum();
    if sum_cents != 0 {
        violations.push(format!("accounts sum to {sum_cents} cents, not zero"));
    }
    for (account, balance) in &stored {
        if *balance < 0 && !ledger::may_go_negative(account) {
            violations.push(format!("{account} is negative: {balance}"));
        }
    }
    // Invariant 4: replaying the postings gives the stored balances.
    let replayed: BTreeMap<String, i64> =
        q("SELECT account, sum(amount_cents), count(*) FROM postings GROUP BY account")?
            .into_iter()
            .map(|(a, s, _)| (a, s))
            .collect();
    for (account, balance) in &stored {
        let r = replayed.get(account).copied().unwrap_or(0);
        if r != *balance {
            violations.push(format!(
                "{account}: stored {balance} but postings sum to {r}"
            ));
        }
    }
    for account in replayed.keys().filter(|a| !stored.contains_key(*a)) {
        violations.push(format!("postings to unknown account {account}"));
    }
    // Every entry balances.
    for (entry, sum, _) in q(
        "SELECT entry_id, sum(amount_cents), 0 FROM postings GROUP BY entry_id HAVING sum(amount_cents) <> 0",
    )? {
        violations.push(format!("entry {entry} is unbalanced by {sum}"));
    }
    // Invariant 3: live tasks hold exactly their price in escrow, others nothing.
    for (task, held, price) in q(
        "SELECT t.id, coalesce(e.held, 0), CASE WHEN t.status IN ('pending', 'assigned') THEN t.price_cents ELSE 0 END
         FROM tasks t LEFT JOIN (SELECT task_id, sum(amount_cents) AS held FROM postings
                                 WHERE account = 'platform:escrow' GROUP BY task_id) e ON e.task_id = t.id
         WHERE coalesce(e.held, 0) <> CASE WHEN t.status IN ('pending', 'assigned') THEN t.price_cents ELSE 0 END",
    )? {
        violations.push(format!("task {task} holds {held} in escrow, expected {price}"));
    }
    // Invariant 5: frozen balances are the sum of frozen lots.
    for (user, frozen, lots) in q(
        "SELECT b.user_id, b.frozen_cents, coalesce(l.s, 0) FROM balances b
         LEFT JOIN (SELECT worker_id, sum(amount_cents) AS s FROM lots WHERE status IN ('frozen', 'held') GROUP BY worker_id) l
           ON l.worker_id = b.user_id
         WHERE b.frozen_cents <> coalesce(l.s, 0)",
    )? {
        violations.push(format!("{user}: frozen {frozen} but frozen lots sum to {lots}"));
    }
    let entries: i64 = c
        .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
        .map_err(db_err)?;
    Ok(AuditReport {
        ok: violations.is_empty(),
        sum_cents,
        accounts: stored.len() as u64,
        entries: entries as u64,
        violations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data directory written before invisible QA (schema 1) opens, gains the QA columns and the
    /// token labels, and keeps its data.
    #[tokio::test]
    async fn schema_1_data_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clawjobs.db");
        {
            let c = Connection::open(&path).unwrap();
            migrate(&c).unwrap();
            c.execute_batch(
                "DROP INDEX tasks_by_qa_key; DROP INDEX tasks_by_qa_group;
                 ALTER TABLE workers DROP COLUMN qa_pass; ALTER TABLE workers DROP COLUMN qa_flag;
                 ALTER TABLE workers DROP COLUMN qa_fail; ALTER TABLE workers DROP COLUMN tier_penalty;
                 ALTER TABLE workers DROP COLUMN banned_at; ALTER TABLE workers DROP COLUMN balance_frozen;
                 ALTER TABLE tasks DROP COLUMN qa_group; ALTER TABLE tasks DROP COLUMN qa_key;
                 ALTER TABLE tasks DROP COLUMN qa_role; ALTER TABLE lots DROP COLUMN deducted_cents;
                 ALTER TABLE tokens DROP COLUMN label;
                 UPDATE meta SET value = '1' WHERE key = 'schema_version';
                 INSERT INTO users (id, role, created_at) VALUES ('b1', 'buyer', 1);
                 INSERT INTO balances (user_id) VALUES ('b1');",
            )
            .unwrap();
        }
        let store = SqliteStore::open(dir.path(), Box::new(NoObserver)).unwrap();
        store
            .admin_credit("b1".into(), 50, "old".into(), "a".into(), 1, None)
            .await
            .unwrap();
        let posted = store
            .post_task(NewTask {
                task_id: "t1".into(),
                buyer_id: "b1".into(),
                task_type: "chat".into(),
                input: "{}".into(),
                constraints: Constraints {
                    timeout_seconds: 60,
                    min_output_length: 0,
                },
                price_cents: 5,
                now_ms: 2,
                idempotency: None,
                shadow: true,
            })
            .await
            .unwrap();
        assert!(posted.shadow.is_some());
        let version: String = store
            .with_reader(|c| {
                c.query_row(
                    "SELECT value FROM meta WHERE key = 'schema_version'",
                    [],
                    |r| r.get(0),
                )
                .map_err(db_err)
            })
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION.to_string());
        assert!(store.audit().await.unwrap().ok);
    }
}
