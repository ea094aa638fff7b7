//! Applications that crossed an isolation device as signed files, and the
//! answers that cross back.
//!
//! The business hall's side writes requests files (`headroom relay send`: a
//! JSON array of `register`, `reserve` and `release` actions, see
//! [`headroom_relay::applications`]) which a device delivers into `inbox`.
//! Each new file's actions are done in order by the same handlers as the HTTP
//! routes, as the caller `relay:STREAM` with the workflow role, and one signed
//! answers file per requests file (each action's status and body, the
//! application's record and its events) goes into `answers_outbox`, for the
//! reverse device. The file then moves to `done/`; a file that fails a check
//! goes to `rejected/` with its reason, unanswered unless its signature held
//! (then the answer says why it was refused).
//!
//! A crash after an action and before its file is settled does the file's
//! actions again: registering is an update, reserving what is reserved answers
//! 200 with the same reservation; a release answers 404 the second time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use headroom_relay::applications::{Action, ActionAnswer, Answers, InReplyTo, decode_actions};
use headroom_relay::inbox::{Checked, Inbox, Outcome, TrustedStream, trust_streams};
use headroom_relay::outbox::SignedOutbox;
use headroom_relay::sealed::{Header, Kind};
use headroom_relay::{Error as RelayError, SigningKey};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::auth::{Caller, Role};
use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::routes::{self, Path};
use crate::state::AppState;

/// The events of a relay stream's gap appearing and closing.
const GAP_OPENED: &str = "relay_gap_opened";
const GAP_CLOSED: &str = "relay_gap_closed";

/// A stream's missing numbers `from..=to`, by source and stream.
type GapKey = (String, String, u64, u64);

/// Turns the gaps of relay inboxes into events: `relay_gap_opened` when a gap
/// appears, `relay_gap_closed` when its numbers have arrived (a gap partly
/// filled closes and opens what is still missing).
#[derive(Debug, Default)]
pub struct GapEvents {
    open: BTreeSet<GapKey>,
}

impl GapEvents {
    /// The gaps the ledger's events leave open (opened, not closed): what a
    /// restarted service closes when their numbers have arrived meanwhile.
    pub async fn load(ledger: &Ledger) -> Result<Self> {
        let mut open = BTreeSet::new();
        for event in ledger.events_of_kinds(&[GAP_OPENED, GAP_CLOSED]).await? {
            let d = &event.detail;
            let key = (
                d["source"].as_str().unwrap_or_default().to_owned(),
                d["stream"].as_str().unwrap_or_default().to_owned(),
                d["from"].as_u64().unwrap_or(0),
                d["to"].as_u64().unwrap_or(0),
            );
            if event.kind == GAP_OPENED {
                open.insert(key);
            } else {
                open.remove(&key);
            }
        }
        Ok(Self { open })
    }

    /// Keeps only the gaps of one source (the others are another watcher's).
    fn of_source(mut self, source: &str) -> Self {
        self.open.retain(|gap| gap.0 == source);
        self
    }

    /// Keeps the gaps of every source but one.
    pub fn without_source(mut self, source: &str) -> Self {
        self.open.retain(|gap| gap.0 != source);
        self
    }

    /// Records the gaps seen now; writes an event for each change.
    pub async fn update(&mut self, ledger: &Ledger, now: BTreeSet<GapKey>) -> Result<()> {
        for (action, gaps) in [
            (GAP_OPENED, now.difference(&self.open)),
            (GAP_CLOSED, self.open.difference(&now)),
        ] {
            for (source, stream, from, to) in gaps {
                let detail = json!({"source": source, "stream": stream, "from": from, "to": to});
                ledger.record_event(action, detail).await?;
            }
        }
        self.open = now;
        Ok(())
    }
}

/// The gaps the sources report (`streams[].gaps` of relay inboxes in
/// `GET /v1/sources`).
pub fn gaps_of_sources(sources: &[Value]) -> BTreeSet<GapKey> {
    let mut gaps = BTreeSet::new();
    for source in sources {
        let name = source["name"].as_str().unwrap_or_default();
        for stream in source["streams"].as_array().into_iter().flatten() {
            let stream_name = stream["stream"].as_str().unwrap_or_default();
            for gap in stream["gaps"].as_array().into_iter().flatten() {
                if let (Some(from), Some(to)) = (gap["from"].as_u64(), gap["to"].as_u64()) {
                    gaps.insert((name.to_owned(), stream_name.to_owned(), from, to));
                }
            }
        }
    }
    gaps
}

