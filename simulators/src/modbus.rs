//! A Modbus TCP server standing in for a gateway of distribution-transformer
//! monitoring terminals: one unit id per terminal, each with the register map
//! below, values replayed from a gridpack or set by a test, and faults to inject.
//!
//! **Register map** (per unit, the same in input and holding registers; f32
//! IEEE 754, big-endian words and bytes):
//!
//! | address | value |
//! |---|---|
//! | 0-1 | active power `p_kw` |
//! | 2-3 | reactive power `q_kvar` |
//! | 4-5 | apparent power `s_kva` |
//! | 6-7 | current `i_a` |
//! | 8-9 | voltage `u_kv` |
//! | 10-19 | reserved, read as 0 |
//!
//! A request past register 19, or to a unit the gateway does not have, gets the
//! exception *illegal data address* or *gateway target device failed to
//! respond*, as a real gateway answers.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tokio::net::TcpListener;

use crate::replay::{Timeline, every_second};
use tokio::task::JoinHandle;
use tokio_modbus::server::Service;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};
use tokio_modbus::{Request, Response, SlaveRequest};

pub use tokio_modbus::ExceptionCode;

/// Registers per unit.
pub const REGISTERS_PER_UNIT: u16 = 20;

/// Quantities of the map in address order (two registers each).
pub const MAP: [&str; 5] = ["p_kw", "q_kvar", "s_kva", "i_a", "u_kv"];

/// Address of a quantity in the map.
pub fn address_of(quantity: &str) -> Option<u16> {
    MAP.iter()
        .position(|q| *q == quantity)
        .map(|i| i as u16 * 2)
}

/// A fault a unit shows until cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answers every request with this Modbus exception.
    Exception(ExceptionCode),
    /// Never answers (a hung terminal behind the gateway).
    Stall,
}

#[derive(Default)]
struct State {
    /// Registers per unit.
    units: RwLock<HashMap<u8, Vec<u16>>>,
    /// Faults per unit.
    faults: RwLock<HashMap<u8, Fault>>,
    /// Requests answered, for tests and benches.
    requests: std::sync::atomic::AtomicU64,
}

/// The running server and its controls.
pub struct ModbusSimulator {
    address: SocketAddr,
    state: Arc<State>,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for ModbusSimulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModbusSimulator")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Gateway(Arc<State>);

impl Service for Gateway {
    type Request = SlaveRequest<'static>;
    // `None` sends nothing: a stalled unit.
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = std::future::Ready<Result<Self::Response, Self::Exception>>;

    fn call(&self, request: Self::Request) -> Self::Future {
        let state = &self.0;
        state
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let unit = request.slave;
        let fault = state
            .faults
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&unit)
            .copied();
        match fault {
            Some(Fault::Stall) => return std::future::ready(Ok(None)),
            Some(Fault::Exception(code)) => return std::future::ready(Err(code)),
            None => {}
        }
        let units = state.units.read().unwrap_or_else(PoisonError::into_inner);
        let Some(registers) = units.get(&unit) else {
            return std::future::ready(Err(ExceptionCode::GatewayTargetDevice));
        };
        let read = |start: u16, count: u16| -> Result<Vec<u16>, ExceptionCode> {
            let end = usize::from(start) + usize::from(count);
            if count == 0 || end > registers.len() {
                return Err(ExceptionCode::IllegalDataAddress);
            }
            Ok(registers[usize::from(start)..end].to_vec())
        };
        let answer = match request.request {
            Request::ReadInputRegisters(start, count) => {
                read(start, count).map(|w| Some(Response::ReadInputRegisters(w)))
            }
            Request::ReadHoldingRegisters(start, count) => {
                read(start, count).map(|w| Some(Response::ReadHoldingRegisters(w)))
            }
            _ => Err(ExceptionCode::IllegalFunction),
        };
        std::future::ready(answer)
    }
}

impl ModbusSimulator {
    /// Serves on `listener` units `1..=units` with every register 0.
    pub async fn start(listener: TcpListener, units: u8) -> io::Result<Self> {
        let state = Arc::new(State::default());
        {
            let mut map = state.units.write().unwrap_or_else(PoisonError::into_inner);
            for unit in 1..=units {
                map.insert(unit, vec![0; usize::from(REGISTERS_PER_UNIT)]);
            }
        }
        let address = listener.local_addr()?;
        let simulator = Self {
            address,
            state,
            server: Mutex::new(None),
        };
        simulator.serve(listener);
        Ok(simulator)
    }

