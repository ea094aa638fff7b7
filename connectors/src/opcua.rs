//! SCADA feeder-head measurements over OPC UA: one client session to one
//! server endpoint, one subscription, one monitored item per configured node.
//!
//! **Values.** Each data change becomes a reading: the node's value (any
//! numeric variant) x `scale` + `offset`, stamped with the source or the
//! server timestamp as configured, its OPC UA status mapped to a quality
//! (Good, Uncertain, Bad). A bad value is stored with its quality, not dropped
//! (when the server sends a bad status without a value, the value stored is 0:
//! bad readings are never used as load). A NaN or infinite value is counted as
//! `non_finite` and not stored, as from the Modbus connector.
//!
//! **Recovery.** The connector owns reconnection instead of leaving it to the
//! library: when the connection drops, keep-alives fail or the server
//! restarts, the session is abandoned and a new one is made, with exponential
//! backoff and jitter, and the subscription and its items are created afresh
//! (the server sends each item's current value on creation). While
//! disconnected the status says so, since when and when the next attempt is
//! due; nothing is written, so no stale value is presented as fresh, and the
//! gap is reported once data flow again.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ::opcua::client::{
    Client, ClientBuilder, ClientEndpoint, IdentityToken, MonitoredItemMap,
    OnSubscriptionNotificationCore, SessionPollResult,
};
use ::opcua::crypto::SecurityPolicy;
use ::opcua::types::{
    DataChangeFilter, DataChangeNotification, DataChangeTrigger, DataValue, DeadbandType,
    ExtensionObject, MessageSecurityMode, MonitoredItemCreateRequest, MonitoringMode,
    MonitoringParameters, NodeId, NotificationMessage, ReadValueId, StatusCode, TimestampsToReturn,
};
use futures::StreamExt;
use headroom_geodata::Quantity;
use headroom_readings::{Quality, Reading};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::output::{Backoff, Output};
use crate::status::{LinkState, StatusHandle};

/// Monitored items created per CreateMonitoredItems request.
const ITEMS_PER_REQUEST: usize = 1_000;

/// An OPC UA server endpoint and the items to monitor on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpcUaConfig {
    /// Unique among the connectors; the `source` of its readings.
    pub name: String,
    /// The server's endpoint, `opc.tcp://host:port/path`.
    pub endpoint_url: String,
    /// `none` or `basic256sha256`.
    #[serde(default)]
    pub security_policy: SecurityPolicyName,
    /// `none`, `sign` or `sign_and_encrypt` (`none` exactly when the policy is).
    #[serde(default)]
    pub security_mode: SecurityModeName,
    /// Who the client logs in as.
    #[serde(default)]
    pub identity: Identity,
    /// The client's PKI folder: its own certificate and key (`own/cert.der`,
    /// `private/private.pem`, made on first use when missing) and the server
    /// certificates it trusts (`trusted/`). Needed unless security is none.
    #[serde(default)]
    pub pki_dir: Option<PathBuf>,
    /// Trust any server certificate (commissioning only: it defeats the point
    /// of signing).
    #[serde(default)]
    pub trust_server_certs: bool,
    /// How often the server sends the subscription's changes, ms.
    #[serde(default = "default_publishing_interval_ms")]
    pub publishing_interval_ms: u64,
    /// Which timestamp a reading carries: the device's (`source`) or the
    /// server's (`server`); the other one when it is missing.
    #[serde(default)]
    pub timestamps: TimestampSource,
    /// How long one request (and connecting) may take, ms.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// How often the session checks the server answers, ms; two failed checks
    /// in a row drop the connection (a stalled link shows no other sign).
    #[serde(default = "default_keep_alive_interval_ms")]
    pub keep_alive_interval_ms: u64,
    /// First reconnect delay, ms (doubling, with jitter).
    #[serde(default = "crate::default_retry_min_ms")]
    pub retry_min_ms: u64,
    /// Longest reconnect delay, ms.
    #[serde(default = "crate::default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// The monitored items.
    pub items: Vec<OpcUaItem>,
}

