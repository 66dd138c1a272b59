//! The MongoDB backend, through the official driver: every command that changes state is one
//! multi-document transaction (snapshot reads, majority writes), retried from the start on a
//! `TransientTransactionError` (a write conflict with another command or node) and its commit
//! retried on `UnknownTransactionCommitResult`. Claims and money are guarded by conditions on the
//! write itself (`status: "pending"`, `available_cents: {$gte: …}`), never by a read then a write.
//!
//! Transactions need a replica set (a one-member set is enough); [`MongoStore::open`] says so when
//! the server is a standalone. Several nodes may share one database: see `docs/ARCHITECTURE.md`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::bson::{Bson, Document, doc};
use mongodb::error::{
    Error as DbError, ErrorKind, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT,
};
use mongodb::options::{ReadConcern, TransactionOptions, WriteConcern};
use mongodb::{Client, ClientSession, Collection};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

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
mod docs;
mod events;
mod journal;
mod notifications;
mod payouts;
mod qa;
mod referrals;
mod schema;
mod sweeps;
mod tasks;
mod timeline;
mod watch;
mod webhooks;

use docs::*;

/// The database used when the URI names none.
pub const DEFAULT_DATABASE: &str = "clawjobs";
/// How long a command keeps retrying write conflicts before it answers `UNAVAILABLE`.
const RETRY_BUDGET: Duration = crate::store::COMMAND_BUDGET;
/// How long the driver looks for a server before an operation fails (a request then answers
/// `UNAVAILABLE` rather than hang).
const SERVER_SELECTION: Duration = Duration::from_secs(3);
/// How long start-up waits for the server before it gives up.
const START_WAIT: Duration = Duration::from_secs(12);

/// Why a command stopped: the engine's answer, a database error (retried when transient), or a
/// lost race the command noticed itself (retried).
enum Fail {
    Engine(EngineError),
    Db(DbError),
    Retry,
}

type R<T> = Result<T, Fail>;

impl From<EngineError> for Fail {
    fn from(e: EngineError) -> Self {
        Fail::Engine(e)
    }
}

impl From<DbError> for Fail {
    fn from(e: DbError) -> Self {
        Fail::Db(e)
    }
}

fn json_err(e: serde_json::Error) -> EngineError {
    EngineError::Internal(format!("store json: {e}"))
}

/// A database error as the engine reports it: the database being away is `Unavailable` (503),
/// anything else is a bug or a broken database (500).
fn db_error(e: DbError) -> EngineError {
    let away = matches!(
        *e.kind,
        ErrorKind::ServerSelection { .. }
            | ErrorKind::Io(_)
            | ErrorKind::ConnectionPoolCleared { .. }
    ) || e.contains_label("NetworkError")
        || e.contains_label(mongodb::error::RETRYABLE_WRITE_ERROR);
    if away {
        EngineError::Unavailable(format!("mongodb: {e}"))
    } else {
        EngineError::Internal(format!("mongodb: {e}"))
    }
}

fn is_transient(e: &DbError) -> bool {
    e.contains_label(TRANSIENT_TRANSACTION_ERROR)
}

/// A duplicate key (E11000): a unique index refused the write.
fn is_duplicate(e: &DbError) -> bool {
    match &*e.kind {
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .is_some_and(|errs| errs.iter().any(|w| w.code == 11000)),
        _ => false,
    }
}

/// Every collection, typed by its document.
#[derive(Clone)]
struct Db {
    pub meta: Collection<Document>,
    pub counters: Collection<Document>,
    pub users: Collection<UserDoc>,
    pub tokens: Collection<TokenDoc>,
    pub workers: Collection<WorkerDoc>,
    pub balances: Collection<BalanceDoc>,
    pub accounts: Collection<AccountShardDoc>,
    /// The journal: one document per entry, its postings inside.
    pub transactions: Collection<EntryDoc>,
    pub tasks: Collection<TaskDoc>,
    pub claims: Collection<ClaimDoc>,
    pub lots: Collection<LotDoc>,
    pub idempotency: Collection<IdemDoc>,
    pub config: Collection<ConfigDoc>,
    pub qa_groups: Collection<QaGroupDoc>,
    pub qa_results: Collection<QaResultDoc>,
    pub qa_outcomes: Collection<QaOutcomeDoc>,
    pub notices: Collection<NoticeDoc>,
    pub audit_log: Collection<AuditLogDoc>,
    pub events: Collection<events::EventDoc>,
    pub deposits: Collection<DepositDoc>,
    pub provider_events: Collection<ProviderEventDoc>,
    pub email_codes: Collection<EmailCodeDoc>,
    pub payouts: Collection<PayoutDoc>,
    pub outbox: Collection<OutboxDoc>,
    pub withdrawals: Collection<WithdrawalDoc>,
    pub bounties: Collection<bounties::BountyDoc>,
    pub notifications: Collection<notifications::NotificationDoc>,
    pub webhooks: Collection<webhooks::WebhookDoc>,
    pub deliveries: Collection<webhooks::DeliveryDoc>,
    pub submissions: Collection<bounties::SubmissionDoc>,
    pub disputes: Collection<bounties::DisputeDoc>,
    pub votes: Collection<bounties::VoteDoc>,
    pub referral_codes: Collection<ReferralCodeDoc>,
    pub referrals: Collection<ReferralDoc>,
    pub task_events: Collection<timeline::TaskEventDoc>,
    pub config_history: Collection<config::ConfigVersionDoc>,
}

