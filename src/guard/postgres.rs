//! The shared store: one PostgreSQL table for a fleet of hosts.
//!
//! One row per ID. A fresh ID is claimed by one `INSERT ... ON CONFLICT DO
//! NOTHING RETURNING fence` (one round trip); a row that exists is decided
//! under `SELECT ... FOR UPDATE`, so exactly one claimant wins and an expired
//! lease is taken over in one transaction. Every lease time is the server's
//! `clock_timestamp()`: hosts' clocks disagree, and `now()` would be the
//! transaction's start, stale after a row-lock wait. State lives in rows, never in advisory
//! locks held across the command (they vanish behind transaction pooling).
//!
//! The table is `rtb_guard` in the first schema of the connection's
//! search_path: give a URL `options=-csearch_path%3Dmyschema` to keep
//! several guards (or test runs) apart. The URL's password never appears in a
//! message: errors name the redacted URL.

use std::time::Duration;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Row};

use super::{Claim, Finish, Forgot, Owner, Record, State, Store, TABLE};
use crate::error::Error;

/// The longest rtb waits to reach the server before failing closed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

const COLUMNS: &str = "id, state, fence, host, pid, token, command, exit_status, \
    (extract(epoch from started_at) * 1000)::bigint, \
    (extract(epoch from updated_at) * 1000)::bigint, \
    (extract(epoch from lease_until) * 1000)::bigint, \
    (state = 'running' AND lease_until > clock_timestamp()), \
    coalesce(length(output), 0)::bigint, output_cut";

