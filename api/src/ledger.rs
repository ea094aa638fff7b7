//! The reservations ledger: applications with their submitted request, the
//! rankings returned, reservations and an append-only audit trail, in SQLite
//! (default, in the data dir) or PostgreSQL, through sqlx's `Any` driver with
//! one migrations folder per backend.
//!
//! **No oversubscription.** A reservation re-checks that its scheme still fits
//! with every reservation made so far and records itself in one transaction,
//! under a lock that serialises reservations touching the same substation:
//! SQLite takes the database's write lock up front (`BEGIN IMMEDIATE`),
//! PostgreSQL a transaction-scoped advisory lock per substation (in sorted
//! order, so two reservations never wait on each other). Every transaction
//! that writes the audit trail takes one more lock just before, so audit
//! sequence numbers become visible in order and an events cursor never skips
//! a row committed late.

use std::str::FromStr;
use std::time::Duration;

use headroom_engine::{Application, RankingResult};
use headroom_geodata::rfc3339;
use serde::Serialize;
use serde_json::Value;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Row, Transaction};
use utoipa::ToSchema;

use crate::config::LedgerConfig;
use crate::error::{Error, Result};

/// Which database the ledger is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// Audit actions that are also events for the workflow system.
pub const EVENT_ACTIONS: [&str; 6] = [
    "reservation_made",
    "reservation_released",
    "reservation_expired",
    "reservation_no_longer_fits",
    "relay_gap_opened",
    "relay_gap_closed",
];

/// An application's state in the ledger.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct ApplicationRecord {
    /// The workflow system's id.
    pub id: String,
    /// `registered`, `reserved`, `released` or `expired`.
    pub status: String,
    /// The application as submitted.
    #[schema(value_type = Object)]
    pub request: Value,
    /// When it was first registered, RFC 3339.
    pub created: String,
    /// When it last changed, RFC 3339.
    pub updated: String,
    /// Since when its reserved scheme no longer fits, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_longer_fits_since: Option<String>,
    /// The last ranking returned for it.
    #[schema(value_type = Option<Object>)]
    pub ranking: Option<Value>,
    /// Its reservation, while one is held.
    pub reservation: Option<ReservationRecord>,
    /// Every change, oldest first.
    pub audit: Vec<AuditEntry>,
}

/// A reservation of capacity for an application's scheme.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct ReservationRecord {
    /// The ledger's number for it.
    pub id: i64,
    /// The application holding it.
    pub application: String,
    /// The rank of the scheme reserved in the application's last ranking.
    pub scheme: Option<i64>,
    /// Connection points (node or transformer ids).
    pub supplies: Vec<String>,
    /// Their feeders (empty for a busbar bay).
    pub feeders: Vec<String>,
    /// Demand reserved at each supply, kW (each circuit of a two-supply scheme
    /// must carry the customer alone).
    pub reserved_kw: f64,
    /// The same in kvar.
    pub reserved_kvar: f64,
    /// Power factor of the load (of the generator, absorbing, for generation).
    pub power_factor: f64,
    /// A load or a generator (whose reserved kW is its export).
    pub kind: headroom_engine::ApplicationKind,
    /// 96 quarter-hour factors, or none for a flat load.
    pub profile: Option<Vec<f64>>,
    /// When it was made, RFC 3339.
    pub created: String,
    /// Who made it (the token's name).
    pub created_by: String,
    /// When it lapses, RFC 3339.
    pub expires: String,
    /// When it was released, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released: Option<String>,
    /// `released`, `expired` or `replaced`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_reason: Option<String>,
}

/// One entry of the audit trail.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct AuditEntry {
    /// Position in the trail.
    pub seq: i64,
    /// When, RFC 3339.
    pub at: String,
    /// Who: a token's name, or `headroom` for the service's own work.
    pub actor: String,
    /// `registered`, `updated`, `ranked`, `reservation_made`, ...
    pub action: String,
    /// What changed.
    #[schema(value_type = Object)]
    pub detail: Value,
}