impl Db {
    fn new(db: &mongodb::Database) -> Db {
        Db {
            meta: db.collection("meta"),
            counters: db.collection("counters"),
            users: db.collection("users"),
            tokens: db.collection("tokens"),
            workers: db.collection("workers"),
            balances: db.collection("balances"),
            accounts: db.collection("accounts"),
            transactions: db.collection("transactions"),
            tasks: db.collection("tasks"),
            claims: db.collection("claims"),
            lots: db.collection("lots"),
            idempotency: db.collection("idempotency"),
            config: db.collection("platform_config"),
            qa_groups: db.collection("qa_groups"),
            qa_results: db.collection("qa_results"),
            qa_outcomes: db.collection("qa_outcomes"),
            notices: db.collection("worker_notices"),
            audit_log: db.collection("audit_log"),
            events: db.collection("events"),
            deposits: db.collection("deposits"),
            provider_events: db.collection("provider_events"),
            email_codes: db.collection("email_codes"),
            payouts: db.collection("payouts"),
            outbox: db.collection("outbox"),
            withdrawals: db.collection("withdrawals"),
            bounties: db.collection("bounties"),
            notifications: db.collection("notifications"),
            webhooks: db.collection("webhooks"),
            deliveries: db.collection("webhook_deliveries"),
            submissions: db.collection("bounty_submissions"),
            disputes: db.collection("disputes"),
            votes: db.collection("bounty_votes"),
            referral_codes: db.collection("referral_codes"),
            referrals: db.collection("referrals"),
            task_events: db.collection("task_events"),
            config_history: db.collection("config_history"),
        }
    }

    /// The next number of the sequence `name` (task and QA result order). A single-document
    /// increment outside the command's transaction: it never conflicts, and a number a
    /// rolled-back command drew is simply never used.
    pub async fn next_seq(&self, name: &str) -> R<i64> {
        // Two first uses at once may race to create the counter; the loser finds it made.
        for _ in 0..3 {
            let found = self
                .counters
                .find_one_and_update(doc! { "_id": name }, doc! { "$inc": { "n": 1_i64 } })
                .upsert(true)
                .return_document(mongodb::options::ReturnDocument::After)
                .await;
            match found {
                Ok(Some(d)) => match d.get("n") {
                    Some(Bson::Int64(n)) => return Ok(*n),
                    Some(Bson::Int32(n)) => return Ok(i64::from(*n)),
                    _ => return Err(EngineError::internal("counter without a number").into()),
                },
                Ok(None) => continue,
                Err(e) if is_duplicate(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Fail::Retry)
    }
}

/// What one attempt of a write caused, for the observer once it commits.
struct Caused {
    touched: Vec<String>,
    notified: Vec<NotificationRecord>,
    events: Vec<BountyEvent>,
}

/// What a command sees: the collections and its session (inside a transaction for writes), and
/// the user balances it changed (reported to the observer once it commits).
struct Tx<'a> {
    pub db: &'a Db,
    s: &'a mut ClientSession,
    touched: Vec<String>,
    /// Notifications this attempt stored, for the observer once it commits.
    notified: Vec<NotificationRecord>,
    /// Bounty events this attempt caused, for the observer once it commits.
    events: Vec<BountyEvent>,
}

impl<'a> Tx<'a> {
    fn new(db: &'a Db, s: &'a mut ClientSession) -> Tx<'a> {
        Tx {
            db,
            s,
            touched: Vec::new(),
            notified: Vec::new(),
            events: Vec::new(),
        }
    }

    pub async fn one<T>(&mut self, c: &Collection<T>, filter: Document) -> R<Option<T>>
    where
        T: DeserializeOwned + Send + Sync,
    {
        Ok(c.find_one(filter).session(&mut *self.s).await?)
    }

    pub async fn many<T>(
        &mut self,
        c: &Collection<T>,
        filter: Document,
        sort: Document,
        limit: Option<i64>,
    ) -> R<Vec<T>>
    where
        T: DeserializeOwned + Send + Sync,
    {
        self.find_all(c, filter, sort, limit, None).await
    }

    /// What `filter` matches in `sort` order, at most `limit`, only the `projection`'s fields if
    /// one is given.
    async fn find_all<T>(
        &mut self,
        c: &Collection<T>,
        filter: Document,
        sort: Document,
        limit: Option<i64>,
        projection: Option<Document>,
    ) -> R<Vec<T>>
    where
        T: DeserializeOwned + Send + Sync,
    {
        let mut find = c.find(filter).sort(sort);
        if let Some(n) = limit {
            find = find.limit(n);
        }
        if let Some(p) = projection {
            find = find.projection(p);
        }
        let mut cursor = find.session(&mut *self.s).await?;
        let mut out = Vec::new();
        while let Some(doc) = cursor.next(&mut *self.s).await {
            out.push(doc?);
        }
        Ok(out)
    }

    /// A page of `c`, newest first by `seq`: what `filter` matches, narrowed to `status` and to
    /// before `before_seq` when given.
    pub async fn newest<T>(
        &mut self,
        c: &Collection<T>,
        mut filter: Document,
        status: Option<&str>,
        before_seq: Option<i64>,
        limit: u32,
    ) -> R<Vec<T>>
    where
        T: DeserializeOwned + Send + Sync,
    {
        if let Some(s) = status {
            filter.insert("status", s);
        }
        if let Some(before) = before_seq {
            filter.insert("seq", doc! { "$lt": before });
        }
        self.many(c, filter, doc! { "seq": -1 }, Some(i64::from(limit)))
            .await
    }

    /// Updates the one document `filter` matches; returns whether it matched.
    pub async fn update<T>(
        &mut self,
        c: &Collection<T>,
        filter: Document,
        update: Document,
    ) -> R<bool>
    where
        T: Send + Sync,
    {
        Ok(c.update_one(filter, update)
            .session(&mut *self.s)
            .await?
            .matched_count
            > 0)
    }

    pub async fn update_many<T>(
        &mut self,
        c: &Collection<T>,
        filter: Document,
        update: Document,
    ) -> R<u64>
    where
        T: Send + Sync,
    {
        Ok(c.update_many(filter, update)
            .session(&mut *self.s)
            .await?
            .modified_count)
    }

    /// Updates the one document `filter` matches and returns it as it is afterwards.
    pub async fn take<T>(
        &mut self,
        c: &Collection<T>,
        filter: Document,
        update: Document,
    ) -> R<Option<T>>
    where
        T: DeserializeOwned + Send + Sync,
    {
        Ok(c.find_one_and_update(filter, update)
            .return_document(mongodb::options::ReturnDocument::After)
            .session(&mut *self.s)
            .await?)
    }