const fn default_publishing_interval_ms() -> u64 {
    1_000
}
const fn default_request_timeout_ms() -> u64 {
    10_000
}
const fn default_keep_alive_interval_ms() -> u64 {
    5_000
}
const fn default_sampling_interval_ms() -> f64 {
    1_000.0
}
const fn default_queue_size() -> u32 {
    10
}

/// Security policy of the channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityPolicyName {
    /// No signing, no encryption.
    #[default]
    None,
    /// RSA-SHA256 signatures, AES-256 encryption.
    Basic256sha256,
}

/// Message security mode of the channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityModeName {
    /// Plain messages.
    #[default]
    None,
    /// Signed messages.
    Sign,
    /// Signed and encrypted messages.
    SignAndEncrypt,
}

/// The user identity of the session.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Identity {
    /// No user.
    #[default]
    Anonymous,
    /// A user name and password (keep the config file readable to the service only).
    Username {
        /// The user name.
        username: String,
        /// Its password.
        password: String,
    },
    /// An X.509 user certificate and its private key.
    Certificate {
        /// The certificate, DER.
        certificate: PathBuf,
        /// Its private key, PEM.
        private_key: PathBuf,
    },
}

/// Which timestamp readings carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampSource {
    /// When the device measured the value.
    #[default]
    Source,
    /// When the server last saw the value.
    Server,
}

/// Which changes the server reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Deadband {
    /// Every change.
    #[default]
    None,
    /// Changes larger than `value`, in the node's unit (before scaling).
    Absolute {
        /// The threshold.
        value: f64,
    },
    /// Changes larger than `value` percent of the node's engineering range
    /// (the server must know the node's `EURange`).
    Percent {
        /// The threshold, 0 to 100.
        value: f64,
    },
}

/// One monitored node and what it measures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpcUaItem {
    /// The node, in OPC UA's text form (`ns=2;s=F_1.p_kw`, `ns=3;i=1042`).
    pub node_id: String,
    /// How often the server samples the node, ms.
    #[serde(default = "default_sampling_interval_ms")]
    pub sampling_interval_ms: f64,
    /// Samples the server keeps between publishes (samples faster than the
    /// publishing interval are lost beyond it).
    #[serde(default = "default_queue_size")]
    pub queue_size: u32,
    /// Which changes are reported.
    #[serde(default)]
    pub deadband: Deadband,
    /// Value = raw x scale + offset.
    #[serde(default = "crate::default_scale")]
    pub scale: f64,
    /// Added after scaling.
    #[serde(default)]
    pub offset: f64,
    /// The asset measured (feeder, transformer or substation transformer id).
    pub asset: String,
    /// What is measured: `p_kw`, `q_kvar`, `s_kva`, `i_a` or `u_kv`.
    pub quantity: String,
}

