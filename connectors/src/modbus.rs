//! Monitoring terminals over Modbus TCP: a gateway (host and port) with devices
//! behind it (one unit id each), each polled at its own interval.
//!
//! Each device polls on its own task and its own connection, so a dead device
//! costs only its own timeouts: the others keep their cycle. Contiguous points
//! of a device are read in as few requests as the protocol allows (at most
//! 125 registers each). A timeout, a transport error or a Modbus exception marks
//! the device's points bad (nothing stale is written), drops the connection (a
//! late answer would be taken for the next request's) and retries with
//! backoff; the gap is reported when the device answers again.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use headroom_geodata::Quantity;
use headroom_readings::{Quality, Reading};
use serde::{Deserialize, Serialize};
use tokio_modbus::client::{Client, Context, Reader};
use tokio_modbus::slave::Slave;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::output::{Backoff, Output};
use crate::status::{LinkState, StatusHandle};

/// Registers one request may read (the protocol's limit for function codes 3 and 4).
pub const MAX_REGISTERS_PER_REQUEST: u16 = 125;

/// A Modbus TCP gateway and the devices behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusConfig {
    /// Unique among the connectors; the `source` of its readings.
    pub name: String,
    /// Host name or address of the gateway.
    pub host: String,
    /// TCP port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// How long one request may take, ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// First retry delay after a failure, ms (doubling, with jitter).
    #[serde(default = "crate::default_retry_min_ms")]
    pub retry_min_ms: u64,
    /// Longest retry delay, ms.
    #[serde(default = "crate::default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// The devices.
    pub devices: Vec<ModbusDevice>,
}

const fn default_port() -> u16 {
    502
}
const fn default_timeout_ms() -> u64 {
    1_000
}
const fn default_poll_interval_ms() -> u64 {
    1_000
}

/// One monitoring terminal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusDevice {
    /// Modbus unit id (slave address).
    pub unit_id: u8,
    /// How often to read it, ms.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Its points.
    pub points: Vec<ModbusPoint>,
}

/// Which register table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterKind {
    /// Holding registers (function code 3).
    Holding,
    /// Input registers (function code 4).
    Input,
}

/// How the registers of a point encode its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    /// One register, unsigned.
    U16,
    /// One register, two's complement.
    I16,
    /// Two registers, unsigned.
    U32,
    /// Two registers, two's complement.
    I32,
    /// Two registers, IEEE 754 single precision.
    F32,
    /// Four registers, IEEE 754 double precision.
    F64,
}

impl DataType {
    /// Registers it takes.
    pub const fn registers(self) -> u16 {
        match self {
            DataType::U16 | DataType::I16 => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::F64 => 4,
        }
    }
}

/// Order of words (registers) or of the bytes within each register.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Most significant first (Modbus's own order).
    #[default]
    Big,
    /// Least significant first.
    Little,
}

/// One measured value: where it is and what it means.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusPoint {
    /// First register, 0-based protocol address.
    pub address: u16,
    /// Holding or input.
    #[serde(default = "default_register")]
    pub register: RegisterKind,
    /// Encoding.
    pub data_type: DataType,
    /// Order of the registers of a multi-register value.
    #[serde(default)]
    pub word_order: Order,
    /// Order of the two bytes within each register.
    #[serde(default)]
    pub byte_order: Order,
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

const fn default_register() -> RegisterKind {
    RegisterKind::Holding
}

/// Decodes a point's registers (exactly `data_type.registers()` of them).
pub fn decode(words: &[u16], data_type: DataType, word_order: Order, byte_order: Order) -> f64 {
    let mut ordered: [u16; 4] = [0; 4];
    let n = data_type.registers() as usize;
    for (i, slot) in ordered.iter_mut().take(n).enumerate() {
        let word = match word_order {
            Order::Big => words[i],
            Order::Little => words[n - 1 - i],
        };
        *slot = match byte_order {
            Order::Big => word,
            Order::Little => word.swap_bytes(),
        };
    }
    let u32_of = |w: &[u16]| (u32::from(w[0]) << 16) | u32::from(w[1]);
    match data_type {
        DataType::U16 => f64::from(ordered[0]),
        DataType::I16 => f64::from(ordered[0] as i16),
        DataType::U32 => f64::from(u32_of(&ordered)),
        DataType::I32 => f64::from(u32_of(&ordered) as i32),
        DataType::F32 => f64::from(f32::from_bits(u32_of(&ordered))),
        DataType::F64 => {
            let bits = ordered
                .iter()
                .fold(0u64, |acc, w| (acc << 16) | u64::from(*w));
            f64::from_bits(bits)
        }
    }
}

