//! What each subcommand prints. The work itself lives in the library crates.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use headroom_engine::{Application, Engine, EngineConfig, InMemoryReadings, Level, ReadingsSource};
use headroom_geodata::readings::read_readings;
use headroom_geodata::topology::NO_PARENT;
use headroom_geodata::{
    AssetKind, Branch, Gridpack, GridpackPaths, LineRules, Network, NetworkSummary, ReadingLines,
    Topology, parse_network, read_network, rfc3339,
};
use headroom_readings::{Reading, ReadingSink};
use headroom_simulators::SynthConfig;
use headroom_store::RecordBatch;
use headroom_store::{
    DataLocation, NETWORK_FILE, Store, StoreConfig, StoreReadings, import_gridpack, stored_network,
};

/// A command that did not succeed: what to print and the exit code (spec: 2 for bad
/// input, 1 for anything else).
pub(crate) struct Failure {
    pub(crate) exit_code: u8,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn bad_input(message: impl Into<String>) -> Self {
        Self {
            exit_code: 2,
            message: message.into(),
        }
    }
}

impl From<headroom_engine::Error> for Failure {
    fn from(e: headroom_engine::Error) -> Self {
        Self {
            exit_code: if e.is_bad_input() { 2 } else { 1 },
            message: e.to_string(),
        }
    }
}

impl From<headroom_store::Error> for Failure {
    fn from(e: headroom_store::Error) -> Self {
        Self {
            exit_code: if e.is_bad_input() { 2 } else { 1 },
            message: e.to_string(),
        }
    }
}

impl From<headroom_readings::Error> for Failure {
    fn from(e: headroom_readings::Error) -> Self {
        Self {
            exit_code: 1,
            message: e.to_string(),
        }
    }
}

impl From<headroom_geodata::Error> for Failure {
    fn from(e: headroom_geodata::Error) -> Self {
        Self {
            exit_code: if e.is_bad_input() { 2 } else { 1 },
            message: e.to_string(),
        }
    }
}

pub(crate) type Outcome = Result<(), Failure>;

/// Where `rank` and `capacity` read the grid and its readings.
#[derive(Clone, Debug)]
pub(crate) enum Source {
    /// A gridpack folder.
    Gridpack(PathBuf),
    /// A store's data location (`headroom import GRIDPACK --data-dir DIR`).
    DataDir(DataLocation),
}

impl Source {
    /// From the command line: a gridpack or a data dir, not both.
    pub(crate) fn pick(
        gridpack: Option<PathBuf>,
        data_dir: Option<DataLocation>,
    ) -> Result<Self, Failure> {
        match (gridpack, data_dir) {
            (Some(g), None) => Ok(Source::Gridpack(g)),
            (None, Some(d)) => Ok(Source::DataDir(d)),
            (Some(_), Some(_)) => Err(Failure::bad_input(
                "name a GRIDPACK or --data-dir, not both",
            )),
            (None, None) => Err(Failure::bad_input("name a GRIDPACK or --data-dir DIR")),
        }
    }

    fn name(&self) -> String {
        match self {
            Source::Gridpack(p) => p.display().to_string(),
            Source::DataDir(location) => location.to_string(),
        }
    }
}

/// A `--data-dir` argument: a local folder or `s3://bucket/prefix`.
pub(crate) fn location(text: &str, wal_dir: &Path) -> Result<DataLocation, Failure> {
    Ok(DataLocation::parse(text, Some(wal_dir))?)
}

/// Opens the store of a data location with the network kept there.
fn open_store(data_dir: &DataLocation, config: StoreConfig) -> Result<(Network, Store), Failure> {
    let Some(bytes) = stored_network(data_dir)? else {
        return Err(Failure::bad_input(format!(
            "{data_dir}: no network in this data dir; run `headroom import GRIDPACK --data-dir {data_dir}` first"
        )));
    };
    let name = PathBuf::from(format!("{data_dir}/{NETWORK_FILE}"));
    let network = parse_network(&bytes, &name)?;
    let store = Store::open_at(data_dir, &network, config)?;
    Ok((network, store))
}

