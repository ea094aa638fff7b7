//! The `headroom` command: CLI parsing and wiring only (see `shared/spec/api.md`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod allocator;
mod cluster;
mod commands;
mod demo;
mod relay;
mod serve;

/// Headroom: where a new customer can be connected to the distribution grid, and how.
#[derive(Debug, Parser)]
#[command(name = "headroom", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Local folder of the write-ahead log when --data-dir is an s3:// URL
    /// (object storage cannot append and fsync); a local data dir keeps its log
    /// in its own `wal/`.
    #[arg(long, global = true, env = "HEADROOM_WAL_DIR", default_value = headroom_store::DataLocation::DEFAULT_S3_WAL_DIR)]
    wal_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a gridpack and summarise it: counts per kind, feeders, warnings,
    /// readings taken and rejected; with --data-dir, keep its network and readings
    /// in that store.
    ///
    /// Exit 0 when the network is valid (rejected readings rows are listed, the rest
    /// taken), 2 when the network, the readings header or a file is bad.
    Import {
        /// The gridpack folder (network.geojson, optional readings.csv[.gz]).
        gridpack: PathBuf,
        /// The store's data folder (or s3://bucket/prefix) to load the gridpack into.
        #[arg(long)]
        data_dir: Option<String>,
    },
    /// Print a feeder's radial tree, or a node's path to its busbar.
    Inspect {
        /// The gridpack folder.
        gridpack: PathBuf,
        /// A feeder id or a node id.
        id: String,
    },
    /// Rank connection points and supply schemes for applications, with no server.
    ///
    /// Exit 2 when the gridpack or an application is bad (the message names the
    /// file, line or field).
    Rank {
        /// The gridpack folder (or name --data-dir).
        gridpack: Option<PathBuf>,
        /// A store's data folder (or s3://bucket/prefix) instead of a gridpack.
        #[arg(long)]
        data_dir: Option<String>,
        /// Applications file (a JSON array); default GRIDPACK/applications.json.
        #[arg(long)]
        applications: Option<PathBuf>,
        /// Print a JSON array of ranking results.
        #[arg(long)]
        json: bool,
    },
    /// Headroom of every asset at a level: feeders, distribution transformers or
    /// substations.
    Capacity {
        /// The gridpack folder (or name --data-dir).
        gridpack: Option<PathBuf>,
        /// A store's data folder (or s3://bucket/prefix) instead of a gridpack.
        #[arg(long)]
        data_dir: Option<String>,
        /// Which assets.
        #[arg(long, value_enum, default_value_t = commands::CapacityLevel::Feeder)]
        level: commands::CapacityLevel,
        /// Print a JSON array of rows (the same as `--format json`).
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// How to print the rows: a table, JSON, CSV (one line per asset, for
        /// publication) or GeoJSON (each asset's geometry with its row).
        #[arg(long, value_enum, default_value_t = commands::CapacityFormat::Table)]
        format: commands::CapacityFormat,
    },
    /// Run a read-only SQL query over the store (tables `readings`, `assets`,
    /// `rejected`) and print the result as a table; with --cluster, over the
    /// flushed history (`readings`, `assets`) on a Ballista cluster.
    Sql {
        /// The store's data folder, or s3://bucket/prefix.
        #[arg(long, default_value = "./headroom-data")]
        data_dir: String,
        /// A Ballista scheduler, df://HOST:PORT (see `headroom cluster`).
        #[arg(long)]
        cluster: Option<String>,
        /// With --cluster: refuse an answer of more rows than this.
        #[arg(long, default_value_t = 1_000_000)]
        max_rows: usize,
        /// With --cluster: give up on a query after this long, s.
        #[arg(long, default_value_t = 600)]
        timeout_s: u64,
        /// The query: SELECT ... (anything else is refused).
        query: String,
    },
    /// Run a role of a Ballista cluster that answers SQL over the store's
    /// flushed history (the day files in a folder every node shares, or S3).
    Cluster {
        #[command(subcommand)]
        role: ClusterRole,
    },
    /// Store readings from standard input: CSV lines `ts,asset,quantity,value[,quality]`
    /// (ts in ms since the epoch or RFC 3339); an empty line ends a batch, and
    /// `acked N ACCEPTED REJECTED` is printed once batch N is durable.
    Ingest {
        /// The store's data folder or s3://bucket/prefix (import a network into it first).
        #[arg(long, default_value = "./headroom-data")]
        data_dir: String,
        /// Group-commit interval of the write-ahead log, ms.
        #[arg(long, default_value_t = headroom_store::StoreConfig::default_wal_flush_interval_ms())]
        flush_interval_ms: u64,
        /// Flush the buffer to Parquet once it holds this many bytes.
        #[arg(long, default_value_t = headroom_store::StoreConfig::default_buffer_max_bytes())]
        buffer_max_bytes: usize,
    },
    /// Run a stand-in for field hardware until interrupted: a SCADA server, a
    /// Modbus gateway or a metering head-end replaying a gridpack's readings,
    /// or a one-way isolation device between two folders.
    Simulate {
        #[command(subcommand)]
        simulator: Simulator,
    },
    /// Run the configured connectors (OPC UA, Modbus, metering files) with no
    /// store, API or map, and write their readings as signed batch files into an
    /// outbox, for a one-way isolation device to carry out of the production
    /// zone.
    ///
    /// Exit 2 when the config or the key is bad (the message names the field).
    Collect {
        /// The collector's TOML: a `[collector]` table (stream, key, state_dir,
        /// batch and retention settings), `[[connector]]` tables as in the
        /// service's config, and optionally the `network` to check asset ids
        /// against.
        #[arg(long)]
        config: PathBuf,
        /// The folder the isolation device takes files from.
        #[arg(long)]
        outbox: PathBuf,
    },
    /// Keys and files of the one-way relay: key pairs, resending a collector's
    /// kept files.
    Relay {
        #[command(subcommand)]
        command: RelayCommand,
    },
    /// Run the HTTP API, the capacity map and the configured connectors.
    ///
    /// `--demo` needs no config: it generates a demo city, starts the OPC UA,
    /// Modbus and metering simulators in-process, ingests their live feeds,
    /// serves on 127.0.0.1:8080 and prints the URL and a planner token.
    Serve {
        /// The service's TOML config (see headroom.example.toml); every setting
        /// can also be set by a HEADROOM_... environment variable.
        #[arg(long, env = "HEADROOM_CONFIG")]
        config: Option<PathBuf>,
        /// Run on a generated demo grid with simulated field hardware.
        #[arg(long)]
        demo: bool,
    },
    /// Print a new API token for a role and the config lines that grant it.
    Token {
        /// viewer, planner, workflow, ingest or admin.
        role: String,
        /// Who will hold it (kept in the config and the audit trail).
        #[arg(long)]
        name: Option<String>,
    },
    /// Write a synthetic city distribution grid as a gridpack.
    Synth {
        /// Folder to write network.geojson and readings.csv[.gz] into.
        outdir: PathBuf,
        /// Number of 110 kV substations (15 feeders each).
        #[arg(long, default_value_t = 200)]
        substations: usize,
        /// Random seed; the same seed gives the same grid.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Days of 15-minute readings.
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// Share of distribution transformers with readings, 0 to 1.
        #[arg(long, default_value_t = 0.8)]
        metered_share: f64,
        /// Compress readings to readings.csv.gz: always, never, or auto (by size).
        #[arg(long, value_enum, default_value_t = commands::Compress::Auto)]
        compress: commands::Compress,
    },
}

