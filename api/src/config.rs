//! The service's settings: defaults, then the TOML file, then `HEADROOM_...`
//! environment variables (nested keys joined by `__`, e.g.
//! `HEADROOM_HTTP__REQUEST_TIMEOUT_MS=5000`), then validated. The documented
//! example is `headroom.example.toml` at the repository's root.

use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use headroom_engine::EngineConfig;
use headroom_store::StoreConfig;
use serde::{Deserialize, Serialize};

use crate::auth::TokenConfig;
use crate::error::{Error, Result};

/// Prefix of the environment variables that override settings.
pub const ENV_PREFIX: &str = "HEADROOM_";

/// Everything the service can be told.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// Address the API and the capacity map listen on.
    pub listen: String,
    /// The store's data folder (or `s3://bucket/prefix`); the ledger's SQLite
    /// database lives here too unless `database_url` names another.
    pub data_dir: String,
    /// The ledger's database: `postgres://user:pass@host/db` or
    /// `sqlite://path`; default `sqlite://<data_dir>/ledger.db`.
    pub database_url: Option<String>,
    /// Bearer tokens and their roles, kept as SHA-256 hashes
    /// (`headroom token ROLE` makes one).
    pub tokens: Vec<TokenConfig>,
    /// HTTP limits.
    pub http: HttpConfig,
    /// The reservations ledger.
    pub ledger: LedgerConfig,
    /// How readings feed the engine.
    pub readings: ReadingsConfig,
    /// The capacity map's colours and staleness.
    pub map: MapConfig,
    /// The engine's limits, search radii and weights.
    pub engine: EngineConfig,
    /// The readings store.
    pub store: StoreConfig,
    /// Files across isolation devices: applications in, answers out.
    pub relay: crate::relay::RelayConfig,
    /// SQL over the flushed history (`GET /v1/history`).
    pub history: HistoryConfig,
    /// Field connectors, `[[connector]]` tables: parsed and validated against
    /// the network by the connectors crate when the service starts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connector: Vec<toml::Table>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            listen: Self::default_listen().to_owned(),
            data_dir: "./headroom-data".to_owned(),
            database_url: None,
            tokens: Vec::new(),
            http: HttpConfig::default(),
            ledger: LedgerConfig::default(),
            readings: ReadingsConfig::default(),
            map: MapConfig::default(),
            engine: EngineConfig::default(),
            store: StoreConfig::default(),
            relay: crate::relay::RelayConfig::default(),
            history: HistoryConfig::default(),
            connector: Vec::new(),
        }
    }
}

/// HTTP limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest request body, bytes (a network or a readings batch).
    pub body_limit_bytes: usize,
    /// Longest a request may take before it is answered 503, ms.
    pub request_timeout_ms: u64,
}

impl HttpConfig {
    /// Default body limit: a city's network.geojson fits.
    pub const fn default_body_limit_bytes() -> usize {
        256 << 20
    }

    /// Default request timeout, ms.
    pub const fn default_request_timeout_ms() -> u64 {
        30_000
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit_bytes: Self::default_body_limit_bytes(),
            request_timeout_ms: Self::default_request_timeout_ms(),
        }
    }
}

/// The reservations ledger.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerConfig {
    /// A reservation is released this long after it was made, days.
    pub reservation_ttl_days: f64,
    /// How often expired reservations are released, seconds.
    pub expiry_check_interval_s: u64,
    /// How often every reserved scheme is checked against the latest readings
    /// and network, seconds.
    pub fit_check_interval_s: u64,
    /// Database connections.
    pub max_connections: u32,
}

impl LedgerConfig {
    /// Default reservation lifetime, days.
    pub const fn default_reservation_ttl_days() -> f64 {
        180.0
    }
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            reservation_ttl_days: Self::default_reservation_ttl_days(),
            expiry_check_interval_s: 60,
            fit_check_interval_s: 300,
            max_connections: 8,
        }
    }
}

/// How readings feed the engine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReadingsConfig {
    /// Days of readings the engine judges, back from the latest.
    pub window_days: i64,
    /// How often the engine takes the readings that arrived, seconds.
    pub refresh_interval_s: u64,
}

impl Default for ReadingsConfig {
    fn default() -> Self {
        Self {
            window_days: 14,
            refresh_interval_s: 60,
        }
    }
}

/// The capacity map's colours and staleness.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MapConfig {
    /// Loading from which an asset is drawn amber, %.
    pub amber_loading_pct: f64,
    /// Loading from which an asset is drawn red, %.
    pub red_loading_pct: f64,
    /// Readings older than this make an asset grey, seconds.
    pub stale_after_s: f64,
}