pub(crate) fn import(dir: &Path, data_dir: Option<&DataLocation>) -> Outcome {
    let paths = GridpackPaths::locate(dir)?;
    let network = read_network(&paths.network)?;
    let topology = Topology::trace(&network);
    // Readings are checked in full before anything is printed, so a bad header
    // fails the import as a whole.
    let readings = match &paths.readings {
        Some(path) => Some((path, read_readings(path, &network, |_| {})?)),
        None => None,
    };

    let mut out = String::new();
    let summary = NetworkSummary::new(&network, &topology);
    let _ = writeln!(out, "gridpack {}", dir.display());
    let _ = writeln!(out, "network.geojson: valid");
    for (kind, count) in &summary.counts {
        let _ = writeln!(out, "  {:<24}{count:>9}", kind.as_str());
    }
    let _ = writeln!(out, "feeders ({}):", summary.feeders.len());
    for f in &summary.feeders {
        let feeder = network.feeder(f.feeder);
        let ties = if f.ties.is_empty() {
            "none".to_owned()
        } else {
            f.ties
                .iter()
                .map(|(switch, other)| {
                    format!("{switch} {}", tie_label(&network, f.feeder, *other))
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "  {:<16} head {:<12} {:>6} nodes {:>9.3} km  ties: {ties}",
            feeder.id.as_str(),
            network.node(feeder.head_node).id.as_str(),
            f.node_count,
            f.total_length_m / 1000.0,
        );
    }
    let _ = writeln!(out, "topology warnings ({}):", topology.warnings.len());
    for w in &topology.warnings {
        let _ = writeln!(out, "  - {}", w.describe(&network));
    }
    match readings {
        None => {
            let _ = writeln!(out, "readings: none (no readings.csv or readings.csv.gz)");
        }
        Some((path, report)) => {
            let name = path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            let _ = write!(
                out,
                "{name}: {} rows taken, {} rejected",
                report.taken, report.rejected
            );
            if let (Some(first), Some(last)) = (report.first_ts_ms, report.last_ts_ms) {
                let _ = write!(out, ", {} to {}", rfc3339(first), rfc3339(last));
            }
            let _ = writeln!(out);
            for (reason, count) in &report.rejected_by_reason {
                let _ = writeln!(out, "  rejected [{}]: {count}", reason.as_str());
            }
            for row in &report.first_rejected {
                let _ = writeln!(out, "  {row}");
            }
            if report.rejected > report.first_rejected.len() as u64 {
                let _ = writeln!(
                    out,
                    "  ... {} more rejected rows not listed",
                    report.rejected - report.first_rejected.len() as u64
                );
            }
        }
    }
    let Some(data_dir) = data_dir else {
        let _ = writeln!(out, "nothing was kept (name --data-dir DIR to store it)");
        print!("{out}");
        return Ok(());
    };
    print!("{out}");
    store_gridpack(&paths, &network, data_dir)
}

/// Keeps the network and readings of a validated gridpack in a data folder.
fn store_gridpack(paths: &GridpackPaths, network: &Network, data_dir: &DataLocation) -> Outcome {
    let stored = import_gridpack(paths, network, data_dir, StoreConfig::default())?;
    println!(
        "stored in {data_dir}: network, {} readings ({} rejected by the store)",
        stored.accepted, stored.rejected
    );
    Ok(())
}

/// Runs a read-only query over a data folder's store and prints the table.
pub(crate) fn sql(data_dir: &DataLocation, query: &str) -> Outcome {
    let (_, store) = open_store(data_dir, StoreConfig::default())?;
    let batches = store.sql(query)?;
    let table = datafusion_pretty(&batches)?;
    println!("{table}");
    Ok(())
}

fn datafusion_pretty(batches: &[RecordBatch]) -> Result<String, Failure> {
    headroom_store::pretty(batches).map_err(Failure::from)
}

/// Takes CSV readings from standard input into the store, under the rules of
/// `POST /v1/readings` ([`LineRules::INGEST`]: a header
/// `ts,asset,quantity,value[,quality]`, ts in ms or RFC 3339); an empty line
/// ends a batch, and `acked N` is printed once batch N (counted from 1) is
/// durable.
pub(crate) fn ingest(
    data_dir: &DataLocation,
    flush_interval_ms: u64,
    buffer_max_bytes: usize,
) -> Outcome {
    use std::io::BufRead;
    let config = StoreConfig {
        wal_flush_interval_ms: flush_interval_ms,
        buffer_max_bytes,
        ..StoreConfig::default()
    };
    let (_, store) = open_store(data_dir, config)?;
    let source: Arc<str> = "ingest".into();
    let stdin = std::io::stdin();
    let mut lines = ReadingLines::new(LineRules::INGEST);
    // As `POST /v1/readings` names the field: `standard input line 3.quantity: ...`.
    let refused = |line: u64| {
        move |e: headroom_geodata::FieldError| {
            Failure::bad_input(format!("standard input {}: {}", e.at_line(line), e.message))
        }
    };
    let mut batch = Vec::new();
    let mut number = 0u64;
    for (index, line) in stdin.lock().lines().enumerate() {
        let line_number = index + 1;
        let line = line.map_err(|e| Failure {
            exit_code: 1,
            message: format!("standard input: {e}"),
        })?;
        // The header is line 1; a blank line after it ends a batch.
        if line_number > 1 && line.trim().is_empty() {
            number += 1;
            let summary = store.write(std::mem::take(&mut batch)).wait()?;
            println!("acked {number} {} {}", summary.accepted, summary.rejected);
            continue;
        }
        let fields = lines.feed(&line).map_err(refused(line_number as u64))?;
        if let Some(fields) = fields {
            batch.push(Reading::from_line(fields, &source));
        }
    }
    lines.finish().map_err(refused(1))?;
    if !batch.is_empty() {
        number += 1;
        let summary = store.write(batch).wait()?;
        println!("acked {number} {} {}", summary.accepted, summary.rejected);
    }
    store.close()?;
    Ok(())
}

/// Builds the engine over a gridpack, or over a data location's network and the
/// store's last [`STORE_WINDOW_DAYS`] of readings: read a feeder at a time as the
/// engine needs them, or all at once for a sweep over every asset.
fn engine_for(source: &Source, sweep: bool) -> Result<Engine, Failure> {
    let (network, readings): (_, Arc<dyn ReadingsSource>) = match source {
        Source::Gridpack(dir) => {
            let gridpack = Gridpack::read(dir)?;
            let readings = Arc::new(InMemoryReadings::from_rows(&gridpack.readings));
            (gridpack.network, readings)
        }
        Source::DataDir(location) => {
            let (network, store) = open_store(location, StoreConfig::default())?;
            if sweep {
                let readings = Arc::new(store.recent_readings(STORE_WINDOW_DAYS)?);
                store.close()?;
                (network, readings)
            } else {
                let readings = StoreReadings::recent(Arc::new(store), STORE_WINDOW_DAYS)?;
                (network, Arc::new(readings))
            }
        }
    };
    Ok(Engine::new(
        network,
        readings,
        EngineConfig::default(),
        Vec::new(),
    ))
}

/// Days of readings the engine takes from a store, back from the latest.
const STORE_WINDOW_DAYS: i64 = 14;

fn print_json(value: &impl serde::Serialize) -> Outcome {
    let text = serde_json::to_string_pretty(value).map_err(|e| Failure {
        exit_code: 1,
        message: e.to_string(),
    })?;
    println!("{text}");
    Ok(())
}

/// The level of `capacity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum CapacityLevel {
    /// 10 kV feeders
    Feeder,
    /// distribution transformers
    Transformer,
    /// substations (firm capacity, N-1)
    Substation,
}

/// How `capacity` prints its rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum CapacityFormat {
    /// aligned columns for a terminal
    Table,
    /// a JSON array of rows
    Json,
    /// CSV, one line per asset
    Csv,
    /// a GeoJSON FeatureCollection
    Geojson,
}

