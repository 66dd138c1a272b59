//! Users, tokens, workers and their records, balances, the audit log and idempotency.

use super::*;

/// The id an operator names an admin token by: the first characters of its hash.
const TOKEN_ID_CHARS: usize = 12;

fn idem_id(k: &IdemKey) -> String {
    format!("{}\n{}", k.scope, k.key)
}

fn token_id(hash: &str) -> String {
    hash[..TOKEN_ID_CHARS.min(hash.len())].to_string()
}

async fn insert_user(
    tx: &mut Tx<'_>,
    id: &str,
    role: Role,
    email: Option<&str>,
    password_hash: Option<&str>,
    now_ms: i64,
) -> R<()> {
    let db = tx.db;
    let user = UserDoc {
        id: id.to_string(),
        role: role.as_str().to_string(),
        email: email.map(str::to_string),
        password_hash: password_hash.map(str::to_string),
        created_at: now_ms,
    };
    match tx.insert(&db.users, &user).await {
        Err(Fail::Db(e)) if is_duplicate(&e) => {
            return Err(Fail::Engine(EngineError::Conflict(
                "an account with this email already exists".into(),
            )));
        }
        other => other?,
    }
    tx.insert(&db.balances, &BalanceDoc::new(id)).await
}

pub(super) async fn insert_token(
    tx: &mut Tx<'_>,
    hash: &str,
    user_id: &str,
    role: Role,
    label: Option<&str>,
    now_ms: i64,
) -> R<()> {
    let db = tx.db;
    let token = TokenDoc {
        hash: hash.to_string(),
        user_id: user_id.to_string(),
        role: role.as_str().to_string(),
        created_at: now_ms,
        label: label.map(str::to_string),
    };
    tx.insert(&db.tokens, &token).await
}

pub(super) async fn create_buyer(tx: &mut Tx<'_>, b: &NewBuyer) -> R<BalanceSnapshot> {
    insert_user(
        tx,
        &b.user_id,
        Role::Buyer,
        Some(&b.email),
        Some(&b.password_hash),
        b.now_ms,
    )
    .await?;
    insert_token(tx, &b.token_hash, &b.user_id, Role::Buyer, None, b.now_ms).await?;
    if let Some(entry) = rules::money::signup_credit(&b.user_id, b.signup_credit_cents) {
        tx.apply(&entry, b.now_ms).await?;
    }
    if let Some(r) = &b.referral {
        super::referrals::attach(tx, &b.user_id, Role::Buyer, r, b.now_ms).await?;
    }
    let db = tx.db;
    let balance = tx.one(&db.balances, doc! { "_id": &b.user_id }).await?;
    balance
        .map(BalanceDoc::snapshot)
        .ok_or_else(|| Fail::Engine(EngineError::internal("new buyer has no balance")))
}

pub(super) async fn find_login(tx: &mut Tx<'_>, email: &str) -> R<Option<(String, String)>> {
    let db = tx.db;
    let found = tx.one(&db.users, doc! { "email": email }).await?;
    Ok(found.and_then(|u| u.password_hash.map(|h| (u.id, h))))
}

pub(super) async fn resolve_token(tx: &mut Tx<'_>, hash: &str) -> R<Option<Principal>> {
    let db = tx.db;
    let found = tx.one(&db.tokens, doc! { "_id": hash }).await?;
    Ok(found.and_then(|t| {
        Role::parse(&t.role).map(|role| Principal {
            id: t.user_id,
            role,
        })
    }))
}

pub(super) async fn add_admin_token(
    tx: &mut Tx<'_>,
    hash: &str,
    label: &str,
    now_ms: i64,
) -> R<AdminToken> {
    let db = tx.db;
    if label == ENV_TOKEN_LABEL {
        // The environment's token replaces the one it set before (and only that one).
        tx.delete(
            &db.tokens,
            doc! { "role": "admin", "label": label, "_id": { "$ne": hash } },
        )
        .await?;
    }
    if tx.exists(&db.tokens, doc! { "_id": hash }).await? {
        tx.update(
            &db.tokens,
            doc! { "_id": hash, "role": "admin" },
            doc! { "$set": { "label": label } },
        )
        .await?;
    } else {
        insert_token(tx, hash, "admin", Role::Admin, Some(label), now_ms).await?;
    }
    Ok(AdminToken {
        id: token_id(hash),
        label: Some(label.to_string()),
        created_at_ms: now_ms,
    })
}