    pub async fn insert<T>(&mut self, c: &Collection<T>, doc: &T) -> R<()>
    where
        T: Serialize + Send + Sync,
    {
        c.insert_one(doc).session(&mut *self.s).await?;
        Ok(())
    }

    pub async fn delete<T>(&mut self, c: &Collection<T>, filter: Document) -> R<u64>
    where
        T: Send + Sync,
    {
        Ok(c.delete_many(filter)
            .session(&mut *self.s)
            .await?
            .deleted_count)
    }

    pub async fn count<T>(&mut self, c: &Collection<T>, filter: Document) -> R<u64>
    where
        T: Send + Sync,
    {
        Ok(c.count_documents(filter).session(&mut *self.s).await?)
    }

    pub async fn exists<T>(&mut self, c: &Collection<T>, filter: Document) -> R<bool>
    where
        T: Send + Sync,
    {
        let found = c
            .clone_with_type::<Document>()
            .find_one(filter)
            .projection(doc! { "_id": 1 })
            .session(&mut *self.s)
            .await?;
        Ok(found.is_some())
    }

    /// Like [`Tx::many`], but only the `projection`'s fields, as plain documents.
    pub async fn fields<T>(
        &mut self,
        c: &Collection<T>,
        filter: Document,
        sort: Document,
        limit: i64,
        projection: Document,
    ) -> R<Vec<Document>>
    where
        T: Send + Sync,
    {
        let c = c.clone_with_type::<Document>();
        self.find_all(&c, filter, sort, Some(limit), Some(projection))
            .await
    }

    pub async fn aggregate<T>(
        &mut self,
        c: &Collection<T>,
        pipeline: Vec<Document>,
    ) -> R<Vec<Document>>
    where
        T: Send + Sync,
    {
        let mut cursor = c.aggregate(pipeline).session(&mut *self.s).await?;
        let mut out = Vec::new();
        while let Some(doc) = cursor.next(&mut *self.s).await {
            out.push(doc?);
        }
        Ok(out)
    }

    pub fn touch(&mut self, user_id: &str) {
        if !self.touched.iter().any(|u| u == user_id) {
            self.touched.push(user_id.to_string());
        }
    }
}

/// Runs a command against the store and boxes its future. A macro rather than a function taking
/// a closure: the command's future must have a concrete type where it is boxed, so that it is
/// known to be `Send` (a closure over `&mut Tx` would be higher-ranked, which the compiler cannot
/// yet prove `Send`). `$body` is the command's expression, with `$tx: &mut Tx` in scope.
///
/// - `write`: one transaction, from the start again after a transient error, until it commits,
///   answers with the engine's error, or the retry budget is spent;
/// - `read`: a session without a transaction (each read sees the latest committed state);
/// - `snapshot`: several reads that must agree, in one read-only snapshot transaction.
macro_rules! command {
    ($store:expr, write, |$tx:ident| $body:expr) => {{
        let inner = $store.inner.clone();
        Box::pin(async move {
            let mut session = inner.session().await?;
            let mut retry = Retry::new();
            loop {
                inner.begin(&mut session, &inner.writes).await?;
                let mut tx = Tx::new(&inner.db, &mut session);
                let out: R<_> = async {
                    let $tx = &mut tx;
                    $body
                }
                .await;
                let caused = Caused {
                    touched: tx.touched,
                    notified: tx.notified,
                    events: tx.events,
                };
                if let Some(value) = inner.settle(&mut session, out, caused, &mut retry).await? {
                    break Ok(value);
                }
            }
        })
    }};
    ($store:expr, read, |$tx:ident| $body:expr) => {{
        let inner = $store.inner.clone();
        Box::pin(async move {
            let mut session = inner.session().await?;
            let mut tx = Tx::new(&inner.db, &mut session);
            let out: R<_> = async {
                let $tx = &mut tx;
                $body
            }
            .await;
            out.map_err(read_fail)
        })
    }};
    ($store:expr, snapshot, |$tx:ident| $body:expr) => {{
        let inner = $store.inner.clone();
        Box::pin(async move {
            let mut session = inner.session().await?;
            inner.begin(&mut session, &inner.snapshot).await?;
            let mut tx = Tx::new(&inner.db, &mut session);
            let out: R<_> = async {
                let $tx = &mut tx;
                $body
            }
            .await;
            let _ = session.abort_transaction().await;
            out.map_err(read_fail)
        })
    }};
}

/// How long a write has been retrying, and its next pause.
struct Retry {
    started: Instant,
    pause: Duration,
}

impl Retry {
    fn new() -> Retry {
        Retry {
            started: Instant::now(),
            pause: Duration::from_millis(2),
        }
    }
}

struct Inner {
    client: Client,
    database: mongodb::Database,
    db: Db,
    observer: Box<dyn BalanceObserver>,
    writes: TransactionOptions,
    snapshot: TransactionOptions,
}

impl Inner {
    async fn session(&self) -> Result<ClientSession, EngineError> {
        self.client.start_session().await.map_err(db_error)
    }

    async fn begin(
        &self,
        session: &mut ClientSession,
        options: &TransactionOptions,
    ) -> Result<(), EngineError> {
        session
            .start_transaction()
            .with_options(options.clone())
            .await
            .map_err(db_error)
    }