pub(crate) fn capacity(source: &Source, level: CapacityLevel, format: CapacityFormat) -> Outcome {
    let engine = engine_for(source, true)?;
    let level = match level {
        CapacityLevel::Feeder => Level::Feeder,
        CapacityLevel::Transformer => Level::Transformer,
        CapacityLevel::Substation => Level::Substation,
    };
    let now_ms = chrono::Utc::now().timestamp_millis();
    let rows = engine.capacity(level, engine.readings(), now_ms);
    match format {
        CapacityFormat::Table => {}
        CapacityFormat::Json => return print_json(&rows),
        CapacityFormat::Csv => {
            use std::io::Write as _;
            let csv = headroom_engine::publish::capacity_csv(&engine, &rows);
            return std::io::stdout().write_all(&csv).map_err(|e| Failure {
                exit_code: 1,
                message: format!("writing the CSV: {e}"),
            });
        }
        CapacityFormat::Geojson => {
            return print_json(&headroom_engine::publish::capacity_geojson(&engine, &rows));
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:>9} {:>10} {:>10} {:>9} {:>10} {:>11} {:>11} {:>11} {:<7} binding (worst node)",
        "id",
        "rated",
        "peak kVA",
        "p95 kVA",
        "load %",
        "reserved",
        "headroom",
        "gen C1",
        "gen C2",
        "grade"
    );
    for r in &rows {
        let worst = match (&r.worst_node, r.worst_node_headroom_kw) {
            (Some(node), Some(kw)) => format!(" ({node}: {kw:.0} kW)"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{:<16} {:>9.0} {:>10.0} {:>10.0} {:>9.1} {:>10.0} {:>11.0} {:>11.0} {:>11.0} {:<7} {}{worst}",
            r.id,
            r.rated,
            r.peak_kva,
            r.p95_kva,
            r.loading_pct,
            r.reserved_kw,
            r.headroom_kw,
            r.generation_headroom_kw,
            r.generation_open_kw,
            r.grade.as_str(),
            r.binding_constraint
        );
    }
    print!("{out}");
    Ok(())
}

fn read_applications(path: &Path) -> Result<Vec<Application>, Failure> {
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::bad_input(format!("{}: cannot be read: {e}", path.display())))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Failure::bad_input(format!("{}: not valid JSON: {e}", path.display())))?;
    Application::list_from_json(&value)
        .map_err(|e| Failure::bad_input(format!("{}: {e}", path.display())))
}

