//! Users, tokens, workers and their records, balances, the audit log and idempotency.

use super::*;

pub(super) fn insert_user(
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

pub(super) fn insert_token(
    c: &Connection,
    hash: &str,
    user_id: &str,
    role: Role,
    now_ms: i64,
) -> Result<(), EngineError> {
    insert_labelled_token(c, hash, user_id, role, None, now_ms)
}

pub(super) fn insert_labelled_token(
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
pub(super) const TOKEN_ID_CHARS: usize = 12;

pub(super) fn create_buyer(tx: &mut Tx<'_>, b: NewBuyer) -> Result<BalanceSnapshot, EngineError> {
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
    if let Some(r) = &b.referral {
        super::referrals::attach(tx, &b.user_id, Role::Buyer, r, b.now_ms)?;
    }
    read_balance(tx.conn, &b.user_id)?
        .ok_or_else(|| EngineError::internal("new buyer has no balance row"))
}

pub(super) fn find_login(
    c: &Connection,
    email: String,
) -> Result<Option<(String, String)>, EngineError> {
    c.prepare_cached(
        "SELECT id, password_hash FROM users WHERE email = ?1 AND password_hash IS NOT NULL",
    )
    .and_then(|mut s| {
        s.query_row(params![email], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
    })
    .map_err(db_err)
}

pub(super) fn resolve_token(
    c: &Connection,
    token_hash: String,
) -> Result<Option<Principal>, EngineError> {
    let found: Option<(String, String)> = c
        .prepare_cached("SELECT user_id, role FROM tokens WHERE hash = ?1")
        .and_then(|mut s| {
            s.query_row(params![token_hash], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(db_err)?;
    Ok(found.and_then(|(id, role)| Role::parse(&role).map(|role| Principal { id, role })))
}

pub(super) fn add_admin_token(
    tx: &mut Tx<'_>,
    token_hash: String,
    label: String,
    now_ms: i64,
) -> Result<AdminToken, EngineError> {
    if label == ENV_TOKEN_LABEL {
        // The environment's token replaces the one it set before (and only that one).
        tx.conn
            .prepare_cached("DELETE FROM tokens WHERE role = 'admin' AND label = ?1 AND hash <> ?2")
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
            .prepare_cached("UPDATE tokens SET label = ?2 WHERE hash = ?1 AND role = 'admin'")
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
}

pub(super) fn admin_tokens(c: &Connection) -> Result<Vec<AdminToken>, EngineError> {
    let mut s = c
        .prepare("SELECT hash, label, created_at FROM tokens WHERE role = 'admin' ORDER BY created_at, hash")
        .map_err(db_err)?;
    let rows = s
        .query_map([], |r| {
            let hash: String = r.get(0)?;
            Ok(AdminToken {
                id: hash[..TOKEN_ID_CHARS.min(hash.len())].to_string(),
                label: r.get(1)?,
                created_at_ms: r.get(2)?,
            })
        })
        .map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}

pub(super) fn revoke_admin_token(tx: &mut Tx<'_>, id: String) -> Result<AdminToken, EngineError> {
    if id.len() < 6 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(EngineError::validation_field(
            "id",
            "a token id is 6 or more hex characters, as `admin tokens list` shows",
        ));
    }
    let found: Vec<(String, Option<String>, i64)> = {
        let mut s = tx
            .conn
            .prepare_cached("SELECT hash, label, created_at FROM tokens WHERE role = 'admin' AND substr(hash, 1, ?2) = ?1")
            .map_err(db_err)?;
        let rows = s
            .query_map(params![id.to_ascii_lowercase(), id.len() as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(db_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?
    };
    let (hash, label, created_at_ms) = match found.as_slice() {
        [one] => one.clone(),
        [] => return Err(EngineError::NotFound(format!("no admin token {id}"))),
        _ => {
            return Err(EngineError::Conflict(format!(
                "{id} names {} admin tokens: give more of the id",
                found.len()
            )));
        }
    };
    tx.conn
        .prepare_cached("DELETE FROM tokens WHERE hash = ?1")
        .and_then(|mut s| s.execute(params![hash]))
        .map_err(db_err)?;
    Ok(AdminToken {
        id: hash[..TOKEN_ID_CHARS].to_string(),
        label,
        created_at_ms,
    })
}

pub(super) fn create_worker(tx: &mut Tx<'_>, w: NewWorker) -> Result<WorkerRecord, EngineError> {
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
    if let Some(r) = &w.referral {
        super::referrals::attach(tx, &w.worker_id, Role::Worker, r, w.now_ms)?;
    }
    read_worker(tx.conn, &w.worker_id)?.ok_or_else(|| EngineError::internal("new worker not found"))
}

pub(super) fn update_worker_profile(
    tx: &mut Tx<'_>,
    worker_id: String,
    profile: WorkerProfile,
) -> Result<WorkerRecord, EngineError> {
    let text = serde_json::to_string(&profile).map_err(json_err)?;
    let n = tx
        .conn
        .prepare_cached("UPDATE workers SET profile = ?2 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![worker_id, text]))
        .map_err(db_err)?;
    if n == 0 {
        return Err(EngineError::NotFound("no such worker".into()));
    }
    read_worker(tx.conn, &worker_id)?.ok_or_else(|| EngineError::NotFound("no such worker".into()))
}

pub(super) fn worker_earned_since(
    c: &Connection,
    worker_id: String,
    since_ms: i64,
) -> Result<i64, EngineError> {
    c.prepare_cached(
        "SELECT coalesce(sum(amount_cents), 0) FROM lots WHERE worker_id = ?1 AND created_at >= ?2 AND status <> 'reversed'",
    )
    .and_then(|mut s| s.query_row(params![worker_id, since_ms], |r| r.get(0)))
    .map_err(db_err)
}

pub(super) fn earnings(
    c: &Connection,
    worker_id: String,
    before_seq: Option<i64>,
    limit: u32,
) -> Result<Earnings, EngineError> {
    let mut s = c
        .prepare_cached(
            "SELECT l.id, l.task_id, coalesce(t.type, 'bounty'), l.amount_cents, l.commission_cents,
                    l.deducted_cents, l.created_at, l.release_at, l.status
             FROM lots l LEFT JOIN tasks t ON t.id = l.task_id
             WHERE l.worker_id = ?1 AND l.id < ?2 ORDER BY l.id DESC LIMIT ?3",
        )
        .map_err(db_err)?;
    let lots = s
        .query_map(
            params![worker_id, before_seq.unwrap_or(i64::MAX), limit],
            |r| {
                Ok(Earning {
                    seq: r.get(0)?,
                    task_id: r.get(1)?,
                    task_type: r.get(2)?,
                    earned_cents: r.get(3)?,
                    commission_cents: r.get(4)?,
                    deducted_cents: r.get(5)?,
                    created_ms: r.get(6)?,
                    release_ms: r.get(7)?,
                    status: r.get(8)?,
                })
            },
        )
        .map_err(db_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db_err)?;
    let next_release = c
        .prepare_cached(
            "SELECT release_at, sum(amount_cents - deducted_cents) FROM lots
             WHERE worker_id = ?1 AND status = 'frozen'
             GROUP BY release_at ORDER BY release_at LIMIT 1",
        )
        .and_then(|mut s| {
            s.query_row(params![worker_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(db_err)?;
    Ok(Earnings { lots, next_release })
}

pub(super) fn admin_credit(
    tx: &mut Tx<'_>,
    user_id: UserId,
    amount_cents: i64,
    reason: String,
    by: Who,
    now_ms: i64,
    idem: Option<IdemKey>,
) -> Result<AdminCredited, EngineError> {
    let user_id = user_id.into_string();
    tx.idempotent(idem.as_ref(), now_ms, |c| c, |tx| {
        if tx.available(&user_id)?.is_none() {
            return Err(EngineError::NotFound(format!("no user {user_id}")));
        }
        tx.apply(&rules::money::admin_credit(&user_id, amount_cents), now_ms)?;
        tx.audit(
            &by,
            "admin.credit",
            &serde_json::json!({ "user_id": user_id, "amount_cents": amount_cents, "reason": reason }),
            now_ms,
        )?;
        let balance_after_cents = tx.available(&user_id)?.unwrap_or(0);
        Ok(AdminCredited { user_id: user_id.clone(), amount_cents, balance_after_cents })
    })
}

impl Tx<'_> {
    /// Runs `f` once per idempotency key: a repeat with the same body gets the stored answer back
    /// (through `replay`), a repeat with another body is refused.
    pub(super) fn idempotent<T: Serialize + DeserializeOwned>(
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
    pub(super) fn worker_stats(
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

    pub(super) fn set_tier(&self, worker_id: &str, tier: &str) -> Result<(), EngineError> {
        self.conn
            .prepare_cached("UPDATE workers SET tier = ?2 WHERE id = ?1 AND tier <> ?2")
            .and_then(|mut s| s.execute(params![worker_id, tier]))
            .map_err(db_err)?;
        Ok(())
    }

    /// Re-places a worker's tier after its stats or its QA downgrades changed.
    pub(super) fn replace_tier(
        &self,
        worker_id: &str,
        cfg: &PlatformConfig,
    ) -> Result<(), EngineError> {
        if let Some((stats, tier, penalty)) = self.worker_stats(worker_id)? {
            let placed = economics::placement_penalised(cfg, &stats.tier_stats(), penalty);
            if placed != tier {
                self.set_tier(worker_id, placed)?;
            }
        }
        Ok(())
    }
}