#[derive(Debug, Subcommand)]
enum Simulator {
    /// A SCADA server with P, Q, I and U variables per feeder and transformer.
    Opcua(ReplayArgs),
    /// A gateway of monitoring terminals (one unit id per transformer; the
    /// register map is printed).
    Modbus(ReplayArgs),
    /// A metering head-end dropping one wide-form interval file per simulated day.
    Meters(ReplayArgs),
    /// A one-way isolation device: moves every file from one folder to another
    /// with the faults real links show, printing what it did with each
    /// (`delivered`, `corrupted`, `dropped`, `duplicated NAME`).
    IsolationDevice {
        /// The folder files are taken from (a collector's outbox).
        #[arg(long)]
        from: PathBuf,
        /// The folder they are delivered to (an inbox).
        #[arg(long)]
        to: PathBuf,
        /// Chance a file is lost, 0 to 1.
        #[arg(long, default_value_t = 0.0)]
        drop: f64,
        /// Chance a file is delivered twice, 0 to 1.
        #[arg(long, default_value_t = 0.0)]
        duplicate: f64,
        /// Release files in random order within a window of this many.
        #[arg(long, default_value_t = 0)]
        reorder: usize,
        /// Chance a delivered copy has one byte changed, 0 to 1.
        #[arg(long, default_value_t = 0.0)]
        corrupt: f64,
        /// Deliver every file this late, ms.
        #[arg(long, default_value_t = 0)]
        delay: u64,
        /// Seed of the faults' random choices.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

/// A replaying simulator's options.
#[derive(Debug, clap::Args)]
struct ReplayArgs {
    /// The gridpack whose readings are replayed.
    #[arg(long)]
    gridpack: PathBuf,
    /// opcua: the address to listen on (default 127.0.0.1:4840); modbus: the
    /// address to listen on (default 127.0.0.1:5020); meters: the
    /// folder to drop files into (default ./meter-drop).
    #[arg(long)]
    listen: Option<String>,
    /// Simulated seconds per second of wall time (the readings loop).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
}

#[derive(Debug, Subcommand)]
enum ClusterRole {
    /// The scheduler: plans queries over the data dir's files and hands their
    /// tasks to executors.
    Scheduler {
        /// Where clients and executors reach it.
        #[arg(long, default_value = "127.0.0.1:50050")]
        bind: std::net::SocketAddr,
        /// The store's data folder (shared with every node) or s3://bucket/prefix
        /// (credentials from the usual AWS_* variables).
        #[arg(long, default_value = "./headroom-data")]
        data_dir: String,
        /// An executor silent this long is lost and its tasks run elsewhere, s
        /// (at least 6: executors beat every 2 s); a job that lost one and
        /// then completes no stage for three times this is cancelled.
        #[arg(long, default_value_t = 20)]
        executor_timeout_s: u64,
    },
    /// An executor: runs tasks, reading the data dir's files.
    Executor {
        /// The scheduler, df://HOST:PORT.
        #[arg(long)]
        scheduler: String,
        /// Where it serves results and shuffles (a fixed port: it is advertised).
        #[arg(long, default_value = "127.0.0.1:50051")]
        bind: std::net::SocketAddr,
        /// Its port for the scheduler's tasks (default: --bind's port + 1).
        #[arg(long)]
        grpc_port: Option<u16>,
        /// Tasks at once (default: the cores).
        #[arg(long)]
        concurrency: Option<usize>,
        /// Memory for its tasks, MB.
        #[arg(long, default_value_t = 1024)]
        memory_mb: u64,
        /// Its folder for shuffle files (default: one under the temp folder).
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// The store's data folder (the same files as the scheduler's) or
        /// s3://bucket/prefix.
        #[arg(long, default_value = "./headroom-data")]
        data_dir: String,
    },
}

#[derive(Debug, Subcommand)]
enum RelayCommand {
    /// Write a new key pair: OUT.key (PKCS#8 PEM, owner-only) and OUT.pub
    /// (give this one to the receiving side).
    Keygen {
        /// ed25519 (default) or sm2 (SM2 signatures over SM3).
        #[arg(long, value_enum, default_value_t = KeyAlgorithm::Ed25519)]
        algorithm: KeyAlgorithm,
        /// Path prefix of the two files.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a requests file (a JSON array of `register`, `reserve`, `release`
    /// actions) as the next file of a stream and put it in an outbox: the
    /// business hall's end.
    ///
    /// Exit 2 when the requests or the key are bad (the message names the action).
    Send {
        /// The requests: a JSON array of actions.
        requests: PathBuf,
        /// The private key that signs.
        #[arg(long)]
        key: PathBuf,
        /// The sender's stream.
        #[arg(long)]
        stream: String,
        /// The stream's own folder: sent files and the last number delivered.
        #[arg(long)]
        state_dir: PathBuf,
        /// The folder the device takes files from.
        #[arg(long)]
        outbox: PathBuf,
    },
    /// Verify the answers files a device delivered into a folder, print each
    /// as a JSON line (`{"stream", "sequence", "answers"}`) and move it to
    /// `done/`; a file that fails is moved to `rejected/` with its reason.
    ///
    /// Exit 2 when a file was rejected.
    Receive {
        /// The folder the device delivers into.
        #[arg(long)]
        inbox: PathBuf,
        /// The service's public key.
        #[arg(long)]
        key: PathBuf,
        /// The answers' stream.
        #[arg(long, default_value = "answers")]
        stream: String,
    },
    /// Put a collector's kept files back in its outbox: the numbers a receiver
    /// reports as gaps.
    Resend {
        /// The collector's TOML (for its stream and state folder).
        #[arg(long)]
        config: PathBuf,
        /// The collector's outbox.
        #[arg(long)]
        outbox: PathBuf,
        /// The stream (must be the collector's).
        #[arg(long)]
        stream: String,
        /// First number to resend.
        #[arg(long)]
        from: u64,
        /// Last number to resend.
        #[arg(long)]
        to: u64,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum KeyAlgorithm {
    Ed25519,
    Sm2,
}

fn main() -> ExitCode {
    allocator::keep_freed_memory();
    let cli = Cli::parse();
    let wal_dir = cli.wal_dir;
    let location = |text: &str| commands::location(text, &wal_dir);
    let outcome = match cli.command {
        Command::Import { gridpack, data_dir } => data_dir
            .as_deref()
            .map(location)
            .transpose()
            .and_then(|data_dir| commands::import(&gridpack, data_dir.as_ref())),
        Command::Inspect { gridpack, id } => commands::inspect(&gridpack, &id),
        Command::Rank {
            gridpack,
            data_dir,
            applications,
            json,
        } => data_dir
            .as_deref()
            .map(location)
            .transpose()
            .and_then(|data_dir| commands::Source::pick(gridpack, data_dir))
            .and_then(|source| commands::rank(&source, applications.as_deref(), json)),
        Command::Capacity {
            gridpack,
            data_dir,
            level,
            json,
            format,
        } => data_dir
            .as_deref()
            .map(location)
            .transpose()
            .and_then(|data_dir| commands::Source::pick(gridpack, data_dir))
            .and_then(|source| {
                let format = if json {
                    commands::CapacityFormat::Json
                } else {
                    format
                };
                commands::capacity(&source, level, format)
            }),
        Command::Sql {
            data_dir,
            cluster: None,
            query,
            ..
        } => location(&data_dir).and_then(|data_dir| commands::sql(&data_dir, &query)),
        Command::Sql {
            data_dir,
            cluster: Some(url),
            max_rows,
            timeout_s,
            query,
        } => location(&data_dir).and_then(|data_dir| {
            cluster::sql(
                &data_dir,
                &url,
                &query,
                cluster::limits(max_rows, timeout_s),
            )
        }),
        Command::Cluster { role } => match role {
            ClusterRole::Scheduler {
                bind,
                data_dir,
                executor_timeout_s,
            } => location(&data_dir)
                .and_then(|data_dir| cluster::scheduler(bind, data_dir, executor_timeout_s)),
            ClusterRole::Executor {
                scheduler,
                bind,
                grpc_port,
                concurrency,
                memory_mb,
                work_dir,
                data_dir,
            } => location(&data_dir).and_then(|data_dir| {
                cluster::executor(cluster::executor_settings(
                    bind,
                    grpc_port,
                    scheduler,
                    concurrency,
                    memory_mb,
                    work_dir.as_deref(),
                    data_dir,
                ))
            }),
        },
        Command::Ingest {
            data_dir,
            flush_interval_ms,
            buffer_max_bytes,
        } => location(&data_dir)
            .and_then(|data_dir| commands::ingest(&data_dir, flush_interval_ms, buffer_max_bytes)),
        Command::Simulate { simulator } => match simulator {
            Simulator::Opcua(args) => simulate(commands::SimulatorKind::Opcua, args),
            Simulator::Modbus(args) => simulate(commands::SimulatorKind::Modbus, args),
            Simulator::Meters(args) => simulate(commands::SimulatorKind::Meters, args),
            Simulator::IsolationDevice {
                from,
                to,
                drop,
                duplicate,
                reorder,
                corrupt,
                delay,
                seed,
            } => relay::isolation_device(
                &from,
                &to,
                headroom_simulators::isolation_device::Faults {
                    drop,
                    duplicate,
                    reorder,
                    corrupt,
                    delay: std::time::Duration::from_millis(delay),
                },
                seed,
            ),
        },
        Command::Collect { config, outbox } => relay::collect(&config, &outbox),
        Command::Relay { command } => match command {
            RelayCommand::Keygen { algorithm, out } => relay::keygen(
                match algorithm {
                    KeyAlgorithm::Ed25519 => headroom_relay::Algorithm::Ed25519,
                    KeyAlgorithm::Sm2 => headroom_relay::Algorithm::Sm2,
                },
                &out,
            ),
            RelayCommand::Resend {
                config,
                outbox,
                stream,
                from,
                to,
            } => relay::resend(&config, &outbox, &stream, from, to),
            RelayCommand::Send {
                requests,
                key,
                stream,
                state_dir,
                outbox,
            } => relay::send(&requests, &key, &stream, &state_dir, &outbox),
            RelayCommand::Receive { inbox, key, stream } => relay::receive(&inbox, &key, &stream),
        },
        Command::Serve { config, demo } => serve::serve(config.as_deref(), demo, &wal_dir),
        Command::Token { role, name } => serve::token(&role, name.as_deref()),
        Command::Synth {
            outdir,
            substations,
            seed,
            days,
            metered_share,
            compress,
        } => commands::synth(&outdir, substations, seed, days, metered_share, compress),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.exit_code)
        }
    }
}

fn simulate(kind: commands::SimulatorKind, args: ReplayArgs) -> commands::Outcome {
    commands::simulate(kind, &args.gridpack, args.listen.as_deref(), args.speed)
}