pub(crate) fn rank(source: &Source, applications: Option<&Path>, json: bool) -> Outcome {
    let applications_path = match (applications, source) {
        (Some(p), _) => p.to_owned(),
        (None, Source::Gridpack(dir)) => Some(dir.join("applications.json"))
            .filter(|p| p.is_file())
            .ok_or_else(|| {
                Failure::bad_input(format!(
                    "{}: no applications.json; name a file with --applications",
                    source.name()
                ))
            })?,
        (None, Source::DataDir(_)) => {
            return Err(Failure::bad_input(format!(
                "{}: a data dir keeps no applications; name a file with --applications",
                source.name()
            )));
        }
    };
    // Applications first: a bad one fails fast, before the network is loaded.
    let applications = read_applications(&applications_path)?;
    let engine = engine_for(source, false)?;
    let results: Vec<_> = applications.iter().map(|a| engine.rank(a)).collect();
    if json {
        return print_json(&results);
    }
    let mut out = String::new();
    for r in &results {
        let feasible = r.candidates.iter().filter(|c| c.feasible).count();
        let _ = writeln!(
            out,
            "application {}: {} candidates, {feasible} feasible, data {} to {}, metered share {:.0} %",
            r.application,
            r.candidates.len(),
            r.data.from,
            r.data.to,
            r.data.metered_share * 100.0
        );
        for s in r.schemes.iter().take(5) {
            let _ = writeln!(
                out,
                "  scheme {} (score {:.3}): {}",
                s.rank, s.score, s.summary
            );
        }
        if let Some(e) = &r.explanation {
            let _ = writeln!(out, "  no scheme: {}", e.reason);
            if let Some(f) = &e.reinforce_feeder {
                let _ = writeln!(out, "  reinforcing feeder {f} would make room");
            }
        }
        let _ = writeln!(
            out,
            "  {:<14} {:<16} {:<10} {:>9} {:>10} {:>8} {:>8}  binding",
            "node", "type", "feeder", "dist m", "headroom", "load %", "V min"
        );
        for c in r.candidates.iter().take(10) {
            let _ = writeln!(
                out,
                "  {:<14} {:<16} {:<10} {:>9.0} {:>10.0} {:>8.1} {:>8.4}  {}{}",
                c.node,
                c.node_type,
                c.feeder.as_deref().unwrap_or("-"),
                c.distance_m,
                c.headroom_kw,
                c.after.max_loading_pct,
                c.after.min_voltage_pu,
                c.binding_constraint,
                if c.feasible { "" } else { " (infeasible)" }
            );
        }
        if r.candidates.len() > 10 {
            let _ = writeln!(
                out,
                "  ... {} more candidates (--json lists all)",
                r.candidates.len() - 10
            );
        }
    }
    print!("{out}");
    Ok(())
}