/// The `[relay]` table of the service's config.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Applications arriving as files from the business hall.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applications: Option<ApplicationsRelayConfig>,
}

/// `[relay.applications]`: where requests files arrive and answers leave.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationsRelayConfig {
    /// The folder the device delivers requests files into (`done/`,
    /// `rejected/` and the ledger are kept inside).
    pub inbox: PathBuf,
    /// The business hall's streams and their trusted public keys.
    pub streams: BTreeMap<String, TrustedStream>,
    /// The folder the reverse device takes answers files from.
    pub answers_outbox: PathBuf,
    /// The private key that signs the answers.
    pub answers_key: PathBuf,
    /// The answers' stream.
    #[serde(default = "default_answers_stream")]
    pub answers_stream: String,
    /// The answers' own folder: sent files and the last number delivered.
    pub state_dir: PathBuf,
    /// How often the inbox is looked at, ms.
    #[serde(default = "default_scan_interval_ms")]
    pub scan_interval_ms: u64,
}

fn default_answers_stream() -> String {
    "answers".into()
}

const fn default_scan_interval_ms() -> u64 {
    200
}

const FIELD: &str = "relay.applications";

/// The source name of the applications inbox's gap events.
pub const APPLICATIONS_SOURCE: &str = FIELD;

fn config_error(e: RelayError) -> Error {
    match e {
        RelayError::Config { field, message } => Error::bad(field, message),
        RelayError::Key(message) => Error::bad(format!("{FIELD}.answers_key"), message),
        other => Error::Internal(other.to_string()),
    }
}

impl ApplicationsRelayConfig {
    fn open(&self) -> Result<(Inbox, SignedOutbox)> {
        if self.scan_interval_ms == 0 {
            return Err(Error::bad(
                format!("{FIELD}.scan_interval_ms"),
                "must be above 0",
            ));
        }
        let (trust, first) = trust_streams(&self.streams, FIELD).map_err(config_error)?;
        let inbox =
            Inbox::open(&self.inbox, Kind::Applications, trust, &first).map_err(config_error)?;
        let key = SigningKey::read(&self.answers_key).map_err(config_error)?;
        let outbox = SignedOutbox::open(
            &self.state_dir,
            &self.answers_outbox,
            &self.answers_stream,
            Kind::Answers,
            key,
        )
        .map_err(|e| match e {
            RelayError::Config { message, .. } => {
                Error::bad(format!("{FIELD}.answers_stream"), message)
            }
            other => config_error(other),
        })?;
        Ok((inbox, outbox))
    }
}