impl OpcUaConfig {
    /// Checks the configuration; `field` is its path (e.g. `connector[0]`) and
    /// `known_asset` tells whether the network has an asset id.
    pub fn validate(&self, field: &str, known_asset: &dyn Fn(&str) -> bool) -> Result<()> {
        if !self.endpoint_url.starts_with("opc.tcp://") || self.endpoint_url.len() <= 10 {
            return Err(Error::config(
                format!("{field}.endpoint_url"),
                format!("`{}` is not an opc.tcp:// URL", self.endpoint_url),
            ));
        }
        let secure = self.security_policy != SecurityPolicyName::None;
        if secure != (self.security_mode != SecurityModeName::None) {
            return Err(Error::config(
                format!("{field}.security_mode"),
                "must be `none` exactly when security_policy is `none`",
            ));
        }
        if secure && self.pki_dir.is_none() {
            return Err(Error::config(
                format!("{field}.pki_dir"),
                "is needed to sign or encrypt (the client's key pair lives there)",
            ));
        }
        match &self.identity {
            Identity::Anonymous => {}
            Identity::Username { username, .. } => {
                if username.trim().is_empty() {
                    return Err(Error::config(
                        format!("{field}.identity.username"),
                        "is empty",
                    ));
                }
            }
            Identity::Certificate {
                certificate,
                private_key,
            } => {
                for (name, path) in [("certificate", certificate), ("private_key", private_key)] {
                    if !path.is_file() {
                        return Err(Error::config(
                            format!("{field}.identity.{name}"),
                            format!("`{}` is not a readable file", path.display()),
                        ));
                    }
                }
            }
        }
        for (name, value) in [
            ("publishing_interval_ms", self.publishing_interval_ms),
            ("request_timeout_ms", self.request_timeout_ms),
            ("keep_alive_interval_ms", self.keep_alive_interval_ms),
        ] {
            if value == 0 {
                return Err(Error::config(format!("{field}.{name}"), "must be above 0"));
            }
        }
        if self.retry_min_ms == 0 || self.retry_max_ms < self.retry_min_ms {
            return Err(Error::config(
                format!("{field}.retry_min_ms"),
                "must be above 0 and at most retry_max_ms",
            ));
        }
        if self.items.is_empty() {
            return Err(Error::config(format!("{field}.items"), "lists no item"));
        }
        let mut seen: std::collections::HashMap<NodeId, usize> = std::collections::HashMap::new();
        for (i, item) in self.items.iter().enumerate() {
            let at = format!("{field}.items[{i}]");
            let node = NodeId::from_str(&item.node_id).map_err(|_| {
                Error::config(
                    format!("{at}.node_id"),
                    format!(
                        "`{}` is not a node id (`ns=2;s=name`, `ns=2;i=42`)",
                        item.node_id
                    ),
                )
            })?;
            if let Some(first) = seen.insert(node, i) {
                return Err(Error::config(
                    format!("{at}.node_id"),
                    format!("`{}` is items[{first}]'s too", item.node_id),
                ));
            }
            if !(item.sampling_interval_ms.is_finite() && item.sampling_interval_ms >= 0.0) {
                return Err(Error::config(
                    format!("{at}.sampling_interval_ms"),
                    "must be 0 (as fast as the server can) or above",
                ));
            }
            if item.queue_size == 0 {
                return Err(Error::config(
                    format!("{at}.queue_size"),
                    "must be at least 1",
                ));
            }
            match item.deadband {
                Deadband::None => {}
                Deadband::Absolute { value } if value.is_finite() && value >= 0.0 => {}
                Deadband::Percent { value } if (0.0..=100.0).contains(&value) => {}
                _ => {
                    return Err(Error::config(
                        format!("{at}.deadband.value"),
                        "must be 0 or above (at most 100 for a percent deadband)",
                    ));
                }
            }
            crate::validate_mapping(
                &at,
                &item.asset,
                &item.quantity,
                item.scale,
                item.offset,
                known_asset,
            )?;
        }
        Ok(())
    }
}

/// An item ready to turn values into readings.
struct Prepared {
    node: NodeId,
    asset: Arc<str>,
    quantity: Quantity,
    item: OpcUaItem,
}

/// A subscription's data changes, as (client handle, value); the handle is
/// the item's index + 1 (0 means "let the library choose").
type Changes = Vec<(u32, DataValue)>;

/// Forwards each publish's data changes in one message: the library calls it
/// on its own task, which must not wait.
struct Forwarder(mpsc::UnboundedSender<Changes>);

impl OnSubscriptionNotificationCore for Forwarder {
    fn on_subscription_notification(
        &mut self,
        notification: NotificationMessage,
        _items: MonitoredItemMap<'_>,
    ) {
        let Some(data) = notification.notification_data else {
            return;
        };
        let mut changes = Vec::new();
        for object in data {
            // Events and status changes are not ours to read.
            if let Some(data_changes) = object.into_inner_as::<DataChangeNotification>() {
                changes.extend(
                    data_changes
                        .monitored_items
                        .into_iter()
                        .flatten()
                        .map(|n| (n.client_handle, n.value)),
                );
            }
        }
        if !changes.is_empty() {
            let _ = self.0.send(changes);
        }
    }
}