pub(crate) fn inspect(dir: &Path, id: &str) -> Outcome {
    let paths = GridpackPaths::locate(dir)?;
    let network = read_network(&paths.network)?;
    let topology = Topology::trace(&network);
    let Some(asset) = network.lookup(id) else {
        return Err(Failure::bad_input(format!(
            "{}: no feeder or node with id {id}",
            paths.network.display()
        )));
    };
    let mut out = String::new();
    match asset.kind {
        AssetKind::Feeder => print_feeder_tree(&mut out, &network, &topology, asset.index),
        AssetKind::Node => print_node_path(&mut out, &network, &topology, asset.index),
        other => {
            return Err(Failure::bad_input(format!(
                "{id} is a {other}; inspect takes a feeder or a node id"
            )));
        }
    }
    print!("{out}");
    Ok(())
}

fn branch_label(network: &Network, branch: Option<Branch>) -> String {
    match branch {
        Some(Branch::Segment(s)) => {
            let seg = network.segment(s);
            format!("{} ({:.0} m, {:.0} A)", seg.id, seg.length_m, seg.rated_a)
        }
        Some(Branch::Switch(s)) => format!("{} (closed switch)", network.switch(s).id),
        None => String::new(),
    }
}

fn node_label(network: &Network, node: headroom_geodata::NodeIx) -> String {
    let n = network.node(node);
    let transformers = network
        .transformers
        .iter()
        .filter(|t| t.node == node)
        .map(|t| format!("{} {:.0} kVA", t.id, t.rated_kva))
        .collect::<Vec<_>>();
    let mut label = format!("{} [{}", n.id, n.node_type);
    if n.spare_bays > 0 {
        let _ = write!(label, ", {} spare bay(s)", n.spare_bays);
    }
    if !n.in_service {
        label.push_str(", out of service");
    }
    label.push(']');
    if !transformers.is_empty() {
        let _ = write!(label, " transformers: {}", transformers.join(", "));
    }
    label
}