/// One read request: a run of registers of one kind, and the points in it.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    /// Register table.
    pub register: RegisterKind,
    /// First register.
    pub start: u16,
    /// Registers read.
    pub count: u16,
    /// Indices into the device's points.
    pub points: Vec<usize>,
}

/// Groups a device's points into as few requests as the protocol allows:
/// points that follow one another without a gap share a request of at most
/// [`MAX_REGISTERS_PER_REQUEST`] registers. Registers between points are not
/// read (a device may refuse addresses it does not map).
pub fn plan_blocks(points: &[ModbusPoint]) -> Vec<Block> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by_key(|&i| (points[i].register, points[i].address));
    let mut blocks: Vec<Block> = Vec::new();
    for i in order {
        let p = &points[i];
        let size = p.data_type.registers();
        match blocks.last_mut() {
            Some(b)
                if b.register == p.register
                    && u32::from(b.start) + u32::from(b.count) == u32::from(p.address)
                    && b.count + size <= MAX_REGISTERS_PER_REQUEST =>
            {
                b.count += size;
                b.points.push(i);
            }
            _ => blocks.push(Block {
                register: p.register,
                start: p.address,
                count: size,
                points: vec![i],
            }),
        }
    }
    blocks
}

impl ModbusConfig {
    /// Checks the configuration; `field` is its path (e.g. `connector[2]`) and
    /// `known_asset` tells whether the network has an asset id.
    pub fn validate(&self, field: &str, known_asset: &dyn Fn(&str) -> bool) -> Result<()> {
        if self.host.trim().is_empty() {
            return Err(Error::config(format!("{field}.host"), "is empty"));
        }
        if self.timeout_ms == 0 {
            return Err(Error::config(
                format!("{field}.timeout_ms"),
                "must be above 0",
            ));
        }
        if self.retry_min_ms == 0 || self.retry_max_ms < self.retry_min_ms {
            return Err(Error::config(
                format!("{field}.retry_min_ms"),
                "must be above 0 and at most retry_max_ms",
            ));
        }
        if self.devices.is_empty() {
            return Err(Error::config(format!("{field}.devices"), "lists no device"));
        }
        let mut units = BTreeMap::new();
        for (d, device) in self.devices.iter().enumerate() {
            let at = format!("{field}.devices[{d}]");
            if let Some(first) = units.insert(device.unit_id, d) {
                return Err(Error::config(
                    format!("{at}.unit_id"),
                    format!("{} is also devices[{first}]'s", device.unit_id),
                ));
            }
            if device.poll_interval_ms == 0 {
                return Err(Error::config(
                    format!("{at}.poll_interval_ms"),
                    "must be above 0",
                ));
            }
            if device.points.is_empty() {
                return Err(Error::config(format!("{at}.points"), "lists no point"));
            }
            // Overlapping registers: two points reading the same register.
            let mut taken: BTreeMap<(RegisterKind, u32), usize> = BTreeMap::new();
            for (i, p) in device.points.iter().enumerate() {
                let at = format!("{at}.points[{i}]");
                let end = u32::from(p.address) + u32::from(p.data_type.registers());
                if end > 65_536 {
                    return Err(Error::config(
                        format!("{at}.address"),
                        "runs past register 65535",
                    ));
                }
                for r in u32::from(p.address)..end {
                    if let Some(other) = taken.insert((p.register, r), i) {
                        return Err(Error::config(
                            format!("{at}.address"),
                            format!("register {r} overlaps points[{other}]"),
                        ));
                    }
                }
                crate::validate_mapping(
                    &at,
                    &p.asset,
                    &p.quantity,
                    p.scale,
                    p.offset,
                    known_asset,
                )?;
            }
        }
        Ok(())
    }

    /// Points over all devices.
    pub fn point_count(&self) -> usize {
        self.devices.iter().map(|d| d.points.len()).sum()
    }
}

/// A point ready to poll.
struct Prepared {
    asset: Arc<str>,
    quantity: Quantity,
    point: ModbusPoint,
}