/// How a session ended.
enum Ended {
    Shutdown,
    Lost {
        kind: &'static str,
        reason: String,
        /// The subscription was up: the backoff starts over.
        was_up: bool,
    },
}

fn lost(kind: &'static str, reason: impl Into<String>, was_up: bool) -> Ended {
    Ended::Lost {
        kind,
        reason: reason.into(),
        was_up,
    }
}

/// Since when readings are missing, to report the gap when they resume.
#[derive(Default)]
struct GapTracker {
    last_success_ms: Option<i64>,
    in_gap: bool,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Runs the connector until `shutdown`.
pub async fn run(
    name: String,
    config: OpcUaConfig,
    output: Output,
    status: StatusHandle,
    shutdown: CancellationToken,
) {
    let source: Arc<str> = Arc::from(name.as_str());
    let prepared: Arc<Vec<Prepared>> = Arc::new(
        config
            .items
            .iter()
            .map(|item| Prepared {
                node: NodeId::from_str(&item.node_id).unwrap_or_else(|_| NodeId::null()),
                asset: Arc::from(item.asset.as_str()),
                quantity: Quantity::parse(&item.quantity).unwrap_or(Quantity::PKw),
                item: item.clone(),
            })
            .collect(),
    );
    let mut backoff = Backoff::new(
        Duration::from_millis(config.retry_min_ms),
        Duration::from_millis(config.retry_max_ms),
    );
    let mut gaps = GapTracker::default();
    let mut down_since: Option<i64> = None;
    let mut own_pki = None;
    loop {
        let ended = match client(&name, &config, &mut own_pki).await {
            Ok(client) => {
                run_session(
                    client, &config, &prepared, &source, &output, &status, &shutdown, &mut gaps,
                )
                .await
            }
            Err(reason) => lost("client", reason, false),
        };
        let Ended::Lost {
            kind,
            reason,
            was_up,
        } = ended
        else {
            break;
        };
        status.error(kind);
        tracing::warn!("{source}: {reason}");
        gaps.in_gap = true;
        if was_up {
            backoff.reset();
            down_since = None;
        }
        let now = now_ms();
        let since = *down_since.get_or_insert(gaps.last_success_ms.unwrap_or(now));
        let delay = backoff.next_delay();
        status.update(|s| {
            s.link = LinkState::Disconnected {
                since_ms: since,
                retry_at_ms: now + delay.as_millis() as i64,
                reason,
            }
        });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => break,
        }
    }
    status.update(|s| s.link = LinkState::Stopped);
}

/// A client for `config`, in its PKI folder or, without one, in `own_pki`: a
/// private folder made on first use and removed with the connector.
///
/// The library reads the client's certificate and key when the client is made
/// and for every secure channel, security None included, and logs an ERROR
/// each time they are missing; so the client always gets a key pair, made once
/// (off the runtime: RSA key generation takes a while).
async fn client(
    name: &str,
    config: &OpcUaConfig,
    own_pki: &mut Option<tempfile::TempDir>,
) -> std::result::Result<Client, String> {
    let pki = match (&config.pki_dir, &*own_pki) {
        (Some(pki), _) => pki.clone(),
        (None, Some(own)) => own.path().to_owned(),
        (None, None) => {
            let own = tempfile::Builder::new()
                .prefix("headroom-opcua-")
                .tempdir()
                .map_err(|e| format!("client PKI folder: {e}"))?;
            own_pki.insert(own).path().to_owned()
        }
    };
    let (name, config) = (name.to_owned(), config.clone());
    tokio::task::spawn_blocking(move || build_client(&name, &config, pki))
        .await
        .map_err(|e| format!("client config: {e}"))?
}