pub(super) async fn admin_tokens(tx: &mut Tx<'_>) -> R<Vec<AdminToken>> {
    let db = tx.db;
    let found = tx
        .many(
            &db.tokens,
            doc! { "role": "admin" },
            doc! { "created_at": 1, "_id": 1 },
            None,
        )
        .await?;
    Ok(found
        .into_iter()
        .map(|t| AdminToken {
            id: token_id(&t.hash),
            label: t.label,
            created_at_ms: t.created_at,
        })
        .collect())
}

pub(super) async fn revoke_admin_token(tx: &mut Tx<'_>, id: &str) -> R<AdminToken> {
    if id.len() < 6 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Fail::Engine(EngineError::validation_field(
            "id",
            "a token id is 6 or more hex characters, as `admin tokens list` shows",
        )));
    }
    let db = tx.db;
    // Hex characters only (checked above), so the prefix is a plain regular expression.
    let prefix = format!("^{}", id.to_ascii_lowercase());
    let found = tx
        .many(
            &db.tokens,
            doc! { "role": "admin", "_id": { "$regex": prefix } },
            doc! { "_id": 1 },
            Some(3),
        )
        .await?;
    let token = match found.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(Fail::Engine(EngineError::NotFound(format!(
                "no admin token {id}"
            ))));
        }
        more => {
            return Err(Fail::Engine(EngineError::Conflict(format!(
                "{id} names {} admin tokens: give more of the id",
                if more.len() > 2 {
                    "several".to_string()
                } else {
                    more.len().to_string()
                }
            ))));
        }
    };
    tx.delete(&db.tokens, doc! { "_id": &token.hash }).await?;
    Ok(AdminToken {
        id: token_id(&token.hash),
        label: token.label,
        created_at_ms: token.created_at,
    })
}

pub(super) async fn create_worker(tx: &mut Tx<'_>, w: &NewWorker) -> R<WorkerRecord> {
    insert_user(tx, &w.worker_id, Role::Worker, None, None, w.now_ms).await?;
    insert_token(
        tx,
        &w.token_hash,
        &w.worker_id,
        Role::Worker,
        None,
        w.now_ms,
    )
    .await?;
    let doc = WorkerDoc {
        id: w.worker_id.clone(),
        worker_type: w.worker_type.clone(),
        model_info: w.model_info.to_string(),
        profile: serde_json::to_string(&w.profile).map_err(json_err)?,
        tier: w.tier.clone(),
        tasks_claimed: 0,
        tasks_completed: 0,
        tasks_expired: 0,
        consecutive_expires: 0,
        credit_requests: 0,
        total_earned_cents: 0,
        suspended_until: None,
        qa_pass: 0,
        qa_flag: 0,
        qa_fail: 0,
        tier_penalty: 0,
        banned_at: None,
        balance_frozen: false,
        claims_day: 0,
        claims_today: 0,
        created_at: w.now_ms,
        last_seen: Some(w.now_ms),
    };
    let db = tx.db;
    tx.insert(&db.workers, &doc).await?;
    if let Some(r) = &w.referral {
        super::referrals::attach(tx, &w.worker_id, Role::Worker, r, w.now_ms).await?;
    }
    Ok(doc.record(0)?)
}

