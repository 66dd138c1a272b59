//! The writer thread: commands run as savepoints inside one transaction per batch (group
//! commit); after each commit the observer hears which balances changed and which notifications
//! were stored.

use super::*;

pub(super) fn writer_loop(
    conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    observer: Box<dyn BalanceObserver>,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut dones: Vec<Done> = Vec::with_capacity(MAX_BATCH);
    let mut touched: Vec<String> = Vec::new();
    let mut notified: Vec<NotificationRecord> = Vec::new();
    let mut events: Vec<BountyEvent> = Vec::new();
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
                notified: Vec::new(),
                events: Vec::new(),
            };
            let outcome = catch_unwind(AssertUnwindSafe(|| job(&mut tx)));
            match outcome {
                Ok((true, done)) => {
                    savepoint(&conn, "RELEASE cmd");
                    touched.append(&mut tx.touched);
                    notified.append(&mut tx.notified);
                    events.append(&mut tx.events);
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
            notified.clear();
            events.clear();
        }
        if !notified.is_empty() {
            observer.notified(&notified);
            notified.clear();
        }
        if !events.is_empty() {
            observer.bounty_events(&events);
            events.clear();
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
pub(super) fn savepoint(conn: &Connection, sql: &str) {
    if let Err(e) = conn.prepare_cached(sql).and_then(|mut s| s.execute([])) {
        tracing::error!(error = %e, sql, "store: savepoint statement failed");
    }
}