/// Prints the tree with each node's last child continuing at the same depth, so a
/// trunk of fifty nodes reads as a column and only laterals indent.
fn print_feeder_tree(out: &mut String, network: &Network, topology: &Topology, feeder: u32) {
    let tree = topology.tree(headroom_geodata::FeederIx(feeder));
    let f = network.feeder(tree.feeder);
    let _ = writeln!(
        out,
        "feeder {}{} from busbar {}: {} nodes, {:.3} km of line, head limit {}",
        f.id,
        f.name
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default(),
        network.node(tree.head()).id,
        tree.node_count(),
        tree.total_length_m / 1000.0,
        f.rated_a.map_or("none".to_owned(), |a| format!("{a:.0} A")),
    );
    let mut children: Vec<Vec<u32>> = vec![Vec::new(); tree.nodes.len()];
    for (local, &parent) in tree.parent.iter().enumerate() {
        if parent != NO_PARENT {
            children[parent as usize].push(local as u32);
        }
    }
    // Depth-first, explicit stack of (local, indent).
    let mut stack = vec![(0u32, 0usize)];
    while let Some((local, indent)) = stack.pop() {
        let l = local as usize;
        let via = branch_label(network, tree.inbound[l]);
        let _ = write!(
            out,
            "{:indent$}{}  at {:.0} m",
            "",
            node_label(network, tree.nodes[l]),
            tree.distance_m[l],
        );
        if !via.is_empty() {
            let _ = write!(out, "  via {via}");
        }
        out.push('\n');
        let kids = &children[l];
        if let Some((&last, rest)) = kids.split_last() {
            stack.push((last, indent));
            for &kid in rest.iter().rev() {
                stack.push((kid, indent + 2));
            }
        }
    }
    let summary = NetworkSummary::new(network, topology);
    for (switch, other) in &summary.feeders[tree.feeder.get()].ties {
        let _ = writeln!(
            out,
            "tie {switch} {}",
            tie_label(network, tree.feeder, *other)
        );
    }
    print_restoration(out, network, topology, tree);
}

/// What restores the feeder when its head fails (N-1): its ties, the closed
/// switches that can split it and every case they allow.
fn print_restoration(
    out: &mut String,
    network: &Network,
    topology: &Topology,
    tree: &headroom_geodata::FeederTree,
) {
    let restoration = topology.restoration(network, tree.feeder);
    let node_id = |local: u32| network.node(tree.nodes[local as usize]).id.as_str();
    let supply = |t: &headroom_geodata::FeederTie| match t.supply {
        headroom_geodata::TieSupply::Feeder { feeder, local } => format!(
            "feeder {} at {}",
            network.feeder(feeder).id,
            network.node(topology.tree(feeder).nodes[local as usize]).id
        ),
        headroom_geodata::TieSupply::Busbar(b) => format!("busbar {}", network.node(b).id),
    };
    let _ = writeln!(
        out,
        "N-1 (loss of the head): {} tie(s), {} split switch(es), {} restoration case(s)",
        restoration.ties.len(),
        restoration.split_switches.len(),
        restoration.cases.len()
    );
    for (switch, at) in &restoration.split_switches {
        let _ = writeln!(
            out,
            "  split switch {} into {}",
            network.switch(*switch).id,
            node_id(*at)
        );
    }
    for case in &restoration.cases {
        match case {
            headroom_geodata::RestorationCase::OneTie(t) => {
                let _ = writeln!(
                    out,
                    "  case: close {} at {}: all of it from {}",
                    network.switch(t.switch).id,
                    node_id(t.local),
                    supply(t)
                );
            }
            headroom_geodata::RestorationCase::Split {
                switch,
                upstream,
                downstream,
                ..
            } => {
                let _ = writeln!(
                    out,
                    "  case: open {}; close {} (the part nearer the head, from {}) and {} (the part below, from {})",
                    network.switch(*switch).id,
                    network.switch(upstream.switch).id,
                    supply(upstream),
                    network.switch(downstream.switch).id,
                    supply(downstream)
                );
            }
        }
    }
    if restoration.cases.is_empty() {
        let _ = writeln!(out, "  no case: nothing feeds it when its head fails");
    }
}

fn tie_label(
    network: &Network,
    this: headroom_geodata::FeederIx,
    other: Option<headroom_geodata::FeederIx>,
) -> String {
    match other {
        Some(o) if o == this => "(within the feeder)".to_owned(),
        Some(o) => format!("(to {})", network.feeder(o).id),
        None => "(to no feeder)".to_owned(),
    }
}