impl Default for MapConfig {
    fn default() -> Self {
        Self {
            amber_loading_pct: 70.0,
            red_loading_pct: 90.0,
            stale_after_s: 3_600.0,
        }
    }
}

impl ServiceConfig {
    /// The default listen address.
    pub const fn default_listen() -> &'static str {
        "127.0.0.1:8080"
    }

    /// Defaults, then `file` (when given), then the environment; validated.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let text = match file {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                Error::config(path.display().to_string(), format!("cannot be read: {e}"))
            })?),
            None => None,
        };
        Self::load_from(text.as_deref(), std::env::vars())
    }

    /// [`ServiceConfig::load`] from TOML text and environment variables.
    pub fn load_from(
        toml_text: Option<&str>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(ServiceConfig::default()));
        if let Some(text) = toml_text {
            figment = figment.merge(Toml::string(text));
        }
        // Only variables naming a setting: HEADROOM_WAL_DIR and the test
        // suite's HEADROOM_* variables belong to others.
        let known = Self::top_level_keys();
        let env: Vec<(String, String)> = env
            .into_iter()
            .filter_map(|(key, value)| {
                let rest = key.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase();
                let top = rest.split("__").next().unwrap_or_default().to_owned();
                known.contains(&top).then_some((rest, value))
            })
            .collect();
        for (key, value) in env {
            // Parsed as figment parses environment values (numbers, booleans,
            // arrays, inline tables); anything else is a string.
            let value: figment::value::Value = value
                .parse::<figment::value::Value>()
                .unwrap_or_else(|_| figment::value::Value::from(value.clone()));
            let nested = key.split("__").collect::<Vec<_>>().join(".");
            figment = figment.merge((nested, value));
        }
        let config: ServiceConfig = figment.extract().map_err(|e| {
            let field = e.path.join(".");
            Error::config(
                if field.is_empty() {
                    "config".to_owned()
                } else {
                    field
                },
                e.kind.to_string(),
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    fn top_level_keys() -> Vec<String> {
        [
            "listen",
            "data_dir",
            "database_url",
            "tokens",
            "http",
            "ledger",
            "readings",
            "map",
            "engine",
            "store",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// Checks every setting; errors name it.
    pub fn validate(&self) -> Result<()> {
        self.listen.parse::<SocketAddr>().map_err(|e| {
            Error::config(
                "listen",
                format!("`{}` is not an address: {e}", self.listen),
            )
        })?;
        if self.data_dir.trim().is_empty() {
            return Err(Error::config("data_dir", "is empty"));
        }
        if let Some(url) = &self.database_url
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
        {
            return Err(Error::config(
                "database_url",
                "must start with sqlite:, postgres:// or postgresql://",
            ));
        }
        for (i, token) in self.tokens.iter().enumerate() {
            if token.sha256.len() != 64 || hex::decode(&token.sha256).is_err() {
                return Err(Error::config(
                    format!("tokens[{i}].sha256"),
                    "must be 64 hex digits (the SHA-256 that `headroom token ROLE` prints)",
                ));
            }
            if token.name.trim().is_empty() {
                return Err(Error::config(format!("tokens[{i}].name"), "is empty"));
            }
        }
        if self.http.body_limit_bytes == 0 {
            return Err(Error::config("http.body_limit_bytes", "must be above 0"));
        }
        if self.http.request_timeout_ms == 0 {
            return Err(Error::config("http.request_timeout_ms", "must be above 0"));
        }
        let ttl = self.ledger.reservation_ttl_days;
        if !(ttl.is_finite() && ttl > 0.0) {
            return Err(Error::config(
                "ledger.reservation_ttl_days",
                "must be a positive number of days",
            ));
        }
        if self.ledger.expiry_check_interval_s == 0 {
            return Err(Error::config(
                "ledger.expiry_check_interval_s",
                "must be above 0",
            ));
        }
        if self.ledger.fit_check_interval_s == 0 {
            return Err(Error::config(
                "ledger.fit_check_interval_s",
                "must be above 0",
            ));
        }
        if self.ledger.max_connections == 0 {
            return Err(Error::config("ledger.max_connections", "must be above 0"));
        }
        if self.readings.window_days <= 0 {
            return Err(Error::config("readings.window_days", "must be above 0"));
        }
        if self.readings.refresh_interval_s == 0 {
            return Err(Error::config(
                "readings.refresh_interval_s",
                "must be above 0",
            ));
        }
        let map = &self.map;
        if !(map.amber_loading_pct > 0.0 && map.amber_loading_pct < map.red_loading_pct) {
            return Err(Error::config(
                "map.amber_loading_pct",
                "must be above 0 and below map.red_loading_pct",
            ));
        }
        if !(map.stale_after_s.is_finite() && map.stale_after_s > 0.0) {
            return Err(Error::config("map.stale_after_s", "must be above 0"));
        }
        let limits = &self.engine.limits;
        for (field, value) in [
            ("engine.limits.thermal_pct", limits.thermal_pct),
            (
                "engine.limits.substation_transformer_pct",
                limits.substation_transformer_pct,
            ),
            ("engine.limits.transformer_pct", limits.transformer_pct),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(Error::config(field, "must be a positive percentage"));
            }
        }
        let n1 = &self.engine.n1;
        for (field, value) in [
            ("engine.n1.thermal_pct", n1.thermal_pct),
            (
                "engine.n1.transformer_overload_pct",
                n1.transformer_overload_pct,
            ),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(Error::config(field, "must be a positive percentage"));
            }
        }
        if !(n1.v_min_pu.is_finite()
            && n1.v_max_pu.is_finite()
            && n1.v_min_pu > 0.0
            && n1.v_min_pu < 1.0
            && n1.v_max_pu > 1.0)
        {
            return Err(Error::config(
                "engine.n1.v_min_pu",
                "must lie between 0 and 1, with engine.n1.v_max_pu above 1",
            ));
        }
        let engine = &self.engine;
        if !(engine.route_factor.is_finite() && engine.route_factor >= 1.0) {
            return Err(Error::config(
                "engine.route_factor",
                "must be at least 1 (a route is never shorter than the straight line)",
            ));
        }
        for (i, c) in engine.conductors.iter().enumerate() {
            for (field, value) in [
                ("rated_a", c.rated_a),
                ("r_ohm_per_km", c.r_ohm_per_km),
                ("x_ohm_per_km", c.x_ohm_per_km),
                ("cost_per_km", c.cost_per_km),
            ] {
                let positive = field == "rated_a" || field == "r_ohm_per_km";
                if !(value.is_finite() && (value > 0.0 || (!positive && value == 0.0))) {
                    return Err(Error::config(
                        format!("engine.conductors[{i}].{field}"),
                        if positive {
                            "must be above 0"
                        } else {
                            "must be 0 or above"
                        },
                    ));
                }
            }
        }
        let costs = &engine.connection_costs;
        for (field, value) in [
            (
                "engine.connection_costs.substation_bay",
                costs.substation_bay,
            ),
            (
                "engine.connection_costs.switchgear_bay",
                costs.switchgear_bay,
            ),
            ("engine.connection_costs.tee", costs.tee),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(Error::config(field, "must be 0 or above"));
            }
        }
        if !(limits.v_min_pu < 1.0 && limits.v_max_pu > 1.0 && limits.v_min_pu > 0.0) {
            return Err(Error::config(
                "engine.limits.v_min_pu",
                "must be between 0 and 1, with v_max_pu above 1",
            ));
        }
        self.validate_history()
    }

    fn validate_history(&self) -> Result<()> {
        if let Some(url) = &self.history.cluster {
            headroom_history::parse_cluster_url(url)
                .map_err(|e| Error::config("history.cluster", e.to_string()))?;
        }
        if self.history.max_rows == 0 {
            return Err(Error::config("history.max_rows", "must be above 0"));
        }
        if self.history.timeout_s == 0 {
            return Err(Error::config("history.timeout_s", "must be above 0"));
        }
        // A query still reading a day file that a flush replaced would lose
        // the day if the file went first.
        if self.store.superseded_files_kept_s <= self.history.timeout_s {
            return Err(Error::config(
                "store.superseded_files_kept_s",
                format!(
                    "must be longer than history.timeout_s ({} s): a history query \
                     may still be reading a day file a flush has replaced",
                    self.history.timeout_s
                ),
            ));
        }
        Ok(())
    }

    /// The ledger's database URL.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}/ledger.db?mode=rwc",
                self.data_dir.trim_end_matches('/')
            ),
        }
    }
}