/// A guard store in a PostgreSQL table.
pub struct PgStore {
    client: Client,
    shown: String,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl PgStore {
    /// Connects (at most `timeout`) and creates the table if it is missing.
    ///
    /// # Errors
    /// A bad URL, an unreachable server, refused credentials: the message
    /// names the URL without its password.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Self, Error> {
        let shown = super::redact_store_url(url);
        let fail =
            |why: String| Error::Failed(format!("cannot open the guard store {shown}: {why}"));
        let mut cfg: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
            Error::invalid("--store", &shown, scrub(&e, url))
        })?;
        cfg.connect_timeout(timeout);
        // A server or network that stops answering must not hang rtb: TCP
        // keepalives notice a dead peer, and no statement or row lock may
        // wait long (the claim's own wait is --wait, done between claims).
        cfg.keepalives(true);
        cfg.keepalives_idle(Duration::from_secs(5));
        let bounds = "-c statement_timeout=10000 -c lock_timeout=5000";
        let options = match cfg.get_options() {
            Some(given) if !given.trim().is_empty() => format!("{given} {bounds}"),
            _ => bounds.to_string(),
        };
        cfg.options(&options);
        if cfg.get_application_name().is_none() {
            cfg.application_name("rtb safe");
        }
        let connecting = cfg.connect(NoTls);
        let (client, connection) = match tokio::time::timeout(timeout, connecting).await {
            Err(_) => {
                return Err(fail(format!(
                    "no answer within {}",
                    crate::duration::fmt_duration(timeout)
                )))
            }
            Ok(Err(e)) => return Err(fail(scrub(&e, url))),
            Ok(Ok(pair)) => pair,
        };
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let store = PgStore {
            client,
            shown: shown.clone(),
        };
        store.setup().await.map_err(|e| fail(scrub(&e, url)))?;
        Ok(store)
    }

    async fn setup(&self) -> Result<(), tokio_postgres::Error> {
        // The simple protocol: one round trip, no statement to prepare.
        let probe = format!("SELECT to_regclass('{TABLE}') IS NOT NULL");
        let exists = self
            .client
            .simple_query(&probe)
            .await?
            .iter()
            .any(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0) == Some("t"),
                _ => false,
            });
        if exists {
            return Ok(());
        }
        // Concurrent CREATE TABLE IF NOT EXISTS can still collide in the
        // catalog; a transaction-scoped advisory lock serialises creators.
        self.client
            .batch_execute(&format!(
                "BEGIN;
                 SELECT pg_advisory_xact_lock(7262730001);
                 CREATE TABLE IF NOT EXISTS {TABLE} (
                    id text PRIMARY KEY,
                    state text NOT NULL,
                    fence bigint NOT NULL,
                    host text NOT NULL,
                    pid bigint NOT NULL,
                    token text NOT NULL,
                    command text NOT NULL,
                    exit_status integer,
                    started_at timestamptz NOT NULL,
                    updated_at timestamptz NOT NULL,
                    lease_until timestamptz NOT NULL,
                    output bytea,
                    output_cut boolean NOT NULL DEFAULT false
                 );
                 COMMIT;"
            ))
            .await
    }

    fn err(&self, e: &tokio_postgres::Error) -> Error {
        Error::Failed(format!("guard store {}: {e}", self.shown))
    }

    fn row(r: &Row) -> Result<Record, Error> {
        let state: String = r.get(1);
        Ok(Record {
            id: r.get(0),
            state: State::parse(&state)?,
            fence: r.get(2),
            host: r.get(3),
            pid: r.get(4),
            token: r.get(5),
            command: r.get(6),
            exit_status: r.get(7),
            started_ms: r.get(8),
            updated_ms: r.get(9),
            lease_until_ms: r.get(10),
            live: r.get(11),
            output: None,
            output_len: r.get(12),
            output_cut: r.get(13),
        })
    }

    async fn claim_existing(
        &self,
        id: &str,
        owner: &Owner,
        command: &str,
        lease: Duration,
    ) -> Result<Option<Claim>, tokio_postgres::Error> {
        // A transaction by hand: `Client::transaction` wants `&mut`, and
        // every early return below is an error that ends the session's use.
        self.client.batch_execute("BEGIN").await?;
        let result = self.decide(id, owner, command, lease).await;
        let end = if matches!(result, Ok(Some(_))) {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        self.client.batch_execute(end).await?;
        result
    }

    async fn decide(
        &self,
        id: &str,
        owner: &Owner,
        command: &str,
        lease: Duration,
    ) -> Result<Option<Claim>, tokio_postgres::Error> {
        let tx = &self.client;
        let row = tx
            .query_opt(
                &format!("SELECT {COLUMNS} FROM {TABLE} WHERE id = $1 FOR UPDATE"),
                &[&id],
            )
            .await?;
        let Some(row) = row else {
            // Deleted between our insert and this select: try again.
            return Ok(None);
        };
        let rec = match Self::row(&row) {
            Ok(r) => r,
            Err(_) => return Ok(None),
        };
        let claim = match rec.state {
            State::Done => Claim::Done(rec),
            _ if rec.live => Claim::Busy(rec),
            _ => {
                let fence: i64 = tx
                    .query_one(
                        &format!(
                            "UPDATE {TABLE} SET state = 'running', fence = fence + 1, host = $2, \
                             pid = $3, token = $4, command = $5, exit_status = NULL, \
                             started_at = clock_timestamp(), updated_at = clock_timestamp(), \
                             lease_until = clock_timestamp() + $6::bigint * interval '1 millisecond', \
                             output = NULL, output_cut = false \
                             WHERE id = $1 RETURNING fence"
                        ),
                        &[
                            &id as &(dyn ToSql + Sync),
                            &owner.host,
                            &owner.pid,
                            &owner.token,
                            &command,
                            &ms(lease),
                        ],
                    )
                    .await?
                    .get(0);
                let lost = (rec.state == State::Running).then_some(rec);
                Claim::Won { fence, lost }
            }
        };
        Ok(Some(claim))
    }

    async fn update(&self, sql: &str, p: &[&(dyn ToSql + Sync)]) -> Result<bool, Error> {
        self.client
            .execute(sql, p)
            .await
            .map(|n| n == 1)
            .map_err(|e| self.err(&e))
    }
}

/// The error's text, with the URL's password (should a driver ever echo it)
/// blotted out.
fn scrub(e: &tokio_postgres::Error, url: &str) -> String {
    use std::error::Error as _;
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text = format!("{text}: {c}");
        cause = c.source();
    }
    if let Ok(u) = reqwest::Url::parse(url) {
        let in_query = u
            .query_pairs()
            .filter(|(k, _)| {
                k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("sslpassword")
            })
            .map(|(_, v)| v.into_owned());
        for pw in u.password().map(str::to_owned).into_iter().chain(in_query) {
            if !pw.is_empty() {
                text = text.replace(&pw, "***");
            }
        }
    }
    text
}

