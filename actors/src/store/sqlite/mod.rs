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
use crate::domain::{Principal, Role, TaskId, TaskStatus, UserId, WorkerId};
use crate::economics;
use crate::error::EngineError;
use crate::ledger::{self, AuditReport, Entry, UserBalance};
use crate::rules::{self, penalty::FrozenLot};

mod accounts;
mod audit;
mod audit_log;
mod bounties;
mod config;
mod deposits;
mod journal;
mod notifications;
mod payouts;
mod qa;
mod referrals;
mod rows;
mod schema;
mod sweeps;
mod tasks;
mod timeline;
mod webhooks;
mod writer;

use accounts::insert_token;
use audit::audit_snapshot;
use rows::*;
use schema::*;
use writer::*;

/// Most commands one commit carries.
const MAX_BATCH: usize = 1024;
/// Commands waiting for the writer before senders are made to wait (backpressure).
const QUEUE_DEPTH: usize = 16_384;
/// Read connections kept open.
const READ_POOL: usize = 8;

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
    /// Notifications this command stored, for the observer once committed.
    notified: Vec<NotificationRecord>,
    /// Bounty events this command caused, for the observer once committed.
    events: Vec<BountyEvent>,
}

type Done = Box<dyn FnOnce(Result<(), EngineError>) + Send>;
type Job = Box<dyn FnOnce(&mut Tx<'_>) -> (bool, Done) + Send>;

pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
    /// A purge committed but the WAL it left could not be truncated yet.
    unscrubbed: Arc<std::sync::atomic::AtomicBool>,
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
         PRAGMA temp_store = MEMORY;
         PRAGMA secure_delete = ON;",
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
            unscrubbed: Arc::default(),
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

impl Store for SqliteStore {
    fn create_buyer(&self, b: NewBuyer) -> StoreFuture<BalanceSnapshot> {
        self.write(move |tx| accounts::create_buyer(tx, b))
    }

    fn find_login(&self, email: String) -> StoreFuture<Option<(String, String)>> {
        self.read(move |c| accounts::find_login(c, email))
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
        self.read(move |c| accounts::resolve_token(c, token_hash))
    }

    fn add_admin_token(
        &self,
        token_hash: String,
        label: String,
        now_ms: i64,
    ) -> StoreFuture<AdminToken> {
        self.write(move |tx| accounts::add_admin_token(tx, token_hash, label, now_ms))
    }

    fn admin_tokens(&self) -> StoreFuture<Vec<AdminToken>> {
        self.read(accounts::admin_tokens)
    }

    fn revoke_admin_token(&self, id: String) -> StoreFuture<AdminToken> {
        self.write(move |tx| accounts::revoke_admin_token(tx, id))
    }

    fn create_worker(&self, w: NewWorker) -> StoreFuture<WorkerRecord> {
        self.write(move |tx| accounts::create_worker(tx, w))
    }

    fn worker(&self, worker_id: String) -> StoreFuture<Option<WorkerRecord>> {
        self.read(move |c| read_worker(c, &worker_id))
    }

    fn update_worker_profile(
        &self,
        worker_id: String,
        profile: WorkerProfile,
    ) -> StoreFuture<WorkerRecord> {
        self.write(move |tx| accounts::update_worker_profile(tx, worker_id, profile))
    }

    fn worker_earned_since(&self, worker_id: String, since_ms: i64) -> StoreFuture<i64> {
        self.read(move |c| accounts::worker_earned_since(c, worker_id, since_ms))
    }

    fn balance(&self, user_id: String) -> StoreFuture<Option<BalanceSnapshot>> {
        self.read(move |c| read_balance(c, &user_id))
    }

    fn earnings(
        &self,
        worker_id: String,
        before_seq: Option<i64>,
        limit: u32,
    ) -> StoreFuture<Earnings> {
        self.read(move |c| accounts::earnings(c, worker_id, before_seq, limit))
    }

    fn post_task(&self, t: NewTask) -> StoreFuture<TaskPosted> {
        self.write(move |tx| tasks::post_task(tx, t))
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
        self.read(move |c| tasks::list_tasks(c, buyer_id, before_seq, limit))
    }

    fn claim(
        &self,
        task_id: TaskId,
        worker_id: WorkerId,
        now_ms: i64,
    ) -> StoreFuture<ClaimOutcome> {
        self.write(move |tx| tasks::claim(tx, task_id, worker_id, now_ms))
    }

    fn unclaim(
        &self,
        task_id: TaskId,
        worker_id: WorkerId,
        attempt: u32,
    ) -> StoreFuture<Option<LiveTask>> {
        self.write(move |tx| tasks::unclaim(tx, task_id, worker_id, attempt))
    }

    fn release(&self, task_id: TaskId, worker_id: WorkerId) -> StoreFuture<Option<LiveTask>> {
        self.write(move |tx| tasks::release(tx, task_id, worker_id))
    }

    fn submit(
        &self,
        task_id: TaskId,
        worker_id: WorkerId,
        output: Output,
        now_ms: i64,
        cfg: Arc<PlatformConfig>,
        spot_roll_bp: u32,
    ) -> StoreFuture<Settlement> {
        self.write(move |tx| {
            tasks::submit(tx, task_id, worker_id, output, now_ms, cfg, spot_roll_bp)
        })
    }

    fn expire(
        &self,
        task_id: TaskId,
        worker_id: WorkerId,
        attempt: u32,
        now_ms: i64,
        cfg: Arc<PlatformConfig>,
    ) -> StoreFuture<ExpireOutcome> {
        self.write(move |tx| tasks::expire(tx, task_id, worker_id, attempt, now_ms, cfg))
    }

    fn credit(
        &self,
        task_id: TaskId,
        buyer: Who,
        reason: Option<String>,
        now_ms: i64,
        idem: Option<IdemKey>,
        cfg: Arc<PlatformConfig>,
    ) -> StoreFuture<Credited> {
        self.write(move |tx| tasks::credit(tx, task_id, buyer, reason, now_ms, idem, cfg))
    }

    fn live_tasks(&self) -> StoreFuture<Vec<LiveTask>> {
        self.read(tasks::live_tasks)
    }

    fn overdue(&self, now_ms: i64, limit: u32) -> StoreFuture<Vec<LiveTask>> {
        self.read(move |c| sweeps::overdue(c, now_ms, limit))
    }

    fn fail_stale(&self, created_before_ms: i64, limit: u32) -> StoreFuture<Vec<FailedTask>> {
        self.write(move |tx| sweeps::fail_stale(tx, created_before_ms, limit))
    }

    fn unfreeze_due(&self, now_ms: i64, limit: u32) -> StoreFuture<u64> {
        self.write(move |tx| sweeps::unfreeze_due(tx, now_ms, limit))
    }

    fn next_unfreeze_ms(&self) -> StoreFuture<Option<i64>> {
        self.read(sweeps::next_unfreeze_ms)
    }

    fn qa_group(&self, group_id: String) -> StoreFuture<Option<QaGroup>> {
        self.read_snapshot(move |c| qa::qa_group(c, group_id))
    }

    fn qa_undecided(&self) -> StoreFuture<Vec<String>> {
        self.read(qa::qa_undecided)
    }

    fn qa_apply(
        &self,
        group_id: String,
        from: QaState,
        decision: QaDecision,
        now_ms: i64,
        cfg: Arc<PlatformConfig>,
    ) -> StoreFuture<QaApplied> {
        self.write(move |tx| qa::qa_apply(tx, group_id, from, decision, now_ms, cfg))
    }

    fn inject_benchmark(&self, b: NewBenchmark) -> StoreFuture<QaCopy> {
        self.write(move |tx| qa::inject_benchmark(tx, b))
    }

    fn qa_results(
        &self,
        worker_id: Option<String>,
        verdict: Option<String>,
        before_seq: Option<i64>,
        limit: u32,
    ) -> StoreFuture<Vec<QaResult>> {
        self.read(move |c| qa::qa_results(c, worker_id, verdict, before_seq, limit))
    }

    fn qa_stats(&self) -> StoreFuture<QaStats> {
        self.read_snapshot(qa::qa_stats)
    }

    fn worker_notices(&self, worker_id: String) -> StoreFuture<Vec<WorkerNotice>> {
        self.read(move |c| qa::worker_notices(c, worker_id))
    }

    fn task_timeline(
        &self,
        task_id: String,
    ) -> StoreFuture<Option<crate::store::timeline::TimelineParts>> {
        self.read_snapshot(move |c| timeline::read(c, task_id))
    }

    fn banned_workers(&self) -> StoreFuture<Vec<String>> {
        self.read(qa::banned_workers)
    }

    fn admin_credit(
        &self,
        user_id: UserId,
        amount_cents: i64,
        reason: String,
        by: Who,
        now_ms: i64,
        idem: Option<IdemKey>,
    ) -> StoreFuture<AdminCredited> {
        self.write(move |tx| {
            accounts::admin_credit(tx, user_id, amount_cents, reason, by, now_ms, idem)
        })
    }

    fn create_deposit(&self, d: NewDeposit) -> StoreFuture<DepositRecord> {
        self.write(move |tx| deposits::create_deposit(tx, d))
    }

    fn deposit_event(&self, e: ProviderEvent) -> StoreFuture<EventOutcome> {
        self.write(move |tx| deposits::deposit_event(tx, e))
    }

    fn resolve_deposit(
        &self,
        deposit_id: String,
        by: Who,
        note: String,
        now_ms: i64,
    ) -> StoreFuture<DepositRecord> {
        self.write(move |tx| deposits::resolve_deposit(tx, deposit_id, by, note, now_ms))
    }

    fn deposits(&self, filter: DepositFilter) -> StoreFuture<Vec<DepositRecord>> {
        self.read(move |c| deposits::deposits(c, filter))
    }

    fn email_code(&self, c: NewEmailCode) -> StoreFuture<()> {
        self.write(move |tx| payouts::email_code(tx, c))
    }

    fn forget_email_code(&self, worker_id: String, code_hash: String) -> StoreFuture<()> {
        self.write(move |tx| {
            tx.conn
                .prepare_cached("DELETE FROM email_codes WHERE worker_id = ?1 AND code_hash = ?2")
                .and_then(|mut s| s.execute(params![worker_id, code_hash]))
                .map_err(db_err)?;
            Ok(())
        })
    }

    fn verify_email(
        &self,
        worker_id: String,
        email: String,
        code_hash: String,
        now_ms: i64,
    ) -> StoreFuture<VerifyOutcome> {
        self.write(move |tx| payouts::verify_email(tx, worker_id, email, code_hash, now_ms))
    }

    fn bind_payout(
        &self,
        worker_id: String,
        method: crate::rules::payout::PayoutMethod,
        address: String,
        now_ms: i64,
    ) -> StoreFuture<PayoutBinding> {
        self.write(move |tx| payouts::bind_payout(tx, worker_id, method, address, now_ms))
    }

    fn payout_binding(&self, worker_id: String) -> StoreFuture<Option<PayoutBinding>> {
        self.read(move |c| payouts::payout_binding(c, worker_id))
    }

    fn outbox(&self, before_seq: Option<i64>, limit: u32) -> StoreFuture<Vec<OutboxMessage>> {
        self.read(move |c| payouts::outbox(c, before_seq, limit))
    }

    fn withdraw(&self, w: NewWithdrawal) -> StoreFuture<WithdrawalRecord> {
        self.write(move |tx| payouts::withdraw(tx, w))
    }

    fn withdrawals(&self, filter: WithdrawalFilter) -> StoreFuture<Vec<WithdrawalRecord>> {
        self.read(move |c| payouts::withdrawals(c, filter))
    }

    fn settle_withdrawal(
        &self,
        withdrawal_id: String,
        settle: Settle,
        by: Who,
        now_ms: i64,
        idem: Option<IdemKey>,
    ) -> StoreFuture<WithdrawalRecord> {
        self.write(move |tx| {
            payouts::settle_withdrawal(tx, withdrawal_id, settle, by, now_ms, idem)
        })
    }

    fn post_bounty(&self, b: NewBounty) -> StoreFuture<BountyRecord> {
        self.write(move |tx| bounties::post_bounty(tx, b))
    }

    fn bounty(&self, bounty_id: String) -> StoreFuture<Option<BountyRecord>> {
        self.read(move |c| bounties::read_bounty(c, &bounty_id))
    }

    fn bounties(&self, filter: BountyFilter) -> StoreFuture<Vec<BountyRecord>> {
        self.read(move |c| bounties::bounties(c, filter))
    }

    fn cancel_bounty(
        &self,
        bounty_id: String,
        buyer_id: String,
        now_ms: i64,
    ) -> StoreFuture<BountyRecord> {
        self.write(move |tx| bounties::cancel_bounty(tx, bounty_id, buyer_id, now_ms))
    }

    fn submit_bounty(&self, s: NewSubmission) -> StoreFuture<SubmissionRecord> {
        self.write(move |tx| bounties::submit(tx, s))
    }

    fn submission(&self, submission_id: String) -> StoreFuture<Option<SubmissionRecord>> {
        self.read(move |c| bounties::read_submission(c, &submission_id))
    }

    fn submissions(&self, filter: SubmissionFilter) -> StoreFuture<Vec<SubmissionRecord>> {
        self.read(move |c| bounties::submissions(c, filter))
    }

    fn review_submission(&self, r: ReviewAsk) -> StoreFuture<Reviewed> {
        self.write(move |tx| bounties::review(tx, r))
    }

    fn open_dispute(&self, d: NewDispute) -> StoreFuture<DisputeRecord> {
        self.write(move |tx| bounties::open_dispute(tx, d))
    }

    fn dispute(&self, dispute_id: String) -> StoreFuture<Option<DisputeRecord>> {
        self.read(move |c| bounties::read_dispute(c, &dispute_id))
    }

    fn disputes(&self, filter: DisputeFilter) -> StoreFuture<Vec<DisputeRecord>> {
        self.read(move |c| bounties::disputes(c, filter))
    }

    fn resolve_dispute(&self, r: Resolution) -> StoreFuture<Resolved> {
        self.write(move |tx| bounties::resolve_dispute(tx, r))
    }

    fn bounty_sweep(
        &self,
        now_ms: i64,
        limit: u32,
        validator_tiers: Vec<String>,
    ) -> StoreFuture<BountySweep> {
        self.write(move |tx| bounties::sweep(tx, now_ms, limit, &validator_tiers))
    }

    fn vote_submission(&self, v: VoteAsk) -> StoreFuture<Voted> {
        self.write(move |tx| bounties::vote(tx, v))
    }

    fn vote_requests(&self, validator_id: String, limit: u32) -> StoreFuture<Vec<VoteRequest>> {
        self.read(move |c| bounties::vote_requests(c, &validator_id, limit))
    }

    fn create_webhook(&self, w: NewWebhook) -> StoreFuture<WebhookRecord> {
        self.write(move |tx| webhooks::create(tx, w))
    }

    fn webhooks(&self, buyer_id: String) -> StoreFuture<Vec<WebhookRecord>> {
        self.read(move |c| webhooks::list(c, &buyer_id))
    }

    fn webhook(&self, webhook_id: String) -> StoreFuture<Option<WebhookRecord>> {
        self.read(move |c| webhooks::read(c, &webhook_id))
    }

    fn delete_webhook(&self, buyer_id: String, webhook_id: String) -> StoreFuture<bool> {
        self.write(move |tx| webhooks::delete(tx, &buyer_id, &webhook_id))
    }

    fn deliveries(&self, filter: DeliveryFilter) -> StoreFuture<Vec<DeliveryRecord>> {
        self.read(move |c| webhooks::deliveries(c, filter))
    }

    fn retry_delivery(
        &self,
        buyer_id: String,
        webhook_id: String,
        delivery_id: String,
        now_ms: i64,
    ) -> StoreFuture<DeliveryRecord> {
        self.write(move |tx| webhooks::retry(tx, &buyer_id, &webhook_id, &delivery_id, now_ms))
    }

    fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        per_webhook: u32,
        limit: u32,
    ) -> StoreFuture<Vec<Claimed>> {
        self.write(move |tx| webhooks::claim(tx, now_ms, lease_ms, per_webhook, limit))
    }

    fn delivery_attempted(&self, a: Attempt) -> StoreFuture<bool> {
        self.write(move |tx| webhooks::attempted(tx, a))
    }

    fn purge_deliveries(&self, before_ms: i64) -> StoreFuture<u64> {
        self.write(move |tx| webhooks::purge(tx, before_ms))
    }

    fn notifications(&self, filter: NotificationFilter) -> StoreFuture<Vec<NotificationRecord>> {
        self.read(move |c| notifications::list(c, filter))
    }

    fn mark_read(&self, user_id: String, ids: Vec<String>, now_ms: i64) -> StoreFuture<u64> {
        self.write(move |tx| notifications::mark_read(tx, &user_id, &ids, now_ms))
    }

    fn referral(
        &self,
        user_id: String,
        candidate: String,
        now_ms: i64,
    ) -> StoreFuture<ReferralStats> {
        self.write(move |tx| referrals::referral(tx, user_id, candidate, now_ms))
    }

    fn purge_idempotency(&self, before_ms: i64) -> StoreFuture<u64> {
        self.write(move |tx| deposits::purge_idempotency(tx, before_ms))
    }

    /// After the purge commits, the WAL is checkpointed and truncated: the writer deletes with
    /// `secure_delete` (the pages in the database file are zeroed where the content was), and
    /// no old version of those pages is left in the WAL either.
    fn purge_task_data(&self, now_ms: i64, grace_ms: i64, limit: u32) -> StoreFuture<PurgedTasks> {
        use std::sync::atomic::Ordering;
        let purge = self.write(move |tx| sweeps::purge_task_data(tx, now_ms, grace_ms, limit));
        let path = self.path.clone();
        let unscrubbed = self.unscrubbed.clone();
        Box::pin(async move {
            let done = purge.await?;
            if done.purged > 0 || unscrubbed.load(Ordering::Acquire) {
                unscrubbed.store(true, Ordering::Release);
                let truncated =
                    tokio::task::spawn_blocking(move || sweeps::checkpoint_truncate(&path))
                        .await
                        .map_err(EngineError::internal)??;
                if truncated {
                    unscrubbed.store(false, Ordering::Release);
                } else {
                    tracing::warn!(
                        "store: the WAL is still in use after a purge; the next purge truncates it"
                    );
                }
            }
            Ok(done)
        })
    }

    fn record_audit(
        &self,
        by: Who,
        action: String,
        details: Value,
        now_ms: i64,
    ) -> StoreFuture<()> {
        self.write(move |tx| tx.audit(&by, &action, &details, now_ms))
    }

    fn audit_log(&self, filter: AuditFilter) -> StoreFuture<Vec<AuditEntry>> {
        self.read(move |c| audit_log::audit_log(c, &filter))
    }

    fn verify_audit_log(&self) -> StoreFuture<ChainReport> {
        let path = self.path.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let c = open_reader(&path)?;
                c.execute_batch("BEGIN").map_err(db_err)?;
                let report = audit_log::verify(&c);
                let _ = c.execute_batch("COMMIT");
                report
            })
            .await
            .map_err(EngineError::internal)?
        })
    }

    fn prune_audit_log(&self, before_ms: i64) -> StoreFuture<Pruned> {
        self.write(move |tx| audit_log::prune(tx, before_ms))
    }

    fn load_config(&self) -> StoreFuture<BTreeMap<String, StoredConfig>> {
        self.read(config::load_config)
    }

    fn config_history(&self, key: String, limit: u32) -> StoreFuture<Vec<StoredConfig>> {
        self.read(move |c| config::config_history(c, key, limit))
    }

    fn seed_config(&self, docs: BTreeMap<String, Value>, now_ms: i64) -> StoreFuture<u32> {
        self.write(move |tx| config::seed_config(tx, docs, now_ms))
    }

    fn put_config(
        &self,
        key: String,
        doc: Value,
        expected_version: Option<i64>,
        by: Who,
        now_ms: i64,
    ) -> StoreFuture<StoredConfig> {
        self.write(move |tx| config::put_config(tx, key, doc, expected_version, by, now_ms))
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
                "DROP INDEX tasks_by_qa_key; DROP INDEX tasks_by_qa_group; DROP INDEX tasks_purge_due;
                 ALTER TABLE tasks DROP COLUMN purge_after; ALTER TABLE tasks DROP COLUMN purged_at;
                 ALTER TABLE tasks DROP COLUMN input_preview;
                 ALTER TABLE workers DROP COLUMN qa_pass; ALTER TABLE workers DROP COLUMN qa_flag;
                 ALTER TABLE workers DROP COLUMN qa_fail; ALTER TABLE workers DROP COLUMN tier_penalty;
                 ALTER TABLE workers DROP COLUMN banned_at; ALTER TABLE workers DROP COLUMN balance_frozen;
                 ALTER TABLE tasks DROP COLUMN qa_group; ALTER TABLE tasks DROP COLUMN qa_key;
                 ALTER TABLE tasks DROP COLUMN qa_role; ALTER TABLE lots DROP COLUMN deducted_cents;
                 ALTER TABLE tokens DROP COLUMN label;
                 ALTER TABLE audit_log DROP COLUMN ip; ALTER TABLE audit_log DROP COLUMN user_agent;
                 ALTER TABLE audit_log DROP COLUMN prev_hash; ALTER TABLE audit_log DROP COLUMN hash;
                 DROP TABLE audit_chain;
                 INSERT INTO audit_log (id, actor_id, action, details, created_at)
                 VALUES (3, 'a', 'admin.credit', '{}', 1), (7, 'a', 'config.put', '{\"key\": \"qa\"}', 1);
                 UPDATE meta SET value = '1' WHERE key = 'schema_version';
                 INSERT INTO users (id, role, created_at) VALUES ('b1', 'buyer', 1);
                 INSERT INTO balances (user_id) VALUES ('b1');
                 INSERT INTO tasks (id, buyer_id, type, input, timeout_seconds, min_output_length,
                                    price_cents, status, output, created_at, completed_at)
                 VALUES ('old', 'b1', 'chat', '{\"q\": 1}', 60, 0, 5, 'completed', '{\"a\": 1}', 1, 10),
                        ('gone', 'b1', 'chat', '{\"q\": 2}', 60, 0, 5, 'failed', NULL, 1, 20);
                 INSERT INTO lots (worker_id, task_id, amount_cents, commission_cents, created_at, release_at, status)
                 VALUES ('w1', 'old', 0, 0, 10, 5000, 'released');",
            )
            .unwrap();
        }
        let store = SqliteStore::open(dir.path(), Box::new(NoObserver)).unwrap();
        store
            .admin_credit("b1".into(), 50, "old".into(), Who::system("a"), 1, None)
            .await
            .unwrap();
        let posted = store
            .post_task(NewTask {
                task_id: "t1".into(),
                buyer_id: "b1".into(),
                task_type: "chat".into(),
                input: "{}".into(),
                input_preview: None,
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
        // The entries from before the chain are chained, in their order, before the new one.
        let chain = store.verify_audit_log().await.unwrap();
        assert!(chain.ok, "{chain:?}");
        assert_eq!((chain.checked, chain.head.seq), (3, 3));
        let entries = store
            .audit_log(AuditFilter {
                limit: 10,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["admin.credit", "config.put", "admin.credit"]);
        assert_eq!(entries[1].details["key"], "qa");
        // Tasks that ended before the purge existed are due like any other: at the end of their
        // lot's window, or when they ended.
        assert_eq!(store.purge_task_data(4_999, 0, 10).await.unwrap().purged, 1);
        assert_eq!(store.task("gone".into()).await.unwrap().unwrap().input, "");
        let old = store.task("old".into()).await.unwrap().unwrap();
        assert_eq!(old.output.as_deref(), Some(r#"{"a": 1}"#));
        assert_eq!(store.purge_task_data(5_000, 0, 10).await.unwrap().purged, 1);
        let old = store.task("old".into()).await.unwrap().unwrap();
        assert_eq!(
            (old.input.as_str(), old.output, old.purged_at_ms),
            ("", None, Some(5_000))
        );
    }

    /// An entry changed behind the server's back is found by `verify`, and a broken chain is
    /// never pruned.
    #[tokio::test]
    async fn a_changed_entry_breaks_the_chain_and_stops_pruning() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), Box::new(NoObserver)).unwrap();
        store
            .create_buyer(NewBuyer {
                referral: None,
                user_id: "b1".into(),
                email: "b1@example.com".into(),
                password_hash: "x".into(),
                token_hash: "h".into(),
                signup_credit_cents: 0,
                now_ms: 1,
            })
            .await
            .unwrap();
        for cents in [100, 200, 300] {
            let by = Who::new("admin-1", "127.0.0.1", "test");
            store
                .admin_credit("b1".into(), cents, "r".into(), by, 2, None)
                .await
                .unwrap();
        }
        assert!(store.verify_audit_log().await.unwrap().ok);
        let c = Connection::open(dir.path().join("clawjobs.db")).unwrap();
        c.execute(
            "UPDATE audit_log SET details = replace(details, '200', '20000') WHERE id = 2",
            [],
        )
        .unwrap();
        let chain = store.verify_audit_log().await.unwrap();
        assert!(!chain.ok);
        let bad = chain.first_bad.expect("the changed entry");
        assert_eq!(bad.seq, 2, "{bad:?}");
        assert!(bad.reason.contains("changed"), "{}", bad.reason);
        let refused = store.prune_audit_log(i64::MAX).await;
        assert!(
            matches!(refused, Err(EngineError::Conflict(_))),
            "{refused:?}"
        );
        assert_eq!(store.verify_audit_log().await.unwrap().checked, 2);
    }
}