/// `[history]`: where `GET /v1/history` runs its queries, and their limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// A Ballista scheduler, `df://host:port`; without one, queries run in
    /// this process over the same files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Rows an answer may hold; a query past them gets 400.
    pub max_rows: usize,
    /// Longest a query may run, s; past it, 400.
    pub timeout_s: u64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            cluster: None,
            max_rows: 10_000,
            timeout_s: 60,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn example() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../headroom.example.toml"
        ))
        .unwrap()
    }

    #[test]
    fn the_example_config_loads_and_round_trips() {
        let config = ServiceConfig::load_from(Some(&example()), Vec::new()).unwrap();
        assert_eq!(config.tokens.len(), 1);
        assert_eq!(config.tokens[0].role, Role::Workflow);
        assert_eq!(config.connector.len(), 1);
        assert_eq!(config.ledger.reservation_ttl_days, 180.0);
        // The example documents the defaults, with the source of each figure.
        assert_eq!(
            config.engine.conductors,
            headroom_engine::Conductor::default_catalogue()
        );
        assert_eq!(
            config.engine.connection_costs,
            headroom_engine::ConnectionCosts::default()
        );
        assert_eq!(
            config.engine.route_factor,
            EngineConfig::default().route_factor
        );
        assert_eq!(config.engine.n1, headroom_engine::N1Config::default());
        assert_eq!(
            config.engine.feeder_cache_bytes,
            EngineConfig::default().feeder_cache_bytes
        );
        let text = toml::to_string(&config).unwrap();
        let again = ServiceConfig::load_from(Some(&text), Vec::new()).unwrap();
        assert_eq!(again, config);
    }

    #[test]
    fn environment_variables_override_the_file_and_others_are_ignored() {
        let env = [
            ("HEADROOM_LISTEN", "127.0.0.1:0"),
            ("HEADROOM_HTTP__REQUEST_TIMEOUT_MS", "5000"),
            ("HEADROOM_ENGINE__LIMITS__V_MIN_PU", "0.95"),
            ("HEADROOM_WAL_DIR", "/somewhere"),
            ("HEADROOM_MOTO_SERVER", "/bin/true"),
            ("PATH", "/usr/bin"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let config = ServiceConfig::load_from(Some(&example()), env).unwrap();
        assert_eq!(config.listen, "127.0.0.1:0");
        assert_eq!(config.http.request_timeout_ms, 5000);
        assert_eq!(config.engine.limits.v_min_pu, 0.95);
        assert_eq!(
            config.readings.window_days, 14,
            "untouched settings keep the file's"
        );
    }

    #[test]
    fn a_bad_setting_is_named() {
        for (text, env, field) in [
            ("listen = \"nowhere\"", vec![], "listen"),
            (
                "[http]\nrequest_timeout_ms = 0",
                vec![],
                "http.request_timeout_ms",
            ),
            (
                "[map]\namber_loading_pct = 95.0",
                vec![],
                "map.amber_loading_pct",
            ),
            (
                "[[tokens]]\nname = \"x\"\nrole = \"viewer\"\nsha256 = \"abc\"",
                vec![],
                "tokens[0].sha256",
            ),
            (
                "[[tokens]]\nname = \"x\"\nrole = \"king\"\nsha256 = \"abc\"",
                vec![],
                "tokens",
            ),
            ("colour = \"red\"", vec![], "colour"),
            (
                "",
                vec![("HEADROOM_LEDGER__RESERVATION_TTL_DAYS", "-1")],
                "ledger.reservation_ttl_days",
            ),
            ("database_url = \"mysql://x\"", vec![], "database_url"),
            (
                "[engine]\nroute_factor = 0.5",
                vec![],
                "engine.route_factor",
            ),
            (
                "[engine.n1]\nthermal_pct = -5.0",
                vec![],
                "engine.n1.thermal_pct",
            ),
            ("[engine.n1]\nv_min_pu = 1.2", vec![], "engine.n1.v_min_pu"),
            ("[engine.n1]\nmode = \"strict\"", vec![], "engine.n1.mode"),
            (
                "[[engine.conductors]]\nname = \"c\"\nkind = \"cable\"\nrated_a = 0.0\n\
                 r_ohm_per_km = 0.1\nx_ohm_per_km = 0.1\ncost_per_km = 1.0",
                vec![],
                "engine.conductors[0].rated_a",
            ),
            (
                "[engine.connection_costs]\ntee = -1.0",
                vec![],
                "engine.connection_costs.tee",
            ),
            (
                "[history]\ncluster = \"http://10.0.0.5:50050\"",
                vec![],
                "history.cluster",
            ),
            ("[history]\nmax_rows = 0", vec![], "history.max_rows"),
            (
                "[history]\ntimeout_s = 1800",
                vec![],
                "store.superseded_files_kept_s",
            ),
        ] {
            let env = env
                .into_iter()
                .map(|(k, v): (&str, &str)| (k.to_owned(), v.to_owned()));
            let error = ServiceConfig::load_from(Some(text), env).unwrap_err();
            let Error::Config {
                field: named,
                message,
            } = &error
            else {
                panic!("{text}: {error}");
            };
            assert!(
                named.starts_with(field),
                "{text}: named `{named}` ({message}), expected {field}"
            );
        }
    }
}
