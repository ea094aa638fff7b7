//! A gridpack folder: where its files are, and reading it whole.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::model::Network;
use crate::network_file::read_network;
use crate::readings::{ReadingRow, ReadingsReport, read_readings};

/// The files of a gridpack folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GridpackPaths {
    /// The folder.
    pub dir: PathBuf,
    /// `network.geojson`.
    pub network: PathBuf,
    /// `readings.csv` or `readings.csv.gz`, where present.
    pub readings: Option<PathBuf>,
    /// `applications.json`, where present.
    pub applications: Option<PathBuf>,
}

impl GridpackPaths {
    /// Finds the files of the gridpack in `dir`; the folder and its network must exist.
    pub fn locate(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::NotFound {
                path: dir.to_owned(),
            });
        }
        let network = dir.join("network.geojson");
        if !network.is_file() {
            return Err(Error::NotFound { path: network });
        }
        let readings = ["readings.csv", "readings.csv.gz"]
            .into_iter()
            .map(|name| dir.join(name))
            .find(|p| p.is_file());
        let applications = Some(dir.join("applications.json")).filter(|p| p.is_file());
        Ok(Self {
            dir: dir.to_owned(),
            network,
            readings,
            applications,
        })
    }
}

/// A gridpack read whole into memory.
#[derive(Clone, Debug)]
pub struct Gridpack {
    /// Where it came from.
    pub paths: GridpackPaths,
    /// The validated network.
    pub network: Network,
    /// Accepted readings (empty without a readings file).
    pub readings: Vec<ReadingRow>,
    /// What the readings file held; `None` without one.
    pub readings_report: Option<ReadingsReport>,
}

impl Gridpack {
    /// Reads and validates a gridpack folder: the network, then its readings.
    pub fn read(dir: &Path) -> Result<Self> {
        let paths = GridpackPaths::locate(dir)?;
        let network = read_network(&paths.network)?;
        let mut readings = Vec::new();
        let readings_report = match &paths.readings {
            Some(path) => Some(read_readings(path, &network, |row| readings.push(row))?),
            None => None,
        };
        Ok(Self {
            paths,
            network,
            readings,
            readings_report,
        })
    }
}