fn build_client(
    name: &str,
    config: &OpcUaConfig,
    pki: PathBuf,
) -> std::result::Result<Client, String> {
    // Sessions are opened on an endpoint the server lists, but the library
    // warns of a configuration without any: this is the one the client is for.
    let (policy, mode) = security(config);
    let mut endpoint = ClientEndpoint::new(config.endpoint_url.clone());
    endpoint.security_policy = policy.to_str().to_owned();
    endpoint.security_mode = mode.into();
    let builder = ClientBuilder::new()
        .application_name(format!("Headroom {name}"))
        .application_uri(format!("urn:headroom:connector:{name}"))
        .product_uri("urn:headroom")
        .endpoint("server", endpoint)
        .trust_server_certs(config.trust_server_certs)
        .pki_dir(pki)
        .create_sample_keypair(true)
        // Reconnection is ours (with jitter, and a fresh subscription).
        .session_retry_limit(0)
        .request_timeout(Duration::from_millis(config.request_timeout_ms))
        .keep_alive_interval(Duration::from_millis(config.keep_alive_interval_ms))
        .max_failed_keep_alive_count(2)
        .session_timeout(60_000)
        // Large subscriptions publish large messages.
        .max_message_size(256 * 1024 * 1024)
        .max_chunk_count(4_096)
        .max_array_length(1_000_000);
    builder
        .client()
        .map_err(|errors| format!("client config: {}", errors.join("; ")))
}

fn security(config: &OpcUaConfig) -> (SecurityPolicy, MessageSecurityMode) {
    let policy = match config.security_policy {
        SecurityPolicyName::None => SecurityPolicy::None,
        SecurityPolicyName::Basic256sha256 => SecurityPolicy::Basic256Sha256,
    };
    let mode = match config.security_mode {
        SecurityModeName::None => MessageSecurityMode::None,
        SecurityModeName::Sign => MessageSecurityMode::Sign,
        SecurityModeName::SignAndEncrypt => MessageSecurityMode::SignAndEncrypt,
    };
    (policy, mode)
}

fn identity_token(identity: &Identity) -> std::result::Result<IdentityToken, String> {
    Ok(match identity {
        Identity::Anonymous => IdentityToken::Anonymous,
        Identity::Username { username, password } => {
            IdentityToken::new_user_name(username.clone(), password.clone())
        }
        Identity::Certificate {
            certificate,
            private_key,
        } => IdentityToken::new_x509_path(certificate, private_key)
            .map_err(|e| format!("user certificate: {e}"))?,
    })
}

/// What the session's event loop tells the connector.
enum SessionEvent {
    Connected,
    Lost(String),
}

