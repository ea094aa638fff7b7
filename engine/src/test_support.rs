//! What the crate's unit tests share.

use std::path::Path;
use std::sync::Arc;

use crate::{Engine, EngineConfig, InMemoryReadings};

/// The public fixture grid with its readings, default settings and no
/// reservations.
pub(crate) fn fixture_engine() -> Engine {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/1-MV-semiurb");
    let gridpack = headroom_geodata::Gridpack::read(&dir).expect("fixture gridpack");
    let readings = Arc::new(InMemoryReadings::from_rows(&gridpack.readings));
    Engine::new(
        gridpack.network,
        readings,
        EngineConfig::default(),
        Vec::new(),
    )
}