fn print_node_path(out: &mut String, network: &Network, topology: &Topology, node: u32) {
    let node = headroom_geodata::NodeIx(node);
    let Some(placement) = topology.placement(node) else {
        let n = network.node(node);
        if n.node_type == headroom_geodata::NodeType::Busbar {
            let _ = writeln!(
                out,
                "{} is a busbar: feeders start here",
                node_label(network, node)
            );
            for (i, f) in network.feeders.iter().enumerate() {
                if f.head_node == node {
                    let _ = writeln!(
                        out,
                        "  feeder {} ({} nodes)",
                        f.id,
                        topology.feeders[i].node_count()
                    );
                }
            }
        } else {
            let _ = writeln!(
                out,
                "{} is on no feeder (an island)",
                node_label(network, node)
            );
        }
        return;
    };
    let tree = topology.tree(placement.feeder);
    let _ = writeln!(
        out,
        "node {} on feeder {}, {:.0} m from busbar {}",
        network.node(node).id,
        network.feeder(placement.feeder).id,
        tree.distance_m[placement.local as usize],
        network.node(tree.head()).id
    );
    for local in tree.path_from_busbar(placement.local) {
        let l = local as usize;
        let via = branch_label(network, tree.inbound[l]);
        if via.is_empty() {
            let _ = writeln!(out, "  {}", node_label(network, tree.nodes[l]));
        } else {
            let _ = writeln!(
                out,
                "  -> via {via} to {}  ({:.0} m)",
                node_label(network, tree.nodes[l]),
                tree.distance_m[l]
            );
        }
    }
}

/// Whether readings are written compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Compress {
    /// readings.csv.gz
    Always,
    /// readings.csv
    Never,
    /// gzip when the file would pass 200 MB
    Auto,
}

pub(crate) fn synth(
    outdir: &Path,
    substations: usize,
    seed: u64,
    days: u32,
    metered_share: f64,
    compress: Compress,
) -> Outcome {
    let config = SynthConfig {
        days,
        metered_share,
        compress_readings: match compress {
            Compress::Always => Some(true),
            Compress::Never => Some(false),
            Compress::Auto => None,
        },
        ..SynthConfig::city(substations, seed)
    };
    let summary =
        headroom_simulators::write_synthetic_gridpack(outdir, &config).map_err(|e| match e {
            headroom_simulators::synth::SynthError::Config { .. } => {
                Failure::bad_input(e.to_string())
            }
            _ => Failure {
                exit_code: 1,
                message: e.to_string(),
            },
        })?;
    println!("wrote {}", summary.network_file.display());
    for (kind, count) in &summary.counts {
        println!("  {:<24}{count:>9}", kind.as_str());
    }
    println!(
        "wrote {}: {} readings rows",
        summary.readings_file.display(),
        summary.readings_rows
    );
    Ok(())
}

/// The field-hardware simulators `simulate` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SimulatorKind {
    /// An OPC UA server standing in for the SCADA front-end.
    Opcua,
    /// A Modbus TCP gateway of monitoring terminals.
    Modbus,
    /// A metering head-end dropping interval files.
    Meters,
}

/// Runs a simulator until Ctrl-C.
pub(crate) fn simulate(
    kind: SimulatorKind,
    gridpack: &Path,
    listen: Option<&str>,
    speed: f64,
) -> Outcome {
    if !(speed.is_finite() && speed > 0.0) {
        return Err(Failure::bad_input(format!(
            "--speed {speed}: must be a positive number"
        )));
    }
    let gridpack = headroom_geodata::Gridpack::read(gridpack)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| Failure {
        exit_code: 1,
        message: format!("cannot start the async runtime: {e}"),
    })?;
    runtime.block_on(async move {
        match kind {
            SimulatorKind::Opcua => simulate_opcua(&gridpack, listen, speed).await,
            SimulatorKind::Modbus => simulate_modbus(&gridpack, listen, speed).await,
            SimulatorKind::Meters => simulate_meters(&gridpack, listen, speed).await,
        }
    })
}