#[allow(clippy::too_many_arguments)]
async fn run_session(
    mut client: Client,
    config: &OpcUaConfig,
    prepared: &Arc<Vec<Prepared>>,
    source: &Arc<str>,
    output: &Output,
    status: &StatusHandle,
    shutdown: &CancellationToken,
    gaps: &mut GapTracker,
) -> Ended {
    let timeout = Duration::from_millis(config.request_timeout_ms);
    let (policy, mode) = security(config);
    let identity = match identity_token(&config.identity) {
        Ok(identity) => identity,
        Err(reason) => return lost("identity", reason, false),
    };
    let url = config.endpoint_url.as_str();
    let endpoints = tokio::select! {
        r = tokio::time::timeout(timeout, client.get_server_endpoints_from_url(url)) => match r {
            Ok(Ok(endpoints)) => endpoints,
            Ok(Err(e)) => return lost("connect", format!("{url}: {e}"), false),
            Err(_) => return lost("timeout", format!("{url}: no answer to GetEndpoints"), false),
        },
        () = shutdown.cancelled() => return Ended::Shutdown,
    };
    let Some(mut endpoint) = Client::find_matching_endpoint(&endpoints, url, policy, mode) else {
        return lost(
            "connect",
            format!("{url} offers no endpoint with security policy {policy} and mode {mode:?}"),
            false,
        );
    };
    // Connect where configured: a server behind a port forward or a gateway
    // advertises its own address, which may not be reachable from here.
    endpoint.endpoint_url = url.into();
    let (session, event_loop) = match client.connect_to_endpoint_directly(endpoint, identity) {
        Ok(pair) => pair,
        Err(e) => return lost("connect", format!("{url}: {e}"), false),
    };
    session.disable_reconnects();
    let (event_tx, mut events) = mpsc::unbounded_channel();
    let poller = tokio::spawn(async move {
        let stream = event_loop.enter();
        tokio::pin!(stream);
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(SessionPollResult::Reconnected(_)) => SessionEvent::Connected,
                Ok(SessionPollResult::ConnectionLost(code)) => {
                    SessionEvent::Lost(format!("connection lost: {code}"))
                }
                Ok(SessionPollResult::ReconnectFailed(code)) => {
                    SessionEvent::Lost(format!("connect failed: {code}"))
                }
                Ok(_) => continue,
                Err(code) => SessionEvent::Lost(format!("session ended: {code}")),
            };
            if event_tx.send(event).is_err() {
                return;
            }
        }
        let _ = event_tx.send(SessionEvent::Lost("session closed".into()));
    });
    // The poller dies with this session, whichever way it ends.
    let _abort_poller = AbortOnDrop(poller);

    match tokio::time::timeout(timeout, events.recv()).await {
        Ok(Some(SessionEvent::Connected)) => {}
        Ok(Some(SessionEvent::Lost(reason))) => return lost("connect", reason, false),
        Ok(None) => return lost("connect", "session closed", false),
        Err(_) => return lost("timeout", "no session within the request timeout", false),
    }

    let (data_tx, mut data) = mpsc::unbounded_channel::<Changes>();
    let subscribe = async {
        let id = session
            .create_subscription(
                Duration::from_millis(config.publishing_interval_ms),
                // Lifetime and keep-alive counts, in publishing intervals.
                (3 * keep_alive_count(config)).max(30),
                keep_alive_count(config),
                0,
                0,
                true,
                Forwarder(data_tx),
            )
            .await?;
        let mut failed = Vec::new();
        let requests: Vec<MonitoredItemCreateRequest> = prepared
            .iter()
            .enumerate()
            .map(|(i, p)| create_request(i, p))
            .collect();
        let mut offset = 0;
        for chunk in requests.chunks(ITEMS_PER_REQUEST) {
            let results = session
                .create_monitored_items(id, TimestampsToReturn::Both, chunk.to_vec())
                .await?;
            for (i, result) in results.iter().enumerate() {
                if !result.result.status_code.is_good() {
                    failed.push((offset + i, result.result.status_code));
                }
            }
            offset += chunk.len();
        }
        Ok::<_, ::opcua::types::Error>(failed)
    };
    let failed = tokio::select! {
        r = tokio::time::timeout(timeout * 4, subscribe) => match r {
            Ok(Ok(failed)) => failed,
            Ok(Err(e)) => return lost("subscribe", format!("subscription: {e}"), false),
            Err(_) => return lost("timeout", "subscription not created within the request timeout", false),
        },
        event = events.recv() => return lost("connect", match event {
            Some(SessionEvent::Lost(reason)) => reason,
            _ => "session closed".into(),
        }, false),
        () = shutdown.cancelled() => return Ended::Shutdown,
    };
    // Some servers (and the library after a reconnect) wait for a first
    // Publish before sending anything.
    session.trigger_publish_now();
    for (i, code) in &failed {
        status.error("bad_node");
        tracing::warn!(
            "{source}: item {} refused: {code}",
            prepared[*i].item.node_id
        );
    }
    status.update(|s| {
        s.link = if failed.is_empty() {
            LinkState::Connected
        } else {
            LinkState::Degraded {
                failing: failed.len(),
                total: prepared.len(),
            }
        }
    });

    loop {
        tokio::select! {
            changes = data.recv() => {
                let Some(changes) = changes else {
                    return lost("subscription", "subscription ended", true);
                };
                deliver(changes, config, prepared, source, output, status, gaps).await;
            }
            event = events.recv() => {
                // Changes that arrived before the loss are still good.
                while let Ok(changes) = data.try_recv() {
                    deliver(changes, config, prepared, source, output, status, gaps).await;
                }
                let reason = match event {
                    Some(SessionEvent::Lost(reason)) => reason,
                    Some(SessionEvent::Connected) => continue,
                    None => "session closed".into(),
                };
                return lost("disconnect", reason, true);
            }
            () = shutdown.cancelled() => {
                while let Ok(changes) = data.try_recv() {
                    deliver(changes, config, prepared, source, output, status, gaps).await;
                }
                let _ = tokio::time::timeout(timeout, session.disconnect()).await;
                return Ended::Shutdown;
            }
        }
    }
}