    /// Ends one attempt of a write: commits it (`Some(value)`), or asks for another attempt
    /// (`None`) after a transient error, or gives the final error.
    async fn settle<T>(
        &self,
        session: &mut ClientSession,
        out: R<T>,
        caused: Caused,
        retry: &mut Retry,
    ) -> Result<Option<T>, EngineError> {
        let cause = match out {
            Ok(value) => match commit(session, retry.started).await {
                Ok(()) => {
                    self.observe(caused.touched).await;
                    if !caused.notified.is_empty() {
                        self.observer.notified(&caused.notified);
                    }
                    if !caused.events.is_empty() {
                        self.observer.bounty_events(&caused.events);
                    }
                    return Ok(Some(value));
                }
                Err(e) if is_transient(&e) => e.to_string(),
                Err(e) => return Err(db_error(e)),
            },
            Err(fail) => {
                let _ = session.abort_transaction().await;
                match fail {
                    Fail::Engine(e) => return Err(e),
                    Fail::Db(e) if is_transient(&e) => e.to_string(),
                    Fail::Db(e) => return Err(db_error(e)),
                    Fail::Retry => "a lost race".to_string(),
                }
            }
        };
        if retry.started.elapsed() > RETRY_BUDGET {
            return Err(EngineError::Unavailable(format!(
                "mongodb: still conflicting after {RETRY_BUDGET:?}: {cause}"
            )));
        }
        tokio::time::sleep(jittered(retry.pause)).await;
        retry.pause = (retry.pause * 2).min(Duration::from_millis(100));
        Ok(None)
    }

    async fn observe(&self, mut touched: Vec<String>) {
        touched.retain(|u| self.observer.watches(u));
        if touched.is_empty() {
            return;
        }
        let found = async {
            let mut cursor = self
                .db
                .balances
                .find(doc! { "_id": { "$in": &touched } })
                .await?;
            let mut out = Vec::new();
            while cursor.advance().await? {
                out.push(cursor.deserialize_current()?.snapshot());
            }
            Ok::<_, DbError>(out)
        };
        match found.await {
            Ok(snapshots) if !snapshots.is_empty() => self.observer.observe(&snapshots),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "store: cannot read balances back after a commit"),
        }
    }
}

fn read_fail(fail: Fail) -> EngineError {
    match fail {
        Fail::Engine(e) => e,
        Fail::Db(e) => db_error(e),
        Fail::Retry => EngineError::Unavailable("mongodb: a read lost a race".into()),
    }
}

async fn commit(session: &mut ClientSession, started: Instant) -> Result<(), DbError> {
    loop {
        match session.commit_transaction().await {
            Err(e)
                if e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
                    && started.elapsed() < RETRY_BUDGET =>
            {
                continue;
            }
            other => return other,
        }
    }
}

/// Between half and all of `pause`, so that conflicting commands do not retry in step.
fn jittered(pause: Duration) -> Duration {
    use rand::RngExt;
    let nanos = pause.as_nanos() as u64;
    Duration::from_nanos(rand::rng().random_range(nanos / 2..=nanos.max(1)))
}

pub struct MongoStore {
    inner: Arc<Inner>,
    events: Arc<events::MongoEventLog>,
    /// The URI without its password, for logs.
    shown: String,
}

impl std::fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoStore")
            .field("uri", &self.shown)
            .finish()
    }
}

impl MongoStore {
    /// Connects to `uri` (the database is the URI's path, `clawjobs` when it has none), checks
    /// that the server can run transactions, and creates the indexes and the schema version.
    pub async fn open(
        uri: &str,
        observer: Box<dyn BalanceObserver>,
    ) -> Result<MongoStore, EngineError> {
        let shown = super::redact(uri);
        let mut options = mongodb::options::ClientOptions::parse(uri)
            .await
            .map_err(|e| EngineError::internal(format!("bad MongoDB URI {shown}: {e}")))?;
        options
            .server_selection_timeout
            .get_or_insert(SERVER_SELECTION);
        options
            .connect_timeout
            .get_or_insert(Duration::from_secs(5));
        options.app_name.get_or_insert_with(|| "clawjobs".into());
        let database = options
            .default_database
            .clone()
            .unwrap_or_else(|| DEFAULT_DATABASE.to_string());
        let client = Client::with_options(options)
            .map_err(|e| EngineError::internal(format!("MongoDB client for {shown}: {e}")))?;
        let db = client.database(&database);
        schema::check_server(&db, &shown).await?;
        let typed = Db::new(&db);
        schema::migrate(&db, &typed).await?;
        let writes = TransactionOptions::builder()
            .read_concern(ReadConcern::snapshot())
            .write_concern(WriteConcern::majority())
            .build();
        let snapshot = TransactionOptions::builder()
            .read_concern(ReadConcern::snapshot())
            .build();
        tracing::info!(uri = %shown, %database, "store: MongoDB");
        let events = Arc::new(events::MongoEventLog::start(typed.events.clone()));
        let store = MongoStore {
            events,
            inner: Arc::new(Inner {
                client,
                database: db,
                db: typed,
                observer,
                writes,
                snapshot,
            }),
            shown,
        };
        store.chain_audit_log().await?;
        store.schedule_earlier_purges().await?;
        Ok(store)
    }

    /// Gives the tasks that ended before task content was purged their `purge_after`, a batch per
    /// transaction, once per database (a marker in `meta` says it is done).
    async fn schedule_earlier_purges(&self) -> Result<(), EngineError> {
        const MARK: &str = "task_purges_scheduled";
        let marked = self
            .inner
            .db
            .meta
            .find_one(doc! { "_id": MARK })
            .await
            .map_err(db_error)?;
        if marked.is_some() {
            return Ok(());
        }
        let scheduled = until_done(|| -> StoreFuture<u64> {
            command!(self, write, |tx| sweeps::schedule_unscheduled(tx, 500)
                .await)
        })
        .await?;
        if scheduled > 0 {
            tracing::info!(
                tasks = scheduled,
                "store: scheduled the purge of ended tasks"
            );
        }
        self.inner
            .db
            .meta
            .update_one(
                doc! { "_id": MARK },
                doc! { "$setOnInsert": { "at": crate::clock::now_ms() } },
            )
            .upsert(true)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Chains the audit entries written before the chain existed, a batch per transaction.
    async fn chain_audit_log(&self) -> Result<(), EngineError> {
        let chained = until_done(|| -> StoreFuture<u64> {
            command!(self, write, |tx| audit_log::chain_unchained(tx, 500).await)
        })
        .await?;
        if chained > 0 {
            tracing::info!(
                entries = chained,
                "store: chained the audit log's earlier entries"
            );
        }
        Ok(())
    }
}

/// Runs `batch` (a command that handles up to a batch and says how many) until one finds
/// nothing left; returns how many in all.
async fn until_done(batch: impl Fn() -> StoreFuture<u64>) -> Result<u64, EngineError> {
    let mut total = 0;
    loop {
        match batch().await? {
            0 => return Ok(total),
            n => total += n,
        }
    }
}

impl Store for MongoStore {
    fn create_buyer(&self, b: NewBuyer) -> StoreFuture<BalanceSnapshot> {
        command!(self, write, |tx| accounts::create_buyer(tx, &b).await)
    }

