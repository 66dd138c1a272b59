//! The schema, its version, and the migrations that bring an older data directory up to it.

use super::*;

pub(super) const SCHEMA_VERSION: i64 = 5;

pub(super) const SCHEMA: &str = r#"
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
  qa_role TEXT,
  -- rules::retention: when an ended task's content may go (NULL while live and once purged), and
  -- when it went (input is '' and output NULL since).
  purge_after INTEGER,
  purged_at INTEGER,
  -- A sensitive task's preview (sealed.rs): its input and output are sealed. NULL for others.
  input_preview TEXT
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
CREATE INDEX IF NOT EXISTS idempotency_by_age ON idempotency (created_at);
-- Deposits through Stripe Checkout; credited only by a verified webhook.
CREATE TABLE IF NOT EXISTS deposits (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  buyer_id TEXT NOT NULL,
  amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
  bonus_cents INTEGER NOT NULL DEFAULT 0,
  -- pending, completed, expired, mismatch
  status TEXT NOT NULL,
  session_id TEXT NOT NULL UNIQUE,
  checkout_url TEXT NOT NULL,
  paid_cents INTEGER,
  created_at INTEGER NOT NULL,
  settled_at INTEGER
);
CREATE INDEX IF NOT EXISTS deposits_by_buyer ON deposits (buyer_id, seq);
CREATE INDEX IF NOT EXISTS deposits_by_status ON deposits (status, seq);
-- Every provider event acted on, by its id: each is acted on once.
CREATE TABLE IF NOT EXISTS provider_events (
  id TEXT PRIMARY KEY,
  type TEXT NOT NULL,
  session_id TEXT,
  outcome TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
-- Money out: a worker's last email code (its hash), its verified email and payout address, the
-- mail kept for an admin when no SMTP server is configured, and withdrawals.
CREATE TABLE IF NOT EXISTS email_codes (
  worker_id TEXT PRIMARY KEY,
  email TEXT NOT NULL,
  code_hash TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  wrong INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS payouts (
  worker_id TEXT PRIMARY KEY,
  email TEXT NOT NULL,
  email_verified_at INTEGER NOT NULL,
  method TEXT,
  address TEXT,
  bound_at INTEGER
);
CREATE TABLE IF NOT EXISTS outbox (
  seq INTEGER PRIMARY KEY,
  to_addr TEXT NOT NULL,
  subject TEXT NOT NULL,
  body TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS withdrawals (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  worker_id TEXT NOT NULL,
  amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
  -- pending, completed, rejected
  status TEXT NOT NULL,
  method TEXT NOT NULL,
  address TEXT NOT NULL,
  available_after_cents INTEGER NOT NULL,
  external_ref TEXT,
  reason TEXT,
  created_at INTEGER NOT NULL,
  settled_at INTEGER,
  settled_by TEXT
);
CREATE INDEX IF NOT EXISTS withdrawals_by_worker ON withdrawals (worker_id, created_at);
CREATE INDEX IF NOT EXISTS withdrawals_by_status ON withdrawals (status, seq);
-- Referrals: each user's code (made on first ask), and who referred whom on what terms.
CREATE TABLE IF NOT EXISTS referral_codes (
  code TEXT PRIMARY KEY,
  user_id TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS referrals (
  user_id TEXT PRIMARY KEY,
  referrer_id TEXT NOT NULL,
  role TEXT NOT NULL,
  share_bp INTEGER NOT NULL,
  tasks_paid INTEGER NOT NULL DEFAULT 0,
  earned_cents INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS referrals_by_referrer ON referrals (referrer_id);
-- The audit log: the id is the entry's number in the hash chain (rules/audit.rs), the head and
-- the anchor of pruned entries are in the one row of audit_chain.
CREATE TABLE IF NOT EXISTS audit_log (
  id INTEGER PRIMARY KEY,
  actor_id TEXT NOT NULL,
  action TEXT NOT NULL,
  details TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  ip TEXT NOT NULL DEFAULT '',
  user_agent TEXT NOT NULL DEFAULT '',
  prev_hash TEXT,
  hash TEXT
);
CREATE INDEX IF NOT EXISTS audit_log_by_time ON audit_log (created_at);
CREATE TABLE IF NOT EXISTS audit_chain (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  head_seq INTEGER NOT NULL,
  head_hash TEXT NOT NULL,
  anchor_seq INTEGER NOT NULL,
  anchor_hash TEXT NOT NULL
);
-- What a task's timeline cannot read from its other rows: expiries, releases, undone claims and
-- sweep failures (written off the hot path only; see store/timeline.rs).
CREATE TABLE IF NOT EXISTS task_events (
  id INTEGER PRIMARY KEY,
  task_id TEXT NOT NULL,
  at INTEGER NOT NULL,
  event TEXT NOT NULL,
  actor TEXT NOT NULL,
  details TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS task_events_by_task ON task_events (task_id, id);
-- Every version of every config document since this table exists (for the console's history
-- and rollback).
-- Bounties: the reward is in platform:bounty_escrow (postings name the bounty) while open.
CREATE TABLE IF NOT EXISTS bounties (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  buyer_id TEXT NOT NULL,
  title TEXT NOT NULL,
  description TEXT NOT NULL,
  criteria TEXT,
  reward_cents INTEGER NOT NULL CHECK (reward_cents > 0),
  deadline INTEGER NOT NULL,
  max_submissions INTEGER NOT NULL,
  review TEXT NOT NULL,
  -- The terms in force when it was posted (rules::bounty::Terms as JSON).
  terms TEXT NOT NULL,
  status TEXT NOT NULL,
  submissions INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  settled_at INTEGER
);
CREATE INDEX IF NOT EXISTS bounties_by_status ON bounties (status, seq);
CREATE INDEX IF NOT EXISTS bounties_by_buyer ON bounties (buyer_id, seq);
-- Submissions to bounties, first come, first served: one per worker per bounty.
CREATE TABLE IF NOT EXISTS bounty_submissions (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  bounty_id TEXT NOT NULL,
  worker_id TEXT NOT NULL,
  position INTEGER NOT NULL,
  content TEXT NOT NULL,
  -- rules::bounty::SubmissionStatus
  status TEXT NOT NULL,
  reason TEXT,
  submitted_at INTEGER NOT NULL,
  reviewed_at INTEGER,
  auto_approved INTEGER NOT NULL DEFAULT 0,
  -- The Supervisor's due times: the buyer's warning and the automatic approval (while pending),
  -- the end of the dispute window (while rejected). Cleared once done with.
  warning_due INTEGER,
  review_due INTEGER,
  dispute_due INTEGER,
  paid_cents INTEGER NOT NULL DEFAULT 0,
  UNIQUE (bounty_id, worker_id),
  UNIQUE (bounty_id, position)
);
CREATE INDEX IF NOT EXISTS submissions_review_due ON bounty_submissions (review_due) WHERE review_due IS NOT NULL;
CREATE INDEX IF NOT EXISTS submissions_warning_due ON bounty_submissions (warning_due) WHERE warning_due IS NOT NULL;
CREATE INDEX IF NOT EXISTS submissions_by_worker ON bounty_submissions (worker_id);
-- Consensus review: each validator asked to vote on a submission (asked_at; NULL when it voted
-- unasked) and its vote (approve NULL until cast). Once the vote is decided, with_majority says
-- whether it sided with the decision: the record rules::bounty::validator_suspicious reads.
CREATE TABLE IF NOT EXISTS bounty_votes (
  submission_id TEXT NOT NULL,
  validator_id TEXT NOT NULL,
  bounty_id TEXT NOT NULL,
  asked_at INTEGER,
  approve INTEGER,
  voted_at INTEGER,
  with_majority INTEGER,
  PRIMARY KEY (submission_id, validator_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS votes_asked ON bounty_votes (validator_id, asked_at) WHERE approve IS NULL;
CREATE INDEX IF NOT EXISTS votes_decided ON bounty_votes (validator_id) WHERE with_majority IS NOT NULL;
-- When more validators are asked to vote on a consensus submission still undecided.
CREATE TABLE IF NOT EXISTS vote_rounds (
  submission_id TEXT PRIMARY KEY,
  due INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS vote_rounds_due ON vote_rounds (due);
-- Validators are chosen by tier; not by last_seen too, which every claim changes.
CREATE INDEX IF NOT EXISTS workers_by_tier ON workers (tier);
-- Disputes over rejected submissions, one per submission.
CREATE TABLE IF NOT EXISTS disputes (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  bounty_id TEXT NOT NULL,
  submission_id TEXT NOT NULL UNIQUE,
  worker_id TEXT NOT NULL,
  buyer_id TEXT NOT NULL,
  reason TEXT NOT NULL,
  rejection_reason TEXT NOT NULL,
  -- rules::bounty::DisputeStatus
  status TEXT NOT NULL,
  opened_at INTEGER NOT NULL,
  outcome TEXT,
  worker_pct INTEGER,
  worker_cents INTEGER NOT NULL DEFAULT 0,
  refund_cents INTEGER NOT NULL DEFAULT 0,
  resolved_at INTEGER,
  resolved_by TEXT
);
CREATE INDEX IF NOT EXISTS disputes_by_status ON disputes (status, seq);
CREATE INDEX IF NOT EXISTS disputes_by_bounty ON disputes (bounty_id, status);
-- Notifications, per user, written with what they tell of.
CREATE TABLE IF NOT EXISTS notifications (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  user_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  data TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  read_at INTEGER
);
CREATE INDEX IF NOT EXISTS notifications_by_user ON notifications (user_id, seq);
CREATE INDEX IF NOT EXISTS notifications_unread ON notifications (user_id, seq) WHERE read_at IS NULL;
-- Buyer webhooks, and one delivery per event and endpoint, written with the event.
CREATE TABLE IF NOT EXISTS webhooks (
  id TEXT PRIMARY KEY,
  buyer_id TEXT NOT NULL,
  url TEXT NOT NULL,
  events TEXT NOT NULL,
  secret TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS webhooks_by_buyer ON webhooks (buyer_id);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  webhook_id TEXT NOT NULL,
  buyer_id TEXT NOT NULL,
  event_id TEXT NOT NULL,
  event_type TEXT NOT NULL,
  body TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_at INTEGER,
  lease TEXT,
  last_attempt_at INTEGER,
  last_status INTEGER,
  last_error TEXT,
  created_at INTEGER NOT NULL,
  delivered_at INTEGER
);
CREATE INDEX IF NOT EXISTS deliveries_by_webhook ON webhook_deliveries (webhook_id, seq);
CREATE INDEX IF NOT EXISTS deliveries_due ON webhook_deliveries (next_at) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS config_history (
  key TEXT NOT NULL,
  version INTEGER NOT NULL,
  doc TEXT NOT NULL,
  updated_at INTEGER NOT NULL,
  updated_by TEXT,
  PRIMARY KEY (key, version)
);
"#;

/// Version 1 data directories get the QA columns.
pub(super) const MIGRATE_1_TO_2: &str = r#"
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
pub(super) const MIGRATE_2_TO_3: &str = "ALTER TABLE tokens ADD COLUMN label TEXT;";

/// Version 3 data directories get the audit log's chain columns (ip, user agent, hashes). A
/// column is added only where it is missing: the table's shape in a directory depends on the
/// version that first made it.
fn migrate_3_to_4(conn: &Connection) -> Result<(), EngineError> {
    add_missing_columns(
        conn,
        "audit_log",
        &[
            ("ip", "TEXT NOT NULL DEFAULT ''"),
            ("user_agent", "TEXT NOT NULL DEFAULT ''"),
            ("prev_hash", "TEXT"),
            ("hash", "TEXT"),
        ],
    )
}

/// Version 4 data directories get the purge times of task content (tasks that ended before are
/// due at the end of their refund window, like those that end from now on) and the preview of
/// sensitive tasks.
fn migrate_4_to_5(conn: &Connection) -> Result<(), EngineError> {
    add_missing_columns(
        conn,
        "tasks",
        &[
            ("purge_after", "INTEGER"),
            ("purged_at", "INTEGER"),
            ("input_preview", "TEXT"),
        ],
    )?;
    conn.execute_batch(
        "UPDATE tasks SET purge_after = max(completed_at,
                 coalesce((SELECT release_at FROM lots WHERE lots.task_id = tasks.id), completed_at))
         WHERE completed_at IS NOT NULL AND purged_at IS NULL",
    )
    .map_err(db_err)
}

/// Adds the columns `table` lacks.
fn add_missing_columns(
    conn: &Connection,
    table: &str,
    columns: &[(&str, &str)],
) -> Result<(), EngineError> {
    let have: Vec<String> = conn
        .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(db_err)?;
    for (column, decl) in columns {
        if !have.iter().any(|c| c == column) {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))
                .map_err(db_err)?;
        }
    }
    Ok(())
}

/// Indexes on columns that later versions added (created after the migration).
pub(super) const LATER_INDEXES: &str = r#"
CREATE INDEX IF NOT EXISTS tasks_by_qa_key ON tasks (qa_key) WHERE qa_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_by_qa_group ON tasks (qa_group) WHERE qa_group IS NOT NULL;
-- Ended tasks whose content is still there, for the purge (rules::retention).
CREATE INDEX IF NOT EXISTS tasks_purge_due ON tasks (purge_after) WHERE purge_after IS NOT NULL;
"#;

/// One step of [`migrate`]: from one version to the next.
type Step = dyn Fn(&Connection) -> Result<(), EngineError>;

/// Brings the data directory to this binary's schema, in one transaction: a step that fails
/// leaves the directory as it was.
pub(super) fn migrate(conn: &Connection) -> Result<(), EngineError> {
    conn.execute_batch("BEGIN IMMEDIATE").map_err(db_err)?;
    match migrate_in_tx(conn) {
        Ok(()) => conn.execute_batch("COMMIT").map_err(db_err),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn migrate_in_tx(conn: &Connection) -> Result<(), EngineError> {
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
            let steps: [(i64, &Step, &str); 4] = [
                (
                    1,
                    &|c| c.execute_batch(MIGRATE_1_TO_2).map_err(db_err),
                    "QA columns",
                ),
                (
                    2,
                    &|c| c.execute_batch(MIGRATE_2_TO_3).map_err(db_err),
                    "token labels",
                ),
                (3, &migrate_3_to_4, "the audit log's chain"),
                (4, &migrate_4_to_5, "purged task content"),
            ];
            for (from, step, what) in steps.into_iter().filter(|(from, ..)| *from >= found) {
                step(conn)?;
                tracing::info!("store: migrated schema {from} -> {} ({what})", from + 1);
            }
            conn.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
                params![SCHEMA_VERSION.to_string()],
            )
            .map_err(db_err)?;
        }
    }
    conn.execute_batch(LATER_INDEXES).map_err(db_err)?;
    conn.execute(
        "INSERT OR IGNORE INTO audit_chain (id, head_seq, head_hash, anchor_seq, anchor_hash)
         VALUES (1, 0, ?1, 0, ?1)",
        params![crate::rules::audit::GENESIS],
    )
    .map_err(db_err)?;
    let chained = super::audit_log::chain_unchained(conn)?;
    if chained > 0 {
        tracing::info!(
            entries = chained,
            "store: chained the audit log's earlier entries"
        );
    }
    for account in ledger::PLATFORM_ACCOUNTS {
        conn.execute(
            "INSERT OR IGNORE INTO accounts (id) VALUES (?1)",
            params![account],
        )
        .map_err(db_err)?;
    }
    Ok(())
}