/// Keep-alive messages are due every this many publishing intervals: about
/// every keep-alive interval of the config.
fn keep_alive_count(config: &OpcUaConfig) -> u32 {
    (config.keep_alive_interval_ms / config.publishing_interval_ms).clamp(1, 1_000) as u32
}

fn create_request(index: usize, prepared: &Prepared) -> MonitoredItemCreateRequest {
    let item = &prepared.item;
    let filter = match item.deadband {
        Deadband::None => ExtensionObject::null(),
        Deadband::Absolute { value } => ExtensionObject::from_message(DataChangeFilter {
            trigger: DataChangeTrigger::StatusValue,
            deadband_type: DeadbandType::Absolute as u32,
            deadband_value: value,
        }),
        Deadband::Percent { value } => ExtensionObject::from_message(DataChangeFilter {
            trigger: DataChangeTrigger::StatusValue,
            deadband_type: DeadbandType::Percent as u32,
            deadband_value: value,
        }),
    };
    MonitoredItemCreateRequest::new(
        ReadValueId::from(prepared.node.clone()),
        MonitoringMode::Reporting,
        MonitoringParameters {
            client_handle: index as u32 + 1,
            sampling_interval: item.sampling_interval_ms,
            filter,
            queue_size: item.queue_size,
            discard_oldest: true,
        },
    )
}

async fn deliver(
    changes: Changes,
    config: &OpcUaConfig,
    prepared: &[Prepared],
    source: &Arc<str>,
    output: &Output,
    status: &StatusHandle,
    gaps: &mut GapTracker,
) {
    let now = now_ms();
    let mut readings = Vec::with_capacity(changes.len());
    let mut non_finite = 0u64;
    let mut not_numeric = 0u64;
    for (handle, value) in changes {
        let Some(item) = (handle as usize)
            .checked_sub(1)
            .and_then(|i| prepared.get(i))
        else {
            continue;
        };
        match to_reading(item, value, config.timestamps, now, source) {
            Converted::Reading(reading) => readings.push(reading),
            Converted::NonFinite => non_finite += 1,
            Converted::NotNumeric => not_numeric += 1,
        }
    }
    if gaps.in_gap {
        if let Some(from) = gaps.last_success_ms {
            status.gap("connection".into(), from, now);
        }
        gaps.in_gap = false;
    }
    gaps.last_success_ms = Some(now);
    status.update(|s| {
        s.last_success_ms = Some(now);
        if non_finite > 0 {
            *s.errors.entry("non_finite".into()).or_default() += non_finite;
        }
        if not_numeric > 0 {
            *s.errors.entry("not_numeric".into()).or_default() += not_numeric;
        }
    });
    if !readings.is_empty() {
        output.send(readings).await;
    }
}

enum Converted {
    Reading(Reading),
    NonFinite,
    NotNumeric,
}

/// The quality an OPC UA status means.
pub fn quality_of(status: StatusCode) -> Quality {
    if status.is_good() {
        Quality::Good
    } else if status.is_uncertain() {
        Quality::Uncertain
    } else {
        Quality::Bad
    }
}