pub(super) async fn held(tx: &mut Tx<'_>, worker_id: &str) -> R<u32> {
    let db = tx.db;
    let n = tx
        .count(
            &db.tasks,
            doc! { "worker_id": worker_id, "status": "assigned" },
        )
        .await?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

pub(super) async fn read_worker(tx: &mut Tx<'_>, worker_id: &str) -> R<Option<WorkerRecord>> {
    let db = tx.db;
    let Some(w) = tx.one(&db.workers, doc! { "_id": worker_id }).await? else {
        return Ok(None);
    };
    let held = held(tx, worker_id).await?;
    Ok(Some(w.record(held)?))
}

pub(super) async fn update_worker_profile(
    tx: &mut Tx<'_>,
    worker_id: &str,
    profile: &WorkerProfile,
) -> R<WorkerRecord> {
    let db = tx.db;
    let text = serde_json::to_string(profile).map_err(json_err)?;
    let found = tx
        .take(
            &db.workers,
            doc! { "_id": worker_id },
            doc! { "$set": { "profile": text } },
        )
        .await?;
    let Some(w) = found else {
        return Err(Fail::Engine(EngineError::NotFound("no such worker".into())));
    };
    let held = held(tx, worker_id).await?;
    Ok(w.record(held)?)
}

pub(super) async fn worker_earned_since(tx: &mut Tx<'_>, worker_id: &str, since_ms: i64) -> R<i64> {
    let db = tx.db;
    let rows = tx
        .aggregate(
            &db.lots,
            vec![
                doc! { "$match": {
                    "worker_id": worker_id, "created_at": { "$gte": since_ms },
                    "status": { "$ne": "reversed" },
                } },
                doc! { "$group": { "_id": Bson::Null, "sum": { "$sum": "$amount_cents" } } },
            ],
        )
        .await?;
    Ok(rows.first().map_or(0, |d| int(d, "sum")))
}

pub(super) async fn earnings(
    tx: &mut Tx<'_>,
    worker_id: &str,
    before_seq: Option<i64>,
    limit: u32,
) -> R<Earnings> {
    let db = tx.db;
    let lots = tx
        .many(
            &db.lots,
            doc! { "worker_id": worker_id, "_id": { "$lt": before_seq.unwrap_or(i64::MAX) } },
            doc! { "_id": -1 },
            Some(i64::from(limit)),
        )
        .await?;
    let ids: Vec<&str> = lots.iter().map(|l| l.task_id.as_str()).collect();
    let types: BTreeMap<String, String> = tx
        .aggregate(
            &db.tasks,
            vec![
                doc! { "$match": { "_id": { "$in": ids } } },
                doc! { "$project": { "type": 1 } },
            ],
        )
        .await?
        .into_iter()
        .filter_map(|d| {
            Some((
                d.get_str("_id").ok()?.to_string(),
                d.get_str("type").ok()?.to_string(),
            ))
        })
        .collect();
    let next = tx
        .aggregate(
            &db.lots,
            vec![
                doc! { "$match": { "worker_id": worker_id, "status": "frozen" } },
                doc! { "$group": {
                    "_id": "$release_at",
                    "cents": { "$sum": { "$subtract": ["$amount_cents", "$deducted_cents"] } },
                } },
                doc! { "$sort": { "_id": 1 } },
                doc! { "$limit": 1 },
            ],
        )
        .await?;
    Ok(Earnings {
        lots: lots
            .into_iter()
            .map(|l| Earning {
                seq: l.id,
                // A lot with no task is a bounty's (its task_id is the submission's id).
                task_type: types
                    .get(&l.task_id)
                    .cloned()
                    .unwrap_or_else(|| "bounty".into()),
                task_id: l.task_id,
                earned_cents: l.amount_cents,
                commission_cents: l.commission_cents,
                deducted_cents: l.deducted_cents,
                created_ms: l.created_at,
                release_ms: l.release_at,
                status: l.status,
            })
            .collect(),
        next_release: next.first().map(|d| (int(d, "_id"), int(d, "cents"))),
    })
}

/// An integer field whatever width the server stored it with (sums come back narrow).
pub(super) fn int(d: &Document, key: &str) -> i64 {
    match d.get(key) {
        Some(Bson::Int64(n)) => *n,
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Double(f)) => *f as i64,
        _ => 0,
    }
}

pub(super) struct AdminCreditAsk<'a> {
    pub user_id: &'a str,
    pub amount_cents: i64,
    pub reason: &'a str,
    pub by: &'a Who,
    pub now_ms: i64,
}