    fn serve(&self, listener: TcpListener) {
        let gateway = Gateway(self.state.clone());
        let task = tokio::spawn(async move {
            let server = Server::new(listener);
            let on_connected = |stream, socket_addr| {
                let gateway = gateway.clone();
                async move {
                    accept_tcp_connection(stream, socket_addr, move |_| Ok(Some(gateway.clone())))
                }
            };
            let _ = server.serve(&on_connected, |_error| {}).await;
        });
        *self.server.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.state
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets a value of the map (both tables) at `address` as f32; a NaN is
    /// written as it is, as a terminal reports "no measurement".
    pub fn set(&self, unit: u8, address: u16, value: f32) {
        let bits = value.to_bits();
        self.set_raw(unit, address, &[(bits >> 16) as u16, bits as u16]);
    }

    /// Sets raw registers of a unit from `address` on (what lies past the map
    /// is left out).
    pub fn set_raw(&self, unit: u8, address: u16, words: &[u16]) {
        let mut units = self
            .state
            .units
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let at = usize::from(address);
        if let Some(registers) = units.get_mut(&unit).filter(|r| at < r.len()) {
            let end = (at + words.len()).min(registers.len());
            registers[at..end].copy_from_slice(&words[..end - at]);
        }
    }

    /// Makes a unit show a fault (`None` clears it).
    pub fn set_fault(&self, unit: u8, fault: Option<Fault>) {
        let mut faults = self
            .state
            .faults
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match fault {
            Some(f) => faults.insert(unit, f),
            None => faults.remove(&unit),
        };
    }

    /// Stops listening and closes every connection (the server is down).
    pub async fn stop(&self) {
        let task = self
            .server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            // Dropping the server's accept loop cancels its connections.
            task.abort();
            let _ = task.await;
        }
    }

    /// Comes back on the same address after [`stop`](Self::stop) (a restart).
    pub async fn resume(&self) -> io::Result<()> {
        let listener = TcpListener::bind(self.address).await?;
        self.serve(listener);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_modbus::client::Reader;
    use tokio_modbus::slave::Slave;

    #[tokio::test]
    async fn serves_the_map_and_injects_exceptions() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = ModbusSimulator::start(listener, 3).await.unwrap();
        sim.set(2, address_of("q_kvar").unwrap(), 12.5);
        let mut ctx = tokio_modbus::client::tcp::connect_slave(sim.address(), Slave(2))
            .await
            .unwrap();
        let words = ctx.read_input_registers(2, 2).await.unwrap().unwrap();
        let value = f32::from_bits((u32::from(words[0]) << 16) | u32::from(words[1]));
        assert_eq!(value, 12.5);
        assert_eq!(
            ctx.read_holding_registers(19, 2).await.unwrap(),
            Err(ExceptionCode::IllegalDataAddress)
        );
        sim.set_fault(
            2,
            Some(Fault::Exception(ExceptionCode::ServerDeviceFailure)),
        );
        assert_eq!(
            ctx.read_input_registers(0, 2).await.unwrap(),
            Err(ExceptionCode::ServerDeviceFailure)
        );
    }
}

/// A gridpack's transformer readings replayed into the simulator's registers,
/// time compressed and looping over the readings' span.
#[derive(Clone, Debug)]
pub struct Replay {
    /// Per unit: its values of [`MAP`].
    timeline: Timeline<u32>,
}

impl Replay {
    /// Units `1..` for the first `max_units` transformers with readings, and
    /// which transformer id each unit stands for.
    pub fn from_gridpack(
        network: &headroom_geodata::Network,
        readings: &[headroom_geodata::ReadingRow],
        max_units: u8,
    ) -> (Self, Vec<(u8, String)>) {
        use headroom_geodata::AssetKind;
        let rows = readings.iter().filter_map(|row| {
            let slot = MAP.iter().position(|q| *q == row.quantity.as_str())?;
            (row.asset.kind == AssetKind::Transformer).then_some((
                row.asset.index,
                slot,
                row.ts_ms,
                row.value,
            ))
        });
        let mut timeline = Timeline::build(rows, MAP.len());
        timeline.truncate(max_units as usize);
        let names = (1..=max_units)
            .zip(timeline.keys())
            .map(|(unit, index)| (unit, network.transformers[*index as usize].id.to_string()))
            .collect();
        (Self { timeline }, names)
    }

    /// Units replayed.
    pub fn unit_count(&self) -> u8 {
        self.timeline.len() as u8
    }

    /// Sets every unit's registers to the readings in force `elapsed_ms` of
    /// simulated time after the first reading (looping).
    pub fn apply(&self, simulator: &ModbusSimulator, elapsed_ms: i64) {
        for (k, slot, value) in self.timeline.at(elapsed_ms) {
            simulator.set(k as u8 + 1, slot as u16 * 2, value as f32);
        }
    }

    /// Replays until the task is dropped: every second of wall time moves
    /// simulated time by `speed` seconds.
    pub fn run(self, simulator: Arc<ModbusSimulator>, speed: f64) -> JoinHandle<()> {
        every_second(speed, move |elapsed_ms| self.apply(&simulator, elapsed_ms))
    }
}
