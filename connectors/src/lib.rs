//! Field connectors of Headroom: SCADA feeder-head measurements over OPC UA,
//! distribution-transformer monitoring terminals over Modbus TCP and the
//! metering system's 15-minute interval files. Each connector writes through a
//! [`ReadingSink`] and reports its state and counters.
//!
//! **Data model.** A connector turns what its source says into
//! [`Reading`](headroom_readings::Reading)s: a timestamp, an asset id of
//! the network (feeder, transformer or substation transformer), a quantity, a
//! value, a quality (good, uncertain, bad) and the connector's name as source.
//! Readings go through an [`Output`] queue that coalesces batches, waits for
//! the store's durability and holds readings while the store is away.
//!
//! **Configuration.** The service's TOML config lists connectors as
//! `[[connector]]` tables with a `name` and a `type` (`opcua`, `modbus`,
//! `meter_files`, `relay_inbox`); see `connectors.example.toml` beside this crate. Each
//! connector is validated against the network before it starts, and errors
//! name the field (`connector[1].devices[0].points[3].address`).
//!
//! **Running.** [`ConnectorConfig::spawn`] starts a connector on the current
//! tokio runtime from a [`ConnectorContext`] (the sink, the network's asset
//! ids, a shutdown token and the status registry); it stops by itself at
//! shutdown.

pub mod error;
#[cfg(feature = "meter-files")]
pub mod meter_files;
#[cfg(feature = "modbus")]
pub mod modbus;
#[cfg(feature = "opcua")]
pub mod opcua;
pub mod output;
#[cfg(feature = "relay-inbox")]
pub mod relay_inbox;
pub mod status;

use std::collections::BTreeSet;
use std::sync::Arc;

use headroom_readings::ReadingSink;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};
pub use output::{Backoff, Output};
pub use status::{ConnectorStatus, LinkState, StatusHandle, StatusRegistry};

// Defaults shared by the connectors' configs.
/// First retry delay after a failure, ms.
pub(crate) const fn default_retry_min_ms() -> u64 {
    1_000
}
/// Longest retry delay, ms.
pub(crate) const fn default_retry_max_ms() -> u64 {
    60_000
}
/// A value's scale: as read.
pub(crate) const fn default_scale() -> f64 {
    1.0
}

/// Checks what a point or item measures (`at` is its path in the config):
/// scale and offset finite (scale not 0), an asset of the network, a quantity.
pub(crate) fn validate_mapping(
    at: &str,
    asset: &str,
    quantity: &str,
    scale: f64,
    offset: f64,
    known_asset: &dyn Fn(&str) -> bool,
) -> Result<()> {
    if !(scale.is_finite() && offset.is_finite()) || scale == 0.0 {
        return Err(Error::config(
            format!("{at}.scale"),
            "scale and offset must be finite, scale not 0",
        ));
    }
    if asset.trim().is_empty() {
        return Err(Error::config(format!("{at}.asset"), "is missing"));
    }
    if !known_asset(asset) {
        return Err(Error::config(
            format!("{at}.asset"),
            format!("`{asset}` is not a measurable asset of the network"),
        ));
    }
    headroom_geodata::LineRules::GRIDPACK
        .quantity(quantity)
        .map_err(|e| Error::config(format!("{at}.quantity"), e.message))?;
    Ok(())
}

/// One `[[connector]]` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ConnectorConfig {
    /// A SCADA server's feeder-head measurements over OPC UA.
    #[cfg(feature = "opcua")]
    Opcua(opcua::OpcUaConfig),
    /// Monitoring terminals behind a Modbus TCP gateway.
    #[cfg(feature = "modbus")]
    Modbus(modbus::ModbusConfig),
    /// A drop folder of metering files.
    #[cfg(feature = "meter-files")]
    MeterFiles(meter_files::MeterFilesConfig),
    /// A folder an isolation device delivers signed readings files into.
    #[cfg(feature = "relay-inbox")]
    RelayInbox(relay_inbox::RelayInboxConfig),
}

/// The connectors of a config file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorsConfig {
    /// Every `[[connector]]` table.
    #[serde(default)]
    pub connector: Vec<ConnectorConfig>,
}

impl ConnectorsConfig {
    /// Parses TOML (not yet validated against a network).
    pub fn from_toml(text: &str) -> Result<Self> {
        Ok(toml::from_str(text)?)
    }

    /// Checks every connector; `known_asset` tells whether the network has a
    /// measurable asset of that id.
    pub fn validate(&self, known_asset: &dyn Fn(&str) -> bool) -> Result<()> {
        let mut names = BTreeSet::new();
        for (i, connector) in self.connector.iter().enumerate() {
            let field = format!("connector[{i}]");
            let name = connector.name();
            if name.trim().is_empty() {
                return Err(Error::config(format!("{field}.name"), "is empty"));
            }
            if !names.insert(name) {
                return Err(Error::config(
                    format!("{field}.name"),
                    format!("`{name}` names another connector too"),
                ));
            }
            connector.validate(&field, known_asset)?;
        }
        Ok(())
    }
}