/// Opens the inbox and the answers' outbox (a bad setting fails here, naming
/// its field) and starts taking requests files until `shutdown`.
pub fn spawn(
    state: AppState,
    config: &ApplicationsRelayConfig,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>> {
    let (inbox, outbox) = config.open()?;
    let every = Duration::from_millis(config.scan_interval_ms);
    Ok(tokio::spawn(run(state, inbox, outbox, every, shutdown)))
}

async fn run(
    state: AppState,
    inbox: Inbox,
    outbox: SignedOutbox,
    every: Duration,
    shutdown: CancellationToken,
) {
    let inbox = Arc::new(Mutex::new(inbox));
    let outbox = Arc::new(Mutex::new(outbox));
    let mut gap_events = match GapEvents::load(state.ledger()).await {
        Ok(events) => events.of_source(FIELD),
        Err(e) => {
            tracing::warn!("applications inbox: reading its open gaps: {e}");
            GapEvents::default()
        }
    };
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let waiting = match lock(&inbox).waiting() {
            Ok(waiting) => waiting,
            Err(e) => {
                tracing::warn!("applications inbox: {e}");
                continue;
            }
        };
        for path in waiting {
            if shutdown.is_cancelled() {
                return;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            if let Err(e) = take(&state, &inbox, &outbox, path.clone(), &bytes).await {
                tracing::warn!("applications inbox: {}: {e}", path.display());
            }
        }
        let gaps = lock(&inbox)
            .streams()
            .into_iter()
            .flat_map(|s| {
                s.gaps
                    .into_iter()
                    .map(move |g| (FIELD.to_owned(), s.stream.clone(), g.from, g.to))
            })
            .collect();
        if let Err(e) = gap_events.update(state.ledger(), gaps).await {
            tracing::warn!("applications inbox: recording its gaps: {e}");
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Checks one file, does its actions, answers and settles it.
async fn take(
    state: &AppState,
    inbox: &Arc<Mutex<Inbox>>,
    outbox: &Arc<Mutex<SignedOutbox>>,
    path: PathBuf,
    bytes: &[u8],
) -> std::result::Result<(), RelayError> {
    let (header, actions): (Header, _) = match lock(inbox).check(&path, bytes) {
        Checked::New(opened) => {
            let actions = decode_actions(opened.body, opened.header.rows);
            (opened.header, actions)
        }
        Checked::Duplicate(_) => return lock(inbox).settle(vec![(path, Outcome::Duplicate)]),
        Checked::Rejected(rejection) => {
            tracing::warn!("{}: rejected: {rejection}", path.display());
            return lock(inbox).settle(vec![(path, Outcome::Rejected(rejection))]);
        }
    };
    let in_reply_to = InReplyTo {
        stream: header.stream.clone(),
        sequence: header.sequence,
    };
    let (answers, outcome) = match actions {
        Ok(actions) => {
            let caller = format!("relay:{}", header.stream);
            let mut answers = Vec::with_capacity(actions.len());
            for action in &actions {
                answers.push(perform(state, &caller, action).await);
            }
            let answers = Answers {
                in_reply_to,
                answers,
                refused: None,
            };
            (answers, Outcome::Taken(header))
        }
        Err(rejection) => {
            let answers = Answers {
                in_reply_to,
                answers: Vec::new(),
                refused: Some(rejection.to_string()),
            };
            (answers, Outcome::Rejected(rejection))
        }
    };
    let rows = answers.answers.len() as u64;
    let body = serde_json::to_vec_pretty(&answers).unwrap_or_default();
    let (inbox, outbox) = (inbox.clone(), outbox.clone());
    // Files and fsyncs: off the async workers.
    tokio::task::spawn_blocking(move || {
        lock(&outbox).send(&body, rows)?;
        lock(&inbox).settle(vec![(path, outcome)])
    })
    .await
    .map_err(|e| RelayError::Stopped(e.to_string()))?
}

/// Does one action as its HTTP route would, and gathers the application's
/// record and events afterwards.
async fn perform(state: &AppState, caller_name: &str, action: &Action) -> ActionAnswer {
    let caller = || Caller {
        name: caller_name.to_owned(),
        role: Role::Workflow,
    };
    let id = action.application_id().map(str::to_owned);
    let response: Response = match (action, &id) {
        (Action::Register { .. }, None) => Error::bad(
            "application.id",
            "is missing: an application crossing as a file names its id",
        )
        .into_response(),
        (Action::Register { application }, Some(id)) => routes::put_application(
            State(state.clone()),
            caller(),
            Path(id.clone()),
            Bytes::from(serde_json::to_vec(application).unwrap_or_default()),
        )
        .await
        .into_response(),
        (
            Action::Reserve {
                scheme, supplies, ..
            },
            Some(id),
        ) => {
            let mut request = serde_json::Map::new();
            if let Some(scheme) = scheme {
                request.insert("scheme".into(), json!(scheme));
            }
            if let Some(supplies) = supplies {
                request.insert("supplies".into(), json!(supplies));
            }
            routes::post_reservation(
                State(state.clone()),
                caller(),
                Path(id.clone()),
                Bytes::from(Value::Object(request).to_string()),
            )
            .await
            .into_response()
        }
        (Action::Release { .. }, Some(id)) => {
            routes::delete_reservation(State(state.clone()), caller(), Path(id.clone()))
                .await
                .into_response()
        }
        (_, None) => Error::bad("id", "is missing").into_response(),
    };
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let (application, events) = match &id {
        Some(id) => application_now(state, id).await,
        None => (Value::Null, Vec::new()),
    };
    ActionAnswer {
        action: action.name().to_owned(),
        id,
        status,
        body,
        application,
        events,
    }
}

/// The application's record and events, as `GET /v1/applications/{id}` and
/// `GET /v1/events` show them.
async fn application_now(state: &AppState, id: &str) -> (Value, Vec<Value>) {
    let ledger = state.ledger();
    let record = match ledger.application(id).await {
        Ok(Some(record)) => serde_json::to_value(record).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let events = ledger
        .events_of(id)
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|e| serde_json::to_value(e).ok())
        .collect();
    (record, events)
}