    fn find_login(&self, email: String) -> StoreFuture<Option<(String, String)>> {
        command!(self, read, |tx| accounts::find_login(tx, &email).await)
    }

    fn add_token(
        &self,
        token_hash: String,
        user_id: String,
        role: Role,
        now_ms: i64,
    ) -> StoreFuture<()> {
        command!(self, write, |tx| {
            accounts::insert_token(tx, &token_hash, &user_id, role, None, now_ms).await
        })
    }

    fn resolve_token(&self, token_hash: String) -> StoreFuture<Option<Principal>> {
        command!(self, read, |tx| accounts::resolve_token(tx, &token_hash)
            .await)
    }

    fn add_admin_token(
        &self,
        token_hash: String,
        label: String,
        now_ms: i64,
    ) -> StoreFuture<AdminToken> {
        command!(self, write, |tx| {
            accounts::add_admin_token(tx, &token_hash, &label, now_ms).await
        })
    }

    fn admin_tokens(&self) -> StoreFuture<Vec<AdminToken>> {
        command!(self, read, |tx| accounts::admin_tokens(tx).await)
    }

    fn revoke_admin_token(&self, id: String) -> StoreFuture<AdminToken> {
        command!(self, write, |tx| accounts::revoke_admin_token(tx, &id)
            .await)
    }

    fn create_worker(&self, w: NewWorker) -> StoreFuture<WorkerRecord> {
        command!(self, write, |tx| accounts::create_worker(tx, &w).await)
    }

    fn worker(&self, worker_id: String) -> StoreFuture<Option<WorkerRecord>> {
        command!(self, read, |tx| accounts::read_worker(tx, &worker_id).await)
    }

    fn update_worker_profile(
        &self,
        worker_id: String,
        profile: WorkerProfile,
    ) -> StoreFuture<WorkerRecord> {
        command!(self, write, |tx| {
            accounts::update_worker_profile(tx, &worker_id, &profile).await
        })
    }

    fn worker_earned_since(&self, worker_id: String, since_ms: i64) -> StoreFuture<i64> {
        command!(self, read, |tx| {
            accounts::worker_earned_since(tx, &worker_id, since_ms).await
        })
    }

    fn task_timeline(
        &self,
        task_id: String,
    ) -> StoreFuture<Option<crate::store::timeline::TimelineParts>> {
        command!(self, read, |tx| timeline::read(tx, &task_id).await)
    }

    fn earnings(
        &self,
        worker_id: String,
        before_seq: Option<i64>,
        limit: u32,
    ) -> StoreFuture<Earnings> {
        command!(self, read, |tx| {
            accounts::earnings(tx, &worker_id, before_seq, limit).await
        })
    }

    fn balance(&self, user_id: String) -> StoreFuture<Option<BalanceSnapshot>> {
        command!(self, read, |tx| {
            let db = tx.db;
            let found = tx.one(&db.balances, doc! { "_id": &user_id }).await?;
            Ok(found.map(BalanceDoc::snapshot))
        })
    }

    fn post_task(&self, t: NewTask) -> StoreFuture<TaskPosted> {
        command!(self, write, |tx| tasks::post_task(tx, &t).await)
    }

    fn task(&self, task_id: String) -> StoreFuture<Option<TaskRecord>> {
        command!(self, read, |tx| {
            let db = tx.db;
            let found = tx.one(&db.tasks, doc! { "_id": &task_id }).await?;
            Ok(found.map(|t| t.record()))
        })
    }

    fn list_tasks(
        &self,
        buyer_id: String,
        before_seq: Option<i64>,
        limit: u32,
    ) -> StoreFuture<Vec<TaskRecord>> {
        command!(self, read, |tx| {
            tasks::list_tasks(tx, &buyer_id, before_seq, limit).await
        })
    }

    fn claim(
        &self,
        task_id: TaskId,
        worker_id: WorkerId,
        now_ms: i64,
    ) -> StoreFuture<ClaimOutcome> {
        command!(self, write, |tx| {
            tasks::claim(tx, task_id.as_str(), worker_id.as_str(), now_ms).await
        })
    }

    fn unclaim(
        &self,
        task_id: TaskId,
        worker_id: WorkerId,
        attempt: u32,
    ) -> StoreFuture<Option<LiveTask>> {
        command!(self, write, |tx| {
            tasks::unclaim(tx, task_id.as_str(), worker_id.as_str(), attempt).await
        })
    }