fn to_reading(
    item: &Prepared,
    value: DataValue,
    timestamps: TimestampSource,
    now_ms: i64,
    source: &Arc<str>,
) -> Converted {
    let quality = quality_of(value.status.unwrap_or(StatusCode::Good));
    let (first, second) = match timestamps {
        TimestampSource::Source => (value.source_timestamp, value.server_timestamp),
        TimestampSource::Server => (value.server_timestamp, value.source_timestamp),
    };
    let ts_ms = first
        .or(second)
        .filter(|t| !t.is_null())
        .map_or(now_ms, |t| t.as_chrono().timestamp_millis());
    let raw = value.value.as_ref().and_then(|v| v.as_f64());
    let value = match raw {
        Some(raw) if raw.is_finite() => raw * item.item.scale + item.item.offset,
        Some(_) => return Converted::NonFinite,
        None if quality == Quality::Bad => 0.0,
        None => return Converted::NotNumeric,
    };
    Converted::Reading(Reading {
        ts_ms,
        asset: item.asset.clone(),
        quantity: item.quantity,
        value,
        quality,
        source: source.clone(),
    })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::opcua::types::{DateTime, Variant};

    fn item() -> Prepared {
        Prepared {
            node: NodeId::new(2, "F_1.p_kw"),
            asset: Arc::from("F_1"),
            quantity: Quantity::PKw,
            item: OpcUaItem {
                node_id: "ns=2;s=F_1.p_kw".into(),
                sampling_interval_ms: 1_000.0,
                queue_size: 10,
                deadband: Deadband::None,
                scale: 1_000.0,
                offset: 0.5,
                asset: "F_1".into(),
                quantity: "p_kw".into(),
            },
        }
    }

    fn value(v: Option<Variant>, status: StatusCode, source_ms: Option<i64>) -> DataValue {
        DataValue {
            value: v,
            status: Some(status),
            source_timestamp: source_ms
                .map(|ms| DateTime::from(chrono::DateTime::from_timestamp_millis(ms).unwrap())),
            source_picoseconds: None,
            server_timestamp: Some(DateTime::from(
                chrono::DateTime::from_timestamp_millis(9_000).unwrap(),
            )),
            server_picoseconds: None,
        }
    }

    #[test]
    fn values_scale_stamp_and_keep_their_quality() {
        let source: Arc<str> = Arc::from("scada");
        let item = item();
        let good = value(Some(Variant::Float(1.5)), StatusCode::Good, Some(5_000));
        let Converted::Reading(r) =
            to_reading(&item, good.clone(), TimestampSource::Source, 1, &source)
        else {
            panic!("a good float is a reading")
        };
        assert_eq!(
            (r.ts_ms, r.value, r.quality),
            (5_000, 1_500.5, Quality::Good)
        );
        let Converted::Reading(r) = to_reading(&item, good, TimestampSource::Server, 1, &source)
        else {
            panic!()
        };
        assert_eq!(r.ts_ms, 9_000);
        let uncertain = value(
            Some(Variant::Int32(2)),
            StatusCode::UncertainLastUsableValue,
            None,
        );
        let Converted::Reading(r) =
            to_reading(&item, uncertain, TimestampSource::Source, 1, &source)
        else {
            panic!()
        };
        assert_eq!(
            (r.ts_ms, r.value, r.quality),
            (9_000, 2_000.5, Quality::Uncertain)
        );
        let bad = value(None, StatusCode::BadSensorFailure, Some(7_000));
        let Converted::Reading(r) = to_reading(&item, bad, TimestampSource::Source, 1, &source)
        else {
            panic!("a bad value is stored, not dropped")
        };
        assert_eq!((r.ts_ms, r.value, r.quality), (7_000, 0.0, Quality::Bad));
        let nan = value(Some(Variant::Double(f64::NAN)), StatusCode::Good, None);
        assert!(matches!(
            to_reading(&item, nan, TimestampSource::Source, 1, &source),
            Converted::NonFinite
        ));
        let text = value(Some(Variant::from("on")), StatusCode::Good, None);
        assert!(matches!(
            to_reading(&item, text, TimestampSource::Source, 1, &source),
            Converted::NotNumeric
        ));
    }
}