impl Store for PgStore {
    async fn claim(
        &self,
        id: &str,
        owner: &Owner,
        command: &str,
        lease: Duration,
    ) -> Result<Claim, Error> {
        // Bounded: each round only repeats when the row vanished under us.
        for _ in 0..100 {
            // Typed: the statement goes with its parameters, no prepare
            // round trip (a fresh ID costs one round trip in all).
            let inserted = self
                .client
                .query_typed_opt(
                    &format!(
                        "INSERT INTO {TABLE} (id, state, fence, host, pid, token, command, \
                         started_at, updated_at, lease_until) \
                         VALUES ($1, 'running', 1, $2, $3, $4, $5, clock_timestamp(), clock_timestamp(), \
                         clock_timestamp() + $6 * interval '1 millisecond') \
                         ON CONFLICT (id) DO NOTHING RETURNING fence"
                    ),
                    &[
                        (&id as &(dyn ToSql + Sync), Type::TEXT),
                        (&owner.host, Type::TEXT),
                        (&owner.pid, Type::INT8),
                        (&owner.token, Type::TEXT),
                        (&command, Type::TEXT),
                        (&ms(lease), Type::INT8),
                    ],
                )
                .await
                .map_err(|e| self.err(&e))?;
            if let Some(row) = inserted {
                return Ok(Claim::Won {
                    fence: row.get(0),
                    lost: None,
                });
            }
            if let Some(c) = self
                .claim_existing(id, owner, command, lease)
                .await
                .map_err(|e| self.err(&e))?
            {
                return Ok(c);
            }
        }
        Err(Error::Failed(format!(
            "guard store {}: the record of '{id}' keeps changing; giving up",
            self.shown
        )))
    }

    async fn renew(
        &self,
        id: &str,
        owner: &Owner,
        fence: i64,
        lease: Duration,
    ) -> Result<bool, Error> {
        self.update(
            &format!(
                "UPDATE {TABLE} SET lease_until = clock_timestamp() + $4::bigint * interval '1 millisecond', \
                 updated_at = clock_timestamp() \
                 WHERE id = $1 AND token = $2 AND fence = $3 AND state = 'running'"
            ),
            &[&id as &(dyn ToSql + Sync), &owner.token, &fence, &ms(lease)],
        )
        .await
    }

    async fn finish(
        &self,
        id: &str,
        owner: &Owner,
        fence: i64,
        how: &Finish,
    ) -> Result<bool, Error> {
        self.client
            .execute_typed(
                &format!(
                    "UPDATE {TABLE} SET state = 'done', exit_status = $4, output = $5, \
                     output_cut = $6, updated_at = clock_timestamp() \
                     WHERE id = $1 AND token = $2 AND fence = $3 AND state = 'running'"
                ),
                &[
                    (&id as &(dyn ToSql + Sync), Type::TEXT),
                    (&owner.token, Type::TEXT),
                    (&fence, Type::INT8),
                    (&how.exit_status, Type::INT4),
                    (&how.output, Type::BYTEA),
                    (&how.output_cut, Type::BOOL),
                ],
            )
            .await
            .map(|n| n == 1)
            .map_err(|e| self.err(&e))
    }

    async fn release(&self, id: &str, owner: &Owner, fence: i64) -> Result<bool, Error> {
        self.update(
            &format!(
                "UPDATE {TABLE} SET state = 'released', updated_at = clock_timestamp(), lease_until = clock_timestamp() \
                 WHERE id = $1 AND token = $2 AND fence = $3 AND state = 'running'"
            ),
            &[&id as &(dyn ToSql + Sync), &owner.token, &fence],
        )
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<Record>, Error> {
        let row = self
            .client
            .query_opt(
                &format!("SELECT {COLUMNS}, output FROM {TABLE} WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(|e| self.err(&e))?;
        let Some(row) = row else { return Ok(None) };
        let mut rec = Self::row(&row)?;
        rec.output = row.get(14);
        Ok(Some(rec).filter(|r| r.state != State::Released))
    }

    async fn list(&self) -> Result<Vec<Record>, Error> {
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM {TABLE} WHERE state <> 'released' \
                     ORDER BY started_at, id"
                ),
                &[],
            )
            .await
            .map_err(|e| self.err(&e))?;
        rows.iter().map(Self::row).collect()
    }

    async fn forget(&self, id: &str) -> Result<Forgot, Error> {
        // Keep the row (and its fence) so later claims still rise.
        let n = self
            .client
            .execute(
                &format!(
                    "UPDATE {TABLE} SET state = 'released', output = NULL, output_cut = false, \
                     updated_at = clock_timestamp(), lease_until = clock_timestamp() \
                     WHERE id = $1 AND state <> 'released' \
                     AND NOT (state = 'running' AND lease_until > clock_timestamp())"
                ),
                &[&id],
            )
            .await
            .map_err(|e| self.err(&e))?;
        if n == 1 {
            return Ok(Forgot::Forgotten);
        }
        Ok(match self.get(id).await? {
            Some(r) if r.live => Forgot::Busy(r),
            _ => Forgot::NotRecorded,
        })
    }
}