async fn simulate_opcua(
    gridpack: &headroom_geodata::Gridpack,
    listen: Option<&str>,
    speed: f64,
) -> Outcome {
    use headroom_simulators::opcua::{
        OpcUaReplay, OpcUaSimulator, OpcUaSimulatorConfig, QUANTITIES, SIM_PASSWORD, SIM_USER,
    };
    let address = listen.unwrap_or("127.0.0.1:4840");
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| Failure::bad_input(format!("--listen {address}: {e}")))?;
    let replay = OpcUaReplay::from_gridpack(&gridpack.network, &gridpack.readings);
    let assets = replay.assets();
    let simulator = Arc::new(
        OpcUaSimulator::start(
            listener,
            OpcUaSimulatorConfig {
                assets: assets.clone(),
                pki_dir: None,
            },
        )
        .await
        .map_err(|e| Failure {
            exit_code: 1,
            message: format!("OPC UA simulator: {e}"),
        })?,
    );
    println!(
        "OPC UA server at {} (security none; anonymous or {SIM_USER}/{SIM_PASSWORD}) replaying {} feeders and transformers at {speed}x",
        simulator.endpoint_url(),
        assets.len()
    );
    if let Some(first) = assets.first() {
        println!(
            "variables per asset: {} (e.g. {})",
            QUANTITIES.join(", "),
            simulator.node_id(first, QUANTITIES[0])
        );
    }
    let _replay = replay.run(simulator.clone(), speed);
    let _ = tokio::signal::ctrl_c().await;
    simulator.stop().await;
    Ok(())
}

async fn simulate_modbus(
    gridpack: &headroom_geodata::Gridpack,
    listen: Option<&str>,
    speed: f64,
) -> Outcome {
    use headroom_simulators::modbus::{MAP, ModbusSimulator, Replay};
    let address = listen.unwrap_or("127.0.0.1:5020");
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| Failure::bad_input(format!("--listen {address}: {e}")))?;
    // Unit ids 1..=247 are the protocol's; a gateway serves at most that many.
    let (replay, units) = Replay::from_gridpack(&gridpack.network, &gridpack.readings, 247);
    let simulator = Arc::new(
        ModbusSimulator::start(listener, replay.unit_count())
            .await
            .map_err(|e| Failure {
                exit_code: 1,
                message: format!("modbus simulator: {e}"),
            })?,
    );
    println!(
        "Modbus TCP gateway on {} replaying {} transformers at {speed}x",
        simulator.address(),
        units.len()
    );
    println!(
        "register map per unit (input and holding, f32 big-endian): {}",
        MAP.iter()
            .enumerate()
            .map(|(i, q)| format!("{}-{} {q}", i * 2, i * 2 + 1))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (unit, transformer) in &units {
        println!("unit {unit} = {transformer}");
    }
    let _replay = replay.run(simulator.clone(), speed);
    let _ = tokio::signal::ctrl_c().await;
    simulator.stop().await;
    Ok(())
}

async fn simulate_meters(
    gridpack: &headroom_geodata::Gridpack,
    listen: Option<&str>,
    speed: f64,
) -> Outcome {
    use headroom_simulators::meter_files::{days_from_gridpack, drop_file};
    let folder = PathBuf::from(listen.unwrap_or("./meter-drop"));
    std::fs::create_dir_all(&folder)
        .map_err(|e| Failure::bad_input(format!("--listen {}: {e}", folder.display())))?;
    let days = days_from_gridpack(&gridpack.network, &gridpack.readings, 0);
    println!(
        "dropping {} days of meter files into {} at {speed}x (meter M-<transformer id>)",
        days.len(),
        folder.display()
    );
    let day = std::time::Duration::from_secs_f64(86_400.0 / speed);
    let mut round = 0;
    loop {
        for (date, meters) in &days {
            tokio::select! {
                () = tokio::time::sleep(day) => {}
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
            let name = format!("meters-{}-r{round}.csv", date.format("%Y-%m-%d"));
            let path = drop_file(&folder, &name, meters).map_err(|e| Failure {
                exit_code: 1,
                message: format!("{}: {e}", folder.display()),
            })?;
            println!("dropped {}", path.display());
        }
        round += 1;
    }
}