/// What a running connector needs from the service.
#[derive(Clone)]
pub struct ConnectorContext {
    /// Where readings go.
    pub sink: Arc<dyn ReadingSink>,
    /// Whether the network has a measurable asset of an id.
    pub known_asset: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    /// Stops every connector.
    pub shutdown: CancellationToken,
    /// Where connectors report their status.
    pub registry: StatusRegistry,
}

/// A started connector.
#[derive(Debug)]
pub struct RunningConnector {
    /// Its status, as it reports it.
    pub status: StatusHandle,
    /// Ends after shutdown, once its readings are handed to the store.
    pub task: tokio::task::JoinHandle<()>,
}

impl ConnectorConfig {
    /// The connector's name.
    pub fn name(&self) -> &str {
        match self {
            #[cfg(feature = "opcua")]
            ConnectorConfig::Opcua(config) => &config.name,
            #[cfg(feature = "modbus")]
            ConnectorConfig::Modbus(config) => &config.name,
            #[cfg(feature = "meter-files")]
            ConnectorConfig::MeterFiles(config) => &config.name,
            #[cfg(feature = "relay-inbox")]
            ConnectorConfig::RelayInbox(config) => &config.name,
        }
    }

    /// The `type` in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            #[cfg(feature = "opcua")]
            ConnectorConfig::Opcua(_) => "opcua",
            #[cfg(feature = "modbus")]
            ConnectorConfig::Modbus(_) => "modbus",
            #[cfg(feature = "meter-files")]
            ConnectorConfig::MeterFiles(_) => "meter_files",
            #[cfg(feature = "relay-inbox")]
            ConnectorConfig::RelayInbox(_) => "relay_inbox",
        }
    }

    /// Checks the connector's settings; `field` is its path in the config.
    pub fn validate(&self, field: &str, known_asset: &dyn Fn(&str) -> bool) -> Result<()> {
        match self {
            #[cfg(feature = "opcua")]
            ConnectorConfig::Opcua(config) => config.validate(field, known_asset),
            #[cfg(feature = "modbus")]
            ConnectorConfig::Modbus(config) => config.validate(field, known_asset),
            #[cfg(feature = "meter-files")]
            ConnectorConfig::MeterFiles(config) => config.validate(field, known_asset),
            // Its readings' assets are the store's to check, row by row.
            #[cfg(feature = "relay-inbox")]
            ConnectorConfig::RelayInbox(config) => config.validate(field),
        }
    }

    fn points(&self) -> usize {
        match self {
            #[cfg(feature = "opcua")]
            ConnectorConfig::Opcua(config) => config.items.len(),
            #[cfg(feature = "modbus")]
            ConnectorConfig::Modbus(config) => config.point_count(),
            #[cfg(feature = "meter-files")]
            ConnectorConfig::MeterFiles(config) => config.meters.len(),
            #[cfg(feature = "relay-inbox")]
            ConnectorConfig::RelayInbox(config) => config.streams.len(),
        }
    }

    /// Validates and starts the connector on the current tokio runtime.
    pub fn spawn(&self, context: &ConnectorContext) -> Result<RunningConnector> {
        self.validate(
            &format!("connector `{}`", self.name()),
            &*context.known_asset,
        )?;
        let status = StatusHandle::new(self.name(), self.kind(), self.points());
        context.registry.register(status.clone());
        let shutdown = context.shutdown.clone();
        let (output, forwarder) =
            Output::start(context.sink.clone(), status.clone(), shutdown.clone());
        let name = self.name().to_owned();
        let run: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = match self {
            #[cfg(feature = "opcua")]
            ConnectorConfig::Opcua(config) => Box::pin(opcua::run(
                name,
                config.clone(),
                output,
                status.clone(),
                shutdown,
            )),
            #[cfg(feature = "modbus")]
            ConnectorConfig::Modbus(config) => Box::pin(modbus::run(
                name,
                config.clone(),
                output,
                status.clone(),
                shutdown,
            )),
            #[cfg(feature = "meter-files")]
            ConnectorConfig::MeterFiles(config) => Box::pin(meter_files::run(
                name,
                config.clone(),
                context.known_asset.clone(),
                output,
                status.clone(),
                shutdown,
            )),
            #[cfg(feature = "relay-inbox")]
            ConnectorConfig::RelayInbox(config) => Box::pin(relay_inbox::run(
                config.clone(),
                output,
                status.clone(),
                shutdown,
            )),
        };
        let task = tokio::spawn(async move {
            run.await;
            // The output's last clone went with `run`: the forwarder drains.
            let _ = forwarder.await;
        });
        Ok(RunningConnector { status, task })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../connectors.example.toml");

    #[test]
    fn the_example_config_round_trips_and_validates() {
        let config = ConnectorsConfig::from_toml(EXAMPLE).unwrap();
        assert_eq!(config.connector.len(), 3);
        assert_eq!(config.connector[0].kind(), "modbus");
        assert_eq!(config.connector[1].name(), "ami-drop");
        assert_eq!(config.connector[2].kind(), "opcua");
        let text = toml::to_string(&config).unwrap();
        assert_eq!(ConnectorsConfig::from_toml(&text).unwrap(), config);
        let known = ["T_2", "T_4", "T_5", "T_6", "F_L0", "F_L22"];
        config.validate(&|a| known.contains(&a)).unwrap();
    }

    fn error_of(text: &str) -> String {
        match ConnectorsConfig::from_toml(text) {
            Err(e) => e.to_string(),
            Ok(c) => c.validate(&|a| a.starts_with('T')).unwrap_err().to_string(),
        }
    }

    #[test]
    fn bad_configs_name_what_is_wrong() {
        let unknown = error_of("[[connector]]\nname = \"x\"\ntype = \"bacnet\"\n");
        assert!(unknown.contains("unknown variant `bacnet`"), "{unknown}");
        let missing = error_of(
            "[[connector]]\nname = \"x\"\ntype = \"modbus\"\nhost = \"h\"\n[[connector.devices]]\nunit_id = 1\n[[connector.devices.points]]\naddress = 0\ndata_type = \"u16\"\nquantity = \"p_kw\"\n",
        );
        assert!(missing.contains("missing field `asset`"), "{missing}");
        let overlap = error_of(
            "[[connector]]\nname = \"x\"\ntype = \"modbus\"\nhost = \"h\"\n[[connector.devices]]\nunit_id = 1\n[[connector.devices.points]]\naddress = 0\ndata_type = \"f64\"\nasset = \"T1\"\nquantity = \"p_kw\"\n[[connector.devices.points]]\naddress = 3\ndata_type = \"u16\"\nasset = \"T1\"\nquantity = \"q_kvar\"\n",
        );
        assert!(
            overlap.contains("connector[0].devices[0].points[1].address")
                && overlap.contains("register 3 overlaps points[0]"),
            "{overlap}"
        );
        let asset = error_of(
            "[[connector]]\nname = \"x\"\ntype = \"meter_files\"\nfolder = \"/tmp/x\"\n[connector.meters]\nM1 = \"F9\"\n",
        );
        assert!(
            asset.contains("connector[0].meters.M1") && asset.contains("`F9`"),
            "{asset}"
        );
        let twice = error_of(
            "[[connector]]\nname = \"x\"\ntype = \"meter_files\"\nfolder = \"/a\"\n[[connector]]\nname = \"x\"\ntype = \"meter_files\"\nfolder = \"/b\"\n",
        );
        assert!(twice.contains("connector[1].name"), "{twice}");
        let misspelt = error_of(
            "[[connector]]\nname = \"x\"\ntype = \"meter_files\"\nfolder = \"/a\"\nsettle_msec = 5\n",
        );
        assert!(
            misspelt.contains("unknown field `settle_msec`"),
            "{misspelt}"
        );
        let opcua = |rest: &str| {
            error_of(&format!(
                "[[connector]]\nname = \"s\"\ntype = \"opcua\"\nendpoint_url = \"opc.tcp://h:4840/\"\n{rest}"
            ))
        };
        let node = opcua(
            "[[connector.items]]\nnode_id = \"ns=2;x=1\"\nasset = \"T1\"\nquantity = \"p_kw\"\n",
        );
        assert!(
            node.contains("connector[0].items[0].node_id") && node.contains("not a node id"),
            "{node}"
        );
        let unmapped = opcua("[[connector.items]]\nnode_id = \"ns=2;i=1\"\nquantity = \"p_kw\"\n");
        assert!(unmapped.contains("missing field `asset`"), "{unmapped}");
        let unknown_asset = opcua(
            "[[connector.items]]\nnode_id = \"ns=2;i=1\"\nasset = \"F9\"\nquantity = \"p_kw\"\n",
        );
        assert!(
            unknown_asset.contains("connector[0].items[0].asset") && unknown_asset.contains("`F9`"),
            "{unknown_asset}"
        );
        let mode = opcua(
            "security_policy = \"basic256sha256\"\npki_dir = \"/p\"\n[[connector.items]]\nnode_id = \"ns=2;i=1\"\nasset = \"T1\"\nquantity = \"p_kw\"\n",
        );
        assert!(mode.contains("connector[0].security_mode"), "{mode}");
        let deadband = opcua(
            "[[connector.items]]\nnode_id = \"ns=2;i=1\"\ndeadband = { type = \"percent\", value = 150.0 }\nasset = \"T1\"\nquantity = \"p_kw\"\n",
        );
        assert!(
            deadband.contains("connector[0].items[0].deadband.value"),
            "{deadband}"
        );
    }
}