/// An event for the workflow system.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Event {
    /// Pass as `after` to get the events after this one.
    pub cursor: String,
    /// When, RFC 3339.
    pub at: String,
    /// `reservation_made`, `reservation_released`, `reservation_expired`,
    /// `reservation_no_longer_fits`, or for files across an isolation device
    /// `relay_gap_opened` and `relay_gap_closed` (a stream's missing numbers,
    /// with the source and stream, until they arrive).
    pub kind: String,
    /// The application concerned.
    pub application: Option<String>,
    /// Particulars (scheme, supplies, binding constraints).
    #[schema(value_type = Object)]
    pub detail: Value,
}

/// A reservation about to be made.
#[derive(Clone, Debug, PartialEq)]
pub struct NewReservation {
    /// The scheme's rank, when reserved by rank.
    pub scheme: Option<i64>,
    /// Connection points.
    pub supplies: Vec<String>,
    /// Their feeders.
    pub feeders: Vec<String>,
    /// What the check locks on (substations), sorted.
    pub lock_keys: Vec<String>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The ledger.
#[derive(Clone, Debug)]
pub struct Ledger {
    pool: AnyPool,
    backend: Backend,
    ttl_ms: i64,
}

/// Columns of a reservation, in [`Ledger::reservation_of`]'s order.
const RESERVATION_COLUMNS: &str = "id, application, scheme_rank, supplies, feeders, reserved_kw, \
     reserved_kvar, power_factor, kind, profile, created_ms, created_by, expires_ms, released_ms, \
     release_reason";

impl Ledger {
    /// Connects, creating a SQLite file where needed, and runs the migrations.
    pub async fn open(url: &str, config: &LedgerConfig) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        if backend == Backend::Sqlite
            && let Some(path) = url
                .strip_prefix("sqlite://")
                .map(|rest| rest.split('?').next().unwrap_or_default())
            && let Some(parent) = std::path::Path::new(path).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::config("database_url", format!("{}: {e}", parent.display())))?;
        }
        let options = AnyConnectOptions::from_str(url)
            .map_err(|e| Error::config("database_url", e.to_string()))?;
        let pool = AnyPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(Duration::from_secs(60))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Writers queue behind BEGIN IMMEDIATE instead of failing
                        // with SQLITE_BUSY after sqlx's 5 s default.
                        sqlx::query("PRAGMA busy_timeout = 60000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        if backend == Backend::Sqlite {
            // Readers do not wait for the writer; persistent in the file.
            sqlx::query("PRAGMA journal_mode = WAL")
                .fetch_all(&pool)
                .await?;
        }
        match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        Ok(Self {
            pool,
            backend,
            ttl_ms: (config.reservation_ttl_days * 86_400_000.0) as i64,
        })
    }

    /// The database in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin(&self) -> Result<Transaction<'static, Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Serialises transactions that change the same substations' reservations.
    async fn lock_keys(&self, tx: &mut Transaction<'static, Any>, keys: &[String]) -> Result<()> {
        if self.backend == Backend::Postgres {
            for key in keys {
                sqlx::query(
                    "SELECT 1 FROM (SELECT pg_advisory_xact_lock(1, hashtext($1))) AS locked",
                )
                .bind(key)
                .fetch_all(&mut **tx)
                .await?;
            }
        }
        Ok(())
    }

    /// Sets an application's status, clearing any "no longer fits" mark.
    async fn set_status(
        tx: &mut Transaction<'static, Any>,
        id: &str,
        status: &str,
        now_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE applications SET status = $2, updated_ms = $3, misfit_since_ms = NULL WHERE id = $1",
        )
        .bind(id)
        .bind(status)
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Appends to the audit trail (see the module doc for the lock).
    async fn audit(
        &self,
        tx: &mut Transaction<'static, Any>,
        actor: &str,
        application: Option<&str>,
        action: &str,
        detail: Value,
    ) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock(2, 0)) AS locked")
                .fetch_all(&mut **tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO audit (at_ms, actor, application, action, detail) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(now_ms())
        .bind(actor)
        .bind(application)
        .bind(action)
        .bind(detail.to_string())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Registers an application or updates its request, and keeps the ranking
    /// returned. An application holding a reservation may be re-submitted
    /// unchanged (idempotent) but not changed: its reservation is for the
    /// request it was made with.
    pub async fn register(
        &self,
        application: &Application,
        ranking: &RankingResult,
        actor: &str,
    ) -> Result<()> {
        let request = serde_json::to_value(application)
            .map_err(|e| Error::Internal(format!("cannot encode the application: {e}")))?;
        let mut tx = self.begin().await?;
        let existing = sqlx::query("SELECT request, status FROM applications WHERE id = $1")
            .bind(&application.id)
            .fetch_optional(&mut *tx)
            .await?;
        let now = now_ms();
        match existing {
            None => {
                sqlx::query(
                    "INSERT INTO applications (id, request, status, created_ms, updated_ms) \
                     VALUES ($1, $2, 'registered', $3, $3)",
                )
                .bind(&application.id)
                .bind(request.to_string())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                self.audit(&mut tx, actor, Some(&application.id), "registered", request)
                    .await?;
            }
            Some(row) => {
                let stored: String = row.try_get("request")?;
                let status: String = row.try_get("status")?;
                let stored: Value = serde_json::from_str(&stored).unwrap_or(Value::Null);
                if stored != request {
                    if status == "reserved" {
                        return Err(Error::Conflict {
                            code: "reserved",
                            message: format!(
                                "application {} holds a reservation for its current request; release it before changing the request",
                                application.id
                            ),
                            field: None,
                        });
                    }
                    sqlx::query(
                        "UPDATE applications SET request = $2, status = 'registered', updated_ms = $3, \
                         misfit_since_ms = NULL WHERE id = $1",
                    )
                    .bind(&application.id)
                    .bind(request.to_string())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    self.audit(&mut tx, actor, Some(&application.id), "updated", request)
                        .await?;
                }
            }
        }
        let result = serde_json::to_string(ranking)
            .map_err(|e| Error::Internal(format!("cannot encode the ranking: {e}")))?;
        sqlx::query("INSERT INTO rankings (application, at_ms, result) VALUES ($1, $2, $3)")
            .bind(&application.id)
            .bind(now)
            .bind(result)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The application as submitted, if registered.
    pub async fn application_request(&self, id: &str) -> Result<Option<Application>> {
        let row = sqlx::query("SELECT request FROM applications WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let text: String = row.try_get("request")?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| Error::Internal(format!("stored application {id}: {e}")))?;
        Ok(Some(Application::from_json(&value)?))
    }

    /// The last ranking of an application.
    pub async fn last_ranking(&self, id: &str) -> Result<Option<Value>> {
        let row = sqlx::query(
            "SELECT result FROM rankings WHERE application = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            let text: String = row.try_get("result")?;
            serde_json::from_str(&text)
                .map_err(|e| Error::Internal(format!("stored ranking of {id}: {e}")))
        })
        .transpose()
    }

    /// Everything about an application, or `None`.
    pub async fn application(&self, id: &str) -> Result<Option<ApplicationRecord>> {
        let row = sqlx::query(
            "SELECT id, request, status, created_ms, updated_ms, misfit_since_ms FROM applications WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let request: String = row.try_get("request")?;
        let misfit: Option<i64> = row.try_get("misfit_since_ms")?;
        let reservation = self.active_reservation_of(&self.pool, id).await?;
        let audit = sqlx::query(
            "SELECT seq, at_ms, actor, action, detail FROM audit WHERE application = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|row| -> Result<AuditEntry> {
            let detail: String = row.try_get("detail")?;
            Ok(AuditEntry {
                seq: row.try_get("seq")?,
                at: rfc3339(row.try_get("at_ms")?),
                actor: row.try_get("actor")?,
                action: row.try_get("action")?,
                detail: serde_json::from_str(&detail).unwrap_or(Value::Null),
            })
        })
        .collect::<Result<Vec<_>>>()?;
        Ok(Some(ApplicationRecord {
            id: row.try_get("id")?,
            status: row.try_get("status")?,
            request: serde_json::from_str(&request).unwrap_or(Value::Null),
            created: rfc3339(row.try_get("created_ms")?),
            updated: rfc3339(row.try_get("updated_ms")?),
            no_longer_fits_since: misfit.map(rfc3339),
            ranking: self.last_ranking(id).await?,
            reservation,
            audit,
        }))
    }

    fn reservation_of(row: &sqlx::any::AnyRow) -> Result<ReservationRecord> {
        let list = |column: &str| -> Result<Vec<String>> {
            let text: String = row.try_get(column)?;
            Ok(serde_json::from_str(&text).unwrap_or_default())
        };
        let profile: Option<String> = row.try_get("profile")?;
        let released: Option<i64> = row.try_get("released_ms")?;
        let kind: String = row.try_get("kind")?;
        Ok(ReservationRecord {
            id: row.try_get("id")?,
            application: row.try_get("application")?,
            scheme: row.try_get("scheme_rank")?,
            supplies: list("supplies")?,
            feeders: list("feeders")?,
            reserved_kw: row.try_get("reserved_kw")?,
            reserved_kvar: row.try_get("reserved_kvar")?,
            power_factor: row.try_get("power_factor")?,
            kind: if kind == "generation" {
                headroom_engine::ApplicationKind::Generation
            } else {
                headroom_engine::ApplicationKind::Load
            },
            profile: profile.and_then(|p| serde_json::from_str(&p).ok()),
            created: rfc3339(row.try_get("created_ms")?),
            created_by: row.try_get("created_by")?,
            expires: rfc3339(row.try_get("expires_ms")?),
            released: released.map(rfc3339),
            release_reason: row.try_get("release_reason")?,
        })
    }

    async fn active_reservation_of<'e, E>(
        &self,
        executor: E,
        id: &str,
    ) -> Result<Option<ReservationRecord>>
    where
        E: sqlx::Executor<'e, Database = Any>,
    {
        let row = sqlx::query(&format!(
            "SELECT {RESERVATION_COLUMNS} FROM reservations \
             WHERE application = $1 AND released_ms IS NULL ORDER BY id DESC LIMIT 1"
        ))
        .bind(id)
        .fetch_optional(executor)
        .await?;
        row.as_ref().map(Self::reservation_of).transpose()
    }

    /// Every reservation held, oldest first.
    pub async fn active_reservations(&self) -> Result<Vec<ReservationRecord>> {
        Self::active_in(&self.pool).await
    }

    async fn active_in<'e, E>(executor: E) -> Result<Vec<ReservationRecord>>
    where
        E: sqlx::Executor<'e, Database = Any>,
    {
        sqlx::query(&format!(
            "SELECT {RESERVATION_COLUMNS} FROM reservations WHERE released_ms IS NULL ORDER BY id"
        ))
        .fetch_all(executor)
        .await?
        .iter()
        .map(Self::reservation_of)
        .collect()
    }

    /// Reserves `new` for `application`: under the locks of its keys, `fits`
    /// judges the scheme with every other reservation held (run on a blocking
    /// thread: it runs power flows) and the reservation is recorded only when
    /// it returns `Ok`. Reserving the same supplies again returns the
    /// reservation held; other supplies replace it.
    pub async fn reserve<F>(
        &self,
        application: &Application,
        new: NewReservation,
        actor: &str,
        fits: F,
    ) -> Result<(ReservationRecord, bool)>
    where
        F: FnOnce(Vec<ReservationRecord>) -> Result<()> + Send + 'static,
    {
        let mut tx = self.begin().await?;
        self.lock_keys(&mut tx, &new.lock_keys).await?;
        let status: Option<String> = sqlx::query("SELECT status FROM applications WHERE id = $1")
            .bind(&application.id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row.try_get("status"))
            .transpose()?;
        if status.is_none() {
            return Err(Error::NotFound(format!(
                "application {} is not registered (PUT /v1/applications/{} first)",
                application.id, application.id
            )));
        }
        let held = self
            .active_reservation_of(&mut *tx, &application.id)
            .await?;
        if let Some(held) = &held
            && held.supplies == new.supplies
        {
            return Ok((held.clone(), false));
        }
        let others: Vec<ReservationRecord> = Self::active_in(&mut *tx)
            .await?
            .into_iter()
            .filter(|r| r.application != application.id)
            .collect();
        tokio::task::spawn_blocking(move || fits(others))
            .await
            .map_err(|e| Error::Internal(format!("the fit check failed: {e}")))??;
        let now = now_ms();
        if let Some(held) = &held {
            sqlx::query(
                "UPDATE reservations SET released_ms = $2, release_reason = 'replaced' WHERE id = $1",
            )
            .bind(held.id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            self.audit(
                &mut tx,
                actor,
                Some(&application.id),
                "reservation_released",
                serde_json::json!({"reservation": held.id, "reason": "replaced", "supplies": held.supplies}),
            )
            .await?;
        }
        let reserved_kvar = application.demand_kw
            * headroom_engine::load_model::power_factor_tan(application.power_factor);
        // The profile judged: a generator's source default where it gave none.
        let profile = application
            .judged_profile()
            .map(|p| serde_json::to_string(&p).unwrap_or_default());
        let kind = if application.is_generation() {
            "generation"
        } else {
            "load"
        };
        let json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_default();
        let id: i64 = sqlx::query(
            "INSERT INTO reservations (application, scheme_rank, supplies, feeders, reserved_kw, \
             reserved_kvar, power_factor, profile, created_ms, created_by, expires_ms, kind) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
        )
        .bind(&application.id)
        .bind(new.scheme)
        .bind(json(&new.supplies))
        .bind(json(&new.feeders))
        .bind(application.demand_kw)
        .bind(reserved_kvar)
        .bind(application.power_factor)
        .bind(profile)
        .bind(now)
        .bind(actor)
        .bind(now + self.ttl_ms)
        .bind(kind)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        Self::set_status(&mut tx, &application.id, "reserved", now).await?;
        self.audit(
            &mut tx,
            actor,
            Some(&application.id),
            "reservation_made",
            serde_json::json!({
                "reservation": id,
                "scheme": new.scheme,
                "supplies": new.supplies,
                "feeders": new.feeders,
                "reserved_kw": application.demand_kw,
                "reserved_kvar": reserved_kvar,
                "expires": rfc3339(now + self.ttl_ms),
            }),
        )
        .await?;
        let record = self
            .active_reservation_of(&mut *tx, &application.id)
            .await?
            .ok_or_else(|| Error::Internal("the reservation just made is missing".into()))?;
        tx.commit().await?;
        Ok((record, true))
    }

    /// Releases the reservation an application holds; the released record, or
    /// `None` when it held none.
    pub async fn release(&self, id: &str, actor: &str) -> Result<Option<ReservationRecord>> {
        let mut tx = self.begin().await?;
        let Some(held) = self.active_reservation_of(&mut *tx, id).await? else {
            return Ok(None);
        };
        let now = now_ms();
        sqlx::query(
            "UPDATE reservations SET released_ms = $2, release_reason = 'released' \
             WHERE id = $1 AND released_ms IS NULL",
        )
        .bind(held.id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        Self::set_status(&mut tx, id, "released", now).await?;
        self.audit(
            &mut tx,
            actor,
            Some(id),
            "reservation_released",
            serde_json::json!({"reservation": held.id, "reason": "released", "supplies": held.supplies}),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(ReservationRecord {
            released: Some(rfc3339(now)),
            release_reason: Some("released".into()),
            ..held
        }))
    }

    /// Releases every reservation past its expiry at `now_ms`; the applications
    /// concerned.
    pub async fn expire_due(&self, now_ms: i64) -> Result<Vec<String>> {
        let mut tx = self.begin().await?;
        let due = sqlx::query(&format!(
            "SELECT {RESERVATION_COLUMNS} FROM reservations \
             WHERE released_ms IS NULL AND expires_ms <= $1 ORDER BY id"
        ))
        .bind(now_ms)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(Self::reservation_of)
        .collect::<Result<Vec<_>>>()?;
        for r in &due {
            sqlx::query(
                "UPDATE reservations SET released_ms = $2, release_reason = 'expired' WHERE id = $1",
            )
            .bind(r.id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            Self::set_status(&mut tx, &r.application, "expired", now_ms).await?;
            self.audit(
                &mut tx,
                "headroom",
                Some(&r.application),
                "reservation_expired",
                serde_json::json!({"reservation": r.id, "supplies": r.supplies, "expires": r.expires}),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(due.into_iter().map(|r| r.application).collect())
    }

    /// Records whether an application's reserved scheme still fits; an event
    /// is written when it stops fitting (once, until it fits again). Returns
    /// whether anything changed.
    pub async fn mark_fit(&self, id: &str, fits: bool, detail: Value) -> Result<bool> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT status, misfit_since_ms FROM applications WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(false) };
        let status: String = row.try_get("status")?;
        let misfit: Option<i64> = row.try_get("misfit_since_ms")?;
        if status != "reserved" || fits == misfit.is_none() {
            return Ok(false);
        }
        let now = now_ms();
        if fits {
            sqlx::query("UPDATE applications SET misfit_since_ms = NULL WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            self.audit(
                &mut tx,
                "headroom",
                Some(id),
                "reservation_fits_again",
                detail,
            )
            .await?;
        } else {
            sqlx::query("UPDATE applications SET misfit_since_ms = $2 WHERE id = $1")
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            self.audit(
                &mut tx,
                "headroom",
                Some(id),
                "reservation_no_longer_fits",
                detail,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Records an event of the service's own (no application), as `headroom`.
    pub async fn record_event(&self, action: &str, detail: Value) -> Result<()> {
        let mut tx = self.begin().await?;
        self.audit(&mut tx, "headroom", None, action, detail)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Events after `cursor` (0 for the first), at most `limit`, in order.
    pub async fn events_after(&self, cursor: i64, limit: i64) -> Result<Vec<Event>> {
        self.events_matching(cursor, limit, &EVENT_ACTIONS, None)
            .await
    }

    /// Every event of one application, in order.
    pub async fn events_of(&self, application: &str) -> Result<Vec<Event>> {
        self.events_matching(0, i64::MAX, &EVENT_ACTIONS, Some(application))
            .await
    }

    /// Every event of these kinds, in order.
    pub async fn events_of_kinds(&self, kinds: &[&str]) -> Result<Vec<Event>> {
        self.events_matching(0, i64::MAX, kinds, None).await
    }

    /// Events of `kinds` after `cursor`, at most `limit`, of one application
    /// where given. The kinds are this crate's constants, never the caller's
    /// input: they are written into the query.
    async fn events_matching(
        &self,
        cursor: i64,
        limit: i64,
        kinds: &[&str],
        application: Option<&str>,
    ) -> Result<Vec<Event>> {
        let actions = kinds
            .iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let of_application = if application.is_some() {
            " AND application = $3"
        } else {
            ""
        };
        let sql = format!(
            "SELECT seq, at_ms, application, action, detail FROM audit \
             WHERE seq > $1 AND action IN ({actions}){of_application} ORDER BY seq LIMIT $2"
        );
        let mut query = sqlx::query(&sql).bind(cursor).bind(limit);
        if let Some(application) = application {
            query = query.bind(application);
        }
        query
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|row| {
                let seq: i64 = row.try_get("seq")?;
                let detail: String = row.try_get("detail")?;
                Ok(Event {
                    cursor: seq.to_string(),
                    at: rfc3339(row.try_get("at_ms")?),
                    kind: row.try_get("action")?,
                    application: row.try_get("application")?,
                    detail: serde_json::from_str(&detail).unwrap_or(Value::Null),
                })
            })
            .collect()
    }

    /// Demand held by reservations, kW (each supply counted once per
    /// reservation).
    pub async fn total_reserved_kw(&self) -> Result<f64> {
        Ok(self
            .active_reservations()
            .await?
            .iter()
            .map(|r| r.reserved_kw)
            .sum())
    }
}