    fn release(&self, task_id: TaskId, worker_id: WorkerId) -> StoreFuture<Option<LiveTask>> {
        command!(self, write, |tx| {
            tasks::release(tx, task_id.as_str(), worker_id.as_str()).await
        })
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
        command!(self, write, |tx| {
            let submitted = tasks::Submit {
                task_id: task_id.as_str(),
                worker_id: worker_id.as_str(),
                output: &output,
                now_ms,
                cfg: &cfg,
                spot_roll_bp,
            };
            tasks::submit(tx, submitted).await
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
        command!(self, write, |tx| {
            tasks::expire(
                tx,
                task_id.as_str(),
                worker_id.as_str(),
                attempt,
                now_ms,
                &cfg,
            )
            .await
        })
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
        command!(self, write, |tx| {
            let asked = tasks::CreditAsk {
                task_id: task_id.as_str(),
                buyer_id: &buyer.id,
                by: &buyer,
                reason: reason.as_deref(),
                now_ms,
                cfg: &cfg,
            };
            tasks::credit(tx, asked, idem.as_ref()).await
        })
    }

    fn live_tasks(&self) -> StoreFuture<Vec<LiveTask>> {
        command!(self, read, |tx| tasks::live_tasks(tx).await)
    }

    fn overdue(&self, now_ms: i64, limit: u32) -> StoreFuture<Vec<LiveTask>> {
        command!(self, read, |tx| sweeps::overdue(tx, now_ms, limit).await)
    }

    fn fail_stale(&self, created_before_ms: i64, limit: u32) -> StoreFuture<Vec<FailedTask>> {
        command!(self, write, |tx| {
            sweeps::fail_stale(tx, created_before_ms, limit).await
        })
    }

    fn unfreeze_due(&self, now_ms: i64, limit: u32) -> StoreFuture<u64> {
        command!(self, write, |tx| sweeps::unfreeze_due(tx, now_ms, limit)
            .await)
    }

    fn next_unfreeze_ms(&self) -> StoreFuture<Option<i64>> {
        command!(self, read, |tx| sweeps::next_unfreeze_ms(tx).await)
    }

    fn qa_group(&self, group_id: String) -> StoreFuture<Option<QaGroup>> {
        command!(self, snapshot, |tx| qa::qa_group(tx, &group_id).await)
    }

    fn qa_undecided(&self) -> StoreFuture<Vec<String>> {
        command!(self, read, |tx| qa::qa_undecided(tx).await)
    }

    fn qa_apply(
        &self,
        group_id: String,
        from: QaState,
        decision: QaDecision,
        now_ms: i64,
        cfg: Arc<PlatformConfig>,
    ) -> StoreFuture<QaApplied> {
        command!(self, write, |tx| {
            qa::qa_apply(tx, &group_id, from, &decision, now_ms, &cfg).await
        })
    }

    fn inject_benchmark(&self, b: NewBenchmark) -> StoreFuture<QaCopy> {
        command!(self, write, |tx| qa::inject_benchmark(tx, &b).await)
    }

    fn qa_results(
        &self,
        worker_id: Option<String>,
        verdict: Option<String>,
        before_seq: Option<i64>,
        limit: u32,
    ) -> StoreFuture<Vec<QaResult>> {
        command!(self, read, |tx| {
            qa::qa_results(
                tx,
                worker_id.as_deref(),
                verdict.as_deref(),
                before_seq,
                limit,
            )
            .await
        })
    }

    fn qa_stats(&self) -> StoreFuture<QaStats> {
        command!(self, snapshot, |tx| qa::qa_stats(tx).await)
    }

    fn worker_notices(&self, worker_id: String) -> StoreFuture<Vec<WorkerNotice>> {
        command!(self, read, |tx| qa::worker_notices(tx, &worker_id).await)
    }

    fn banned_workers(&self) -> StoreFuture<Vec<String>> {
        command!(self, read, |tx| qa::banned_workers(tx).await)
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
        command!(self, write, |tx| {
            let asked = accounts::AdminCreditAsk {
                user_id: user_id.as_str(),
                amount_cents,
                reason: &reason,
                by: &by,
                now_ms,
            };
            accounts::admin_credit(tx, asked, idem.as_ref()).await
        })
    }

    fn create_deposit(&self, d: NewDeposit) -> StoreFuture<DepositRecord> {
        command!(self, write, |tx| deposits::create_deposit(tx, &d).await)
    }

    fn deposit_event(&self, e: ProviderEvent) -> StoreFuture<EventOutcome> {
        command!(self, write, |tx| deposits::deposit_event(tx, &e).await)
    }

    fn resolve_deposit(
        &self,
        deposit_id: String,
        by: Who,
        note: String,
        now_ms: i64,
    ) -> StoreFuture<DepositRecord> {
        command!(self, write, |tx| {
            deposits::resolve_deposit(tx, &deposit_id, &by, &note, now_ms).await
        })
    }

    fn deposits(&self, filter: DepositFilter) -> StoreFuture<Vec<DepositRecord>> {
        command!(self, read, |tx| deposits::deposits(tx, &filter).await)
    }

    fn email_code(&self, c: NewEmailCode) -> StoreFuture<()> {
        command!(self, write, |tx| payouts::email_code(tx, &c).await)
    }

    fn forget_email_code(&self, worker_id: String, code_hash: String) -> StoreFuture<()> {
        command!(self, write, |tx| {
            let db = tx.db;
            tx.delete(
                &db.email_codes,
                doc! { "_id": &worker_id, "code_hash": &code_hash },
            )
            .await
            .map(|_| ())
        })
    }

    fn verify_email(
        &self,
        worker_id: String,
        email: String,
        code_hash: String,
        now_ms: i64,
    ) -> StoreFuture<VerifyOutcome> {
        command!(self, write, |tx| {
            payouts::verify_email(tx, &worker_id, &email, &code_hash, now_ms).await
        })
    }

    fn bind_payout(
        &self,
        worker_id: String,
        method: crate::rules::payout::PayoutMethod,
        address: String,
        now_ms: i64,
    ) -> StoreFuture<PayoutBinding> {
        command!(self, write, |tx| {
            payouts::bind_payout(tx, &worker_id, method, &address, now_ms).await
        })
    }

    fn payout_binding(&self, worker_id: String) -> StoreFuture<Option<PayoutBinding>> {
        command!(self, read, |tx| payouts::payout_binding(tx, &worker_id)
            .await)
    }

    fn outbox(&self, before_seq: Option<i64>, limit: u32) -> StoreFuture<Vec<OutboxMessage>> {
        command!(self, read, |tx| payouts::outbox(tx, before_seq, limit)
            .await)
    }

    fn withdraw(&self, w: NewWithdrawal) -> StoreFuture<WithdrawalRecord> {
        command!(self, write, |tx| payouts::withdraw(tx, &w).await)
    }

    fn withdrawals(&self, filter: WithdrawalFilter) -> StoreFuture<Vec<WithdrawalRecord>> {
        command!(self, read, |tx| payouts::withdrawals(tx, &filter).await)
    }

    fn post_bounty(&self, b: NewBounty) -> StoreFuture<BountyRecord> {
        command!(self, write, |tx| bounties::post_bounty(tx, &b).await)
    }

    fn bounty(&self, bounty_id: String) -> StoreFuture<Option<BountyRecord>> {
        command!(self, read, |tx| bounties::read_bounty(tx, &bounty_id).await)
    }

    fn bounties(&self, filter: BountyFilter) -> StoreFuture<Vec<BountyRecord>> {
        command!(self, read, |tx| bounties::bounties(tx, &filter).await)
    }

    fn cancel_bounty(
        &self,
        bounty_id: String,
        buyer_id: String,
        now_ms: i64,
    ) -> StoreFuture<BountyRecord> {
        command!(self, write, |tx| {
            bounties::cancel_bounty(tx, &bounty_id, &buyer_id, now_ms).await
        })
    }

    fn bounty_sweep(
        &self,
        now_ms: i64,
        limit: u32,
        validator_tiers: Vec<String>,
    ) -> StoreFuture<BountySweep> {
        command!(self, write, |tx| bounties::sweep(
            tx,
            now_ms,
            limit,
            &validator_tiers
        )
        .await)
    }

    fn vote_submission(&self, v: VoteAsk) -> StoreFuture<Voted> {
        command!(self, write, |tx| bounties::vote(tx, &v).await)
    }

    fn vote_requests(&self, validator_id: String, limit: u32) -> StoreFuture<Vec<VoteRequest>> {
        command!(self, read, |tx| bounties::vote_requests(
            tx,
            &validator_id,
            limit
        )
        .await)
    }

    fn notifications(&self, filter: NotificationFilter) -> StoreFuture<Vec<NotificationRecord>> {
        command!(self, read, |tx| notifications::list(tx, &filter).await)
    }

    fn mark_read(&self, user_id: String, ids: Vec<String>, now_ms: i64) -> StoreFuture<u64> {
        command!(self, write, |tx| {
            notifications::mark_read(tx, &user_id, &ids, now_ms).await
        })
    }

    fn create_webhook(&self, w: NewWebhook) -> StoreFuture<WebhookRecord> {
        command!(self, write, |tx| webhooks::create(tx, &w).await)
    }

    fn webhooks(&self, buyer_id: String) -> StoreFuture<Vec<WebhookRecord>> {
        command!(self, read, |tx| webhooks::list(tx, &buyer_id).await)
    }

    fn webhook(&self, webhook_id: String) -> StoreFuture<Option<WebhookRecord>> {
        command!(self, read, |tx| webhooks::read(tx, &webhook_id).await)
    }

    fn delete_webhook(&self, buyer_id: String, webhook_id: String) -> StoreFuture<bool> {
        command!(self, write, |tx| {
            webhooks::delete(tx, &buyer_id, &webhook_id).await
        })
    }

    fn deliveries(&self, filter: DeliveryFilter) -> StoreFuture<Vec<DeliveryRecord>> {
        command!(self, read, |tx| webhooks::deliveries(tx, &filter).await)
    }

    fn retry_delivery(
        &self,
        buyer_id: String,
        webhook_id: String,
        delivery_id: String,
        now_ms: i64,
    ) -> StoreFuture<DeliveryRecord> {
        command!(self, write, |tx| {
            webhooks::retry(tx, &buyer_id, &webhook_id, &delivery_id, now_ms).await
        })
    }

    fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        per_webhook: u32,
        limit: u32,
    ) -> StoreFuture<Vec<Claimed>> {
        command!(self, write, |tx| {
            webhooks::claim(tx, now_ms, lease_ms, per_webhook, limit).await
        })
    }

    fn delivery_attempted(&self, a: Attempt) -> StoreFuture<bool> {
        command!(self, write, |tx| webhooks::attempted(tx, &a).await)
    }

    fn purge_deliveries(&self, before_ms: i64) -> StoreFuture<u64> {
        command!(self, write, |tx| webhooks::purge(tx, before_ms).await)
    }

    fn submit_bounty(&self, s: NewSubmission) -> StoreFuture<SubmissionRecord> {
        command!(self, write, |tx| bounties::submit(tx, &s).await)
    }

    fn submission(&self, submission_id: String) -> StoreFuture<Option<SubmissionRecord>> {
        command!(self, read, |tx| bounties::read_submission(
            tx,
            &submission_id
        )
        .await)
    }

    fn submissions(&self, filter: SubmissionFilter) -> StoreFuture<Vec<SubmissionRecord>> {
        command!(self, read, |tx| bounties::submissions(tx, &filter).await)
    }

    fn review_submission(&self, r: ReviewAsk) -> StoreFuture<Reviewed> {
        command!(self, write, |tx| bounties::review(tx, &r).await)
    }

    fn open_dispute(&self, d: NewDispute) -> StoreFuture<DisputeRecord> {
        command!(self, write, |tx| bounties::open_dispute(tx, &d).await)
    }

    fn dispute(&self, dispute_id: String) -> StoreFuture<Option<DisputeRecord>> {
        command!(self, read, |tx| bounties::read_dispute(tx, &dispute_id)
            .await)
    }

    fn disputes(&self, filter: DisputeFilter) -> StoreFuture<Vec<DisputeRecord>> {
        command!(self, read, |tx| bounties::disputes(tx, &filter).await)
    }

    fn resolve_dispute(&self, r: Resolution) -> StoreFuture<Resolved> {
        command!(self, write, |tx| bounties::resolve_dispute(tx, &r).await)
    }

    fn settle_withdrawal(
        &self,
        withdrawal_id: String,
        settle: Settle,
        by: Who,
        now_ms: i64,
        idem: Option<IdemKey>,
    ) -> StoreFuture<WithdrawalRecord> {
        command!(self, write, |tx| {
            let ask = payouts::SettleAsk {
                withdrawal_id: &withdrawal_id,
                settle: &settle,
                by: &by,
                now_ms,
            };
            payouts::settle_withdrawal(tx, ask, idem.as_ref()).await
        })
    }

    fn referral(
        &self,
        user_id: String,
        candidate: String,
        now_ms: i64,
    ) -> StoreFuture<ReferralStats> {
        // Every attempt after the first draws a code of its own (the first may have been taken).
        let first = std::sync::Mutex::new(Some(candidate));
        command!(self, write, |tx| {
            let code = first
                .lock()
                .ok()
                .and_then(|mut c| c.take())
                .unwrap_or_else(crate::rules::referral::new_code);
            referrals::referral(tx, &user_id, &code, now_ms).await
        })
    }

    fn purge_idempotency(&self, before_ms: i64) -> StoreFuture<u64> {
        command!(self, write, |tx| deposits::purge_idempotency(tx, before_ms)
            .await)
    }

    fn purge_task_data(&self, now_ms: i64, grace_ms: i64, limit: u32) -> StoreFuture<PurgedTasks> {
        command!(self, write, |tx| sweeps::purge_task_data(
            tx, now_ms, grace_ms, limit
        )
        .await)
    }

    fn record_audit(
        &self,
        by: Who,
        action: String,
        details: Value,
        now_ms: i64,
    ) -> StoreFuture<()> {
        command!(self, write, |tx| tx
            .audit(&by, &action, &details, now_ms)
            .await)
    }

    fn audit_log(&self, filter: AuditFilter) -> StoreFuture<Vec<AuditEntry>> {
        command!(self, read, |tx| audit_log::audit_log(tx, &filter).await)
    }

    fn verify_audit_log(&self) -> StoreFuture<ChainReport> {
        command!(self, snapshot, |tx| audit_log::verify(tx).await)
    }

    fn prune_audit_log(&self, before_ms: i64) -> StoreFuture<Pruned> {
        command!(self, write, |tx| audit_log::prune(tx, before_ms).await)
    }

    fn load_config(&self) -> StoreFuture<BTreeMap<String, StoredConfig>> {
        command!(self, read, |tx| config::load_config(tx).await)
    }

    fn config_history(&self, key: String, limit: u32) -> StoreFuture<Vec<StoredConfig>> {
        command!(self, read, |tx| config::config_history(tx, &key, limit)
            .await)
    }

    fn seed_config(&self, docs: BTreeMap<String, Value>, now_ms: i64) -> StoreFuture<u32> {
        command!(self, write, |tx| config::seed_config(tx, &docs, now_ms)
            .await)
    }

    fn put_config(
        &self,
        key: String,
        doc: Value,
        expected_version: Option<i64>,
        by: Who,
        now_ms: i64,
    ) -> StoreFuture<StoredConfig> {
        command!(self, write, |tx| {
            config::put_config(tx, &key, &doc, expected_version, &by, now_ms).await
        })
    }

    fn audit(&self) -> StoreFuture<AuditReport> {
        command!(self, snapshot, |tx| audit::audit_snapshot(tx).await)
    }

    fn flush(&self) -> StoreFuture<()> {
        // Every command is committed (majority-acknowledged) before its caller hears "done".
        Box::pin(async { Ok(()) })
    }

    fn event_log(&self) -> Option<Arc<dyn EventLog>> {
        Some(self.events.clone())
    }

    fn changes(&self) -> StoreFuture<Option<tokio::sync::mpsc::Receiver<Change>>> {
        let inner = self.inner.clone();
        Box::pin(async move { watch::start(inner).await.map(Some) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tasks that ended before the purge existed (no `purge_after`) are scheduled when the store
    /// opens, once, and are purged like the others.
    #[tokio::test]
    async fn tasks_that_ended_before_the_purge_are_scheduled_at_open() {
        let Some(uri) = crate::store::conformance::test_mongodb_uri() else {
            return;
        };
        let store = MongoStore::open(&uri, Box::new(NoObserver)).await.unwrap();
        let db = &store.inner.db;
        let old = |id: &str, seq: i64, status: &str, ended: i64| {
            let mut t = TaskDoc::pending(
                id,
                seq,
                "b1",
                "chat",
                r#"{"q": 1}"#,
                Constraints {
                    timeout_seconds: 60,
                    min_output_length: 0,
                },
                5,
                FUNDED_BY_BUYER,
                1,
            );
            t.status = status.into();
            t.output = Some(r#"{"a": 1}"#.into());
            t.completed_at = Some(ended);
            t
        };
        db.tasks
            .insert_many([
                old("old", 900_001, "completed", 10),
                old("gone", 900_002, "failed", 20),
            ])
            .await
            .unwrap();
        db.lots
            .insert_one(LotDoc {
                id: 900_001,
                worker_id: "w1".into(),
                task_id: "old".into(),
                amount_cents: 0,
                commission_cents: 0,
                created_at: 10,
                release_at: 5_000,
                status: "released".into(),
                deducted_cents: 0,
            })
            .await
            .unwrap();
        // Opened again with the marker gone, as a database from before the purge would be.
        db.meta
            .delete_one(doc! { "_id": "task_purges_scheduled" })
            .await
            .unwrap();
        drop(store);
        let store = MongoStore::open(&uri, Box::new(NoObserver)).await.unwrap();
        assert_eq!(store.purge_task_data(4_999, 0, 10).await.unwrap().purged, 1);
        assert_eq!(store.task("gone".into()).await.unwrap().unwrap().input, "");
        let kept = store.task("old".into()).await.unwrap().unwrap();
        assert_eq!(kept.output.as_deref(), Some(r#"{"a": 1}"#));
        assert_eq!(store.purge_task_data(5_000, 0, 10).await.unwrap().purged, 1);
        let old = store.task("old".into()).await.unwrap().unwrap();
        assert_eq!(
            (old.input.as_str(), old.output, old.purged_at_ms),
            ("", None, Some(5_000))
        );
    }
}