/// Why a poll failed.
#[derive(Debug)]
enum PollError {
    Timeout,
    Transport(String),
    Exception(String),
}

impl PollError {
    fn kind(&self) -> &'static str {
        match self {
            PollError::Timeout => "timeout",
            PollError::Transport(_) => "transport",
            PollError::Exception(_) => "exception",
        }
    }
}

impl std::fmt::Display for PollError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PollError::Timeout => write!(f, "no answer within the timeout"),
            PollError::Transport(e) => write!(f, "transport: {e}"),
            PollError::Exception(e) => write!(f, "Modbus exception: {e}"),
        }
    }
}

/// Devices failing now, shared by the device tasks to report the link.
#[derive(Default)]
struct Failing {
    devices: std::sync::Mutex<std::collections::BTreeSet<u8>>,
}

/// Runs the connector until `shutdown`: one task per device.
pub async fn run(
    name: String,
    config: ModbusConfig,
    output: Output,
    status: StatusHandle,
    shutdown: CancellationToken,
) {
    let failing = Arc::new(Failing::default());
    let total = config.devices.len();
    let source: Arc<str> = Arc::from(name.as_str());
    let mut tasks = tokio::task::JoinSet::new();
    for device in config.devices.clone() {
        tasks.spawn(poll_device(
            config.clone(),
            device,
            source.clone(),
            output.clone(),
            status.clone(),
            failing.clone(),
            total,
            shutdown.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
    status.update(|s| s.link = LinkState::Stopped);
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[allow(clippy::too_many_arguments)]
async fn poll_device(
    config: ModbusConfig,
    device: ModbusDevice,
    source: Arc<str>,
    output: Output,
    status: StatusHandle,
    failing: Arc<Failing>,
    total: usize,
    shutdown: CancellationToken,
) {
    let prepared: Vec<Prepared> = device
        .points
        .iter()
        .map(|p| Prepared {
            asset: Arc::from(p.asset.as_str()),
            quantity: Quantity::parse(&p.quantity).unwrap_or(Quantity::PKw),
            point: p.clone(),
        })
        .collect();
    let blocks = plan_blocks(&device.points);
    let timeout = Duration::from_millis(config.timeout_ms);
    let interval = Duration::from_millis(device.poll_interval_ms);
    let mut backoff = Backoff::new(
        Duration::from_millis(config.retry_min_ms),
        Duration::from_millis(config.retry_max_ms),
    );
    let part = format!("unit {}", device.unit_id);
    let mut context: Option<Context> = None;
    // Last success, and whether the device is in a gap since then.
    let mut last_success_ms: Option<i64> = None;
    let mut in_gap = false;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => break,
        }
        let ts_ms = now_ms();
        let result = match context.as_mut() {
            Some(ctx) => read_blocks(ctx, &blocks, timeout).await,
            None => match connect(&config, device.unit_id, timeout).await {
                Ok(mut ctx) => {
                    let r = read_blocks(&mut ctx, &blocks, timeout).await;
                    context = Some(ctx);
                    r
                }
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(words) => {
                let readings = to_readings(&prepared, &blocks, &words, ts_ms, &source);
                let bad = readings
                    .iter()
                    .filter(|r| r.quality == Quality::Bad)
                    .count();
                if bad > 0 {
                    status.update(|s| {
                        *s.errors.entry("non_finite".into()).or_default() += bad as u64
                    });
                }
                let good: Vec<Reading> = readings
                    .into_iter()
                    .filter(|r| r.value.is_finite())
                    .collect();
                output.send(good).await;
                if in_gap {
                    if let Some(from) = last_success_ms {
                        status.gap(part.clone(), from, ts_ms);
                    }
                    in_gap = false;
                }
                last_success_ms = Some(ts_ms);
                backoff.reset();
                let link = {
                    let mut set = failing.devices.lock().unwrap_or_else(|e| e.into_inner());
                    set.remove(&device.unit_id);
                    link_state(set.len(), total)
                };
                status.update(|s| {
                    s.last_success_ms = Some(s.last_success_ms.map_or(ts_ms, |t| t.max(ts_ms)));
                    s.link = link;
                });
            }
            Err(e) => {
                status.error(e.kind());
                tracing::warn!("{source} unit {}: {e}", device.unit_id);
                // A late answer would be read as the next request's: start afresh.
                if let Some(mut ctx) = context.take() {
                    let _ = tokio::time::timeout(timeout, ctx.disconnect()).await;
                }
                in_gap = true;
                let delay = backoff.next_delay();
                let link = {
                    let mut set = failing.devices.lock().unwrap_or_else(|e| e.into_inner());
                    set.insert(device.unit_id);
                    if set.len() == total {
                        LinkState::Disconnected {
                            since_ms: last_success_ms.unwrap_or(ts_ms),
                            retry_at_ms: ts_ms + delay.as_millis() as i64,
                            reason: e.to_string(),
                        }
                    } else {
                        link_state(set.len(), total)
                    }
                };
                status.update(|s| s.link = link);
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => break,
                }
                ticker.reset();
            }
        }
    }
}

fn link_state(failing: usize, total: usize) -> LinkState {
    if failing == 0 {
        LinkState::Connected
    } else {
        LinkState::Degraded { failing, total }
    }
}

async fn connect(
    config: &ModbusConfig,
    unit_id: u8,
    timeout: Duration,
) -> std::result::Result<Context, PollError> {
    let address = format!("{}:{}", config.host, config.port);
    let resolved: Vec<SocketAddr> = match tokio::net::lookup_host(&address).await {
        Ok(addresses) => addresses.collect(),
        Err(e) => return Err(PollError::Transport(format!("{address}: {e}"))),
    };
    let Some(socket) = resolved.first().copied() else {
        return Err(PollError::Transport(format!("{address}: no address")));
    };
    match tokio::time::timeout(
        timeout,
        tokio_modbus::client::tcp::connect_slave(socket, Slave(unit_id)),
    )
    .await
    {
        Ok(Ok(ctx)) => Ok(ctx),
        Ok(Err(e)) => Err(PollError::Transport(format!("{address}: {e}"))),
        Err(_) => Err(PollError::Timeout),
    }
}

async fn read_blocks(
    ctx: &mut Context,
    blocks: &[Block],
    timeout: Duration,
) -> std::result::Result<Vec<Vec<u16>>, PollError> {
    let mut out = Vec::with_capacity(blocks.len());
    for block in blocks {
        let request = async {
            match block.register {
                RegisterKind::Holding => ctx.read_holding_registers(block.start, block.count).await,
                RegisterKind::Input => ctx.read_input_registers(block.start, block.count).await,
            }
        };
        let words = match tokio::time::timeout(timeout, request).await {
            Err(_) => return Err(PollError::Timeout),
            Ok(Err(e)) => return Err(PollError::Transport(e.to_string())),
            Ok(Ok(Err(exception))) => return Err(PollError::Exception(exception.to_string())),
            Ok(Ok(Ok(words))) => words,
        };
        if words.len() < block.count as usize {
            return Err(PollError::Transport(format!(
                "{} registers asked, {} returned",
                block.count,
                words.len()
            )));
        }
        out.push(words);
    }
    Ok(out)
}

/// The readings of one successful poll. A value that decodes to NaN or an
/// infinity (a terminal's "no measurement") is marked bad.
fn to_readings(
    prepared: &[Prepared],
    blocks: &[Block],
    words: &[Vec<u16>],
    ts_ms: i64,
    source: &Arc<str>,
) -> Vec<Reading> {
    let mut out = Vec::with_capacity(prepared.len());
    for (block, words) in blocks.iter().zip(words) {
        for &i in &block.points {
            let p = &prepared[i].point;
            let at = (p.address - block.start) as usize;
            let raw = decode(
                &words[at..at + p.data_type.registers() as usize],
                p.data_type,
                p.word_order,
                p.byte_order,
            );
            let value = raw * p.scale + p.offset;
            out.push(Reading {
                ts_ms,
                asset: prepared[i].asset.clone(),
                quantity: prepared[i].quantity,
                value,
                quality: if value.is_finite() {
                    Quality::Good
                } else {
                    Quality::Bad
                },
                source: source.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(address: u16, data_type: DataType) -> ModbusPoint {
        ModbusPoint {
            address,
            register: RegisterKind::Holding,
            data_type,
            word_order: Order::Big,
            byte_order: Order::Big,
            scale: 1.0,
            offset: 0.0,
            asset: "T1".into(),
            quantity: "p_kw".into(),
        }
    }

    #[test]
    fn every_type_decodes_in_every_order() {
        let f = 123.456_f32.to_bits();
        let (hi, lo) = ((f >> 16) as u16, f as u16);
        assert_eq!(
            decode(&[hi, lo], DataType::F32, Order::Big, Order::Big),
            f64::from(123.456_f32)
        );
        assert_eq!(
            decode(&[lo, hi], DataType::F32, Order::Little, Order::Big),
            f64::from(123.456_f32)
        );
        assert_eq!(
            decode(
                &[hi.swap_bytes(), lo.swap_bytes()],
                DataType::F32,
                Order::Big,
                Order::Little
            ),
            f64::from(123.456_f32)
        );
        let d = (-9876.54321_f64).to_bits();
        let words = [
            (d >> 48) as u16,
            (d >> 32) as u16,
            (d >> 16) as u16,
            d as u16,
        ];
        assert_eq!(
            decode(&words, DataType::F64, Order::Big, Order::Big),
            -9876.54321
        );
        let reversed = [words[3], words[2], words[1], words[0]];
        assert_eq!(
            decode(&reversed, DataType::F64, Order::Little, Order::Big),
            -9876.54321
        );
        assert_eq!(
            decode(&[0xFFFF], DataType::I16, Order::Big, Order::Big),
            -1.0
        );
        assert_eq!(
            decode(&[0xFFFF], DataType::U16, Order::Big, Order::Big),
            65535.0
        );
        assert_eq!(
            decode(&[0x0100], DataType::U16, Order::Big, Order::Little),
            1.0
        );
        assert_eq!(
            decode(&[0x0001, 0x0002], DataType::U32, Order::Big, Order::Big),
            65538.0
        );
        assert_eq!(
            decode(&[0x0002, 0x0001], DataType::U32, Order::Little, Order::Big),
            65538.0
        );
        assert_eq!(
            decode(&[0xFFFF, 0xFFFE], DataType::I32, Order::Big, Order::Big),
            -2.0
        );
    }

    #[test]
    fn contiguous_points_share_requests_of_at_most_125_registers() {
        // 0..2, 2..4 contiguous; 10 apart; input registers separate.
        let mut points = vec![
            point(2, DataType::F32),
            point(0, DataType::F32),
            point(10, DataType::U16),
        ];
        let mut input = point(2, DataType::F32);
        input.register = RegisterKind::Input;
        points.push(input);
        let blocks = plan_blocks(&points);
        assert_eq!(
            blocks
                .iter()
                .map(|b| (b.register, b.start, b.count, b.points.clone()))
                .collect::<Vec<_>>(),
            vec![
                (RegisterKind::Holding, 0, 4, vec![1, 0]),
                (RegisterKind::Holding, 10, 1, vec![2]),
                (RegisterKind::Input, 2, 2, vec![3]),
            ]
        );
        // 100 contiguous f32 points: 200 registers in two requests.
        let points: Vec<ModbusPoint> = (0..100).map(|i| point(i * 2, DataType::F32)).collect();
        let blocks = plan_blocks(&points);
        assert_eq!(blocks.len(), 2);
        assert!(blocks.iter().all(|b| b.count <= MAX_REGISTERS_PER_REQUEST));
        assert_eq!(blocks.iter().map(|b| b.count).sum::<u16>(), 200);
    }

    #[test]
    fn overlapping_registers_and_unknown_assets_are_refused_by_field() {
        let config = ModbusConfig {
            name: "gateway".into(),
            host: "127.0.0.1".into(),
            port: 502,
            timeout_ms: 1000,
            retry_min_ms: 100,
            retry_max_ms: 1000,
            devices: vec![ModbusDevice {
                unit_id: 1,
                poll_interval_ms: 1000,
                points: vec![point(0, DataType::F32), point(1, DataType::U16)],
            }],
        };
        let err = config
            .validate("connector[0]", &|_| true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("connector[0].devices[0].points[1].address"),
            "{err}"
        );
        assert!(err.contains("overlaps points[0]"), "{err}");
        let mut config = config;
        config.devices[0].points[1].address = 2;
        let err = config
            .validate("connector[0]", &|a| a == "T9")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("points[0].asset") && err.contains("`T1`"),
            "{err}"
        );
        assert!(config.validate("connector[0]", &|_| true).is_ok());
    }
}