pub(super) async fn admin_credit(
    tx: &mut Tx<'_>,
    a: AdminCreditAsk<'_>,
    idem: Option<&IdemKey>,
) -> R<AdminCredited> {
    if let Some(first) = tx.replay(idem).await? {
        return Ok(first);
    }
    if tx.available(a.user_id).await?.is_none() {
        return Err(Fail::Engine(EngineError::NotFound(format!(
            "no user {}",
            a.user_id
        ))));
    }
    tx.apply(
        &rules::money::admin_credit(a.user_id, a.amount_cents),
        a.now_ms,
    )
    .await?;
    tx.audit(
        a.by,
        "admin.credit",
        &serde_json::json!({
            "user_id": a.user_id, "amount_cents": a.amount_cents, "reason": a.reason,
        }),
        a.now_ms,
    )
    .await?;
    let balance_after_cents = tx.available(a.user_id).await?.unwrap_or(0);
    let answer = AdminCredited {
        user_id: a.user_id.to_string(),
        amount_cents: a.amount_cents,
        balance_after_cents,
    };
    tx.remember(idem, &answer, a.now_ms).await?;
    Ok(answer)
}

impl Tx<'_> {
    /// The answer stored under an idempotency key, for a repeat with the same body; a repeat with
    /// another body is refused. None: the key is new (or there is none), run the command and
    /// [`Tx::remember`] its answer.
    pub async fn replay<T: DeserializeOwned>(&mut self, idem: Option<&IdemKey>) -> R<Option<T>> {
        let Some(k) = idem else { return Ok(None) };
        let db = self.db;
        let Some(found) = self
            .one(&db.idempotency, doc! { "_id": idem_id(k) })
            .await?
        else {
            return Ok(None);
        };
        if found.body_hash != k.body_hash {
            return Err(Fail::Engine(EngineError::Conflict(
                "this Idempotency-Key was already used with a different request body".into(),
            )));
        }
        Ok(Some(
            serde_json::from_str(&found.response).map_err(json_err)?,
        ))
    }

    /// Stores a command's answer under its idempotency key. Two first uses at once: the key's
    /// unique `_id` lets one commit, and the other runs again and replays it.
    pub async fn remember<T: Serialize>(
        &mut self,
        idem: Option<&IdemKey>,
        answer: &T,
        now_ms: i64,
    ) -> R<()> {
        let Some(k) = idem else { return Ok(()) };
        let db = self.db;
        let record = IdemDoc {
            id: idem_id(k),
            body_hash: k.body_hash.clone(),
            response: serde_json::to_string(answer).map_err(json_err)?,
            created_at: now_ms,
        };
        match self.insert(&db.idempotency, &record).await {
            Err(Fail::Db(e)) if is_duplicate(&e) => Err(Fail::Retry),
            other => other,
        }
    }

    /// A worker's stats, tier, and how many levels QA downgrades hold it down.
    pub async fn worker_stats(&mut self, worker_id: &str) -> R<Option<(WorkerStats, String, u32)>> {
        let db = self.db;
        let found = self.one(&db.workers, doc! { "_id": worker_id }).await?;
        Ok(found.map(|w| {
            let penalty = u32::try_from(w.tier_penalty).unwrap_or(0);
            (w.stats(), w.tier, penalty)
        }))
    }

    pub async fn set_tier(&mut self, worker_id: &str, tier: &str) -> R<()> {
        let db = self.db;
        self.update(
            &db.workers,
            doc! { "_id": worker_id, "tier": { "$ne": tier } },
            doc! { "$set": { "tier": tier } },
        )
        .await?;
        Ok(())
    }

    /// Re-places a worker's tier after its stats or its QA downgrades changed.
    pub async fn replace_tier(&mut self, worker_id: &str, cfg: &PlatformConfig) -> R<()> {
        if let Some((stats, tier, penalty)) = self.worker_stats(worker_id).await? {
            let placed = economics::placement_penalised(cfg, &stats.tier_stats(), penalty);
            if placed != tier {
                self.set_tier(worker_id, placed).await?;
            }
        }
        Ok(())
    }
}
