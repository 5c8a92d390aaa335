//! Command line: `affectd run | simulate | train | retrain | replay | check-config`.
//!
//! Each command parses its arguments and hands over to the library module that does the work.
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::Config;

#[derive(Parser, Debug)]
#[command(
    name = "affectd",
    version,
    about = "Real-time EEG emotion recognition daemon"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon: LSL EEG in, emotion estimates out (LSL, JSON lines, metrics).
    Run(RunArgs),
    /// Publish a simulated EEG headset (and its state markers) over LSL.
    Simulate(SimulateArgs),
    /// Train, calibrate (prefrontal Grad-CAM), quantise (QAT) and install an int8 model.
    #[cfg(feature = "train")]
    Train(crate::train::cli::TrainArgs),
    /// Retrain from recorded sessions (XDF files with labelled markers) and install the model.
    #[cfg(feature = "train")]
    Retrain(crate::train::cli::RetrainArgs),
    /// Publish the streams of recorded XDF files over LSL, with their metadata and timing.
    Replay(ReplayArgs),
    /// Validate a config file and print what it configures.
    CheckConfig {
        /// The TOML config file.
        file: PathBuf,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Config file (TOML; see config/README.md).
    #[arg(long, default_value = "config/affectd.toml")]
    config: PathBuf,
    /// Also start the built-in simulated headset and read from it (no headset needed).
    #[arg(long)]
    simulate: bool,
    /// Stop after this many seconds (default: run until SIGTERM/SIGINT).
    #[arg(long)]
    duration: Option<f64>,
    /// Override stream.name: read the LSL stream with this name.
    #[arg(long)]
    stream_name: Option<String>,
    /// Override model.path.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Override metrics.enabled = false (no HTTP endpoint).
    #[arg(long)]
    no_metrics: bool,
}

#[derive(Args, Debug)]
struct SimulateArgs {
    /// Config file whose [simulate] section sets the simulator.
    #[arg(long, default_value = "config/affectd.toml")]
    config: PathBuf,
    /// Stop after this many seconds (default: until SIGTERM/SIGINT).
    #[arg(long)]
    duration: Option<f64>,
    /// Strength of the class-dependent effects (0 = no emotion information).
    #[arg(long)]
    effect_strength: Option<f64>,
    /// LSL stream name (the marker stream is NAME-markers).
    #[arg(long)]
    name: Option<String>,
    /// Sample rate in Hz.
    #[arg(long)]
    sample_rate: Option<f64>,
}

#[derive(Args, Debug)]
struct ReplayArgs {
    /// XDF files to publish.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Playback speed factor (1 = real time).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// As fast as possible (ignores --speed).
    #[arg(long)]
    fast: bool,
    /// Start over at the end.
    #[arg(long = "loop")]
    looped: bool,
}

pub fn main() -> ExitCode {
    // The PyPI onnxruntime build writes telemetry files (and may upload them) unless this is set
    // before the library loads; set here while the process is still single-threaded.
    if std::env::var_os("ORT_DISABLE_TELEMETRY").is_none() {
        std::env::set_var("ORT_DISABLE_TELEMETRY", "1");
    }
    let cli = Cli::parse();
    let level = match &cli.command {
        Command::Run(args) => Config::load(&args.config)
            .map(|c| c.log.level)
            .unwrap_or_else(|_| "info".into()),
        _ => "info".into(),
    };
    let log_handle = crate::service::logging::init_logging(&level);
    let result = match cli.command {
        Command::Run(args) => run(args, &log_handle),
        Command::Simulate(args) => simulate(args),
        #[cfg(feature = "train")]
        Command::Train(args) => crate::train::cli::train(args),
        #[cfg(feature = "train")]
        Command::Retrain(args) => crate::train::cli::retrain(args),
        Command::Replay(args) => replay(args),
        Command::CheckConfig { file } => crate::config::check(&file)
            .map(|summary| println!("{summary}"))
            .map_err(anyhow::Error::from),
    };
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("affectd: {e:#}");
            ExitCode::FAILURE
        }
    };
    crate::service::logging::flush_logs();
    code
}

fn run(args: RunArgs, log: &crate::service::logging::ReloadHandle) -> anyhow::Result<()> {
    let mut config = Config::load(&args.config)?;
    if let Some(name) = args.stream_name {
        config.stream.name = Some(name);
    }
    if let Some(model) = args.model {
        config.model.path = model;
    }
    if args.no_metrics {
        config.metrics.enabled = false;
    }
    crate::lsl_env::configure(config.lsl.api_config.as_deref())?;
    let (control, _signals) = crate::service::signals::spawn_signal_listener()?;
    let opts = crate::pipeline::RunOptions {
        config_path: Some(args.config.clone()),
        simulate: args.simulate,
        duration: args.duration.map(Duration::from_secs_f64),
    };
    crate::pipeline::run(config, opts, control, Some(log.clone()))?;
    Ok(())
}

fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    crate::lsl_env::configure(config.lsl.api_config.as_deref())?;
    let mut sim = crate::pipeline::sim_config(&config.simulate);
    if let Some(s) = args.effect_strength {
        sim.effect_strength = s;
    }
    if let Some(rate) = args.sample_rate {
        sim.sample_rate_hz = rate;
    }
    if let Some(name) = args.name {
        sim.source_id = format!("{name}-source");
        sim.stream_name = name;
    }
    let stop = stop_on_signal()?;
    tracing::info!(
        "simulating '{}': {} channels at {} Hz, effect strength {}",
        sim.stream_name,
        sim.channels.len(),
        sim.sample_rate_hz,
        sim.effect_strength
    );
    crate::simulate::publish(&sim, 1.0, &stop, args.duration.map(Duration::from_secs_f64))
}

fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    use crate::record::replay::{replay, ReplaySpeed};
    crate::lsl_env::configure(None)?;
    let speed = if args.fast {
        ReplaySpeed::AsFastAsPossible
    } else if (args.speed - 1.0).abs() < f64::EPSILON {
        ReplaySpeed::RealTime
    } else {
        anyhow::ensure!(args.speed > 0.0, "--speed must be > 0 (got {})", args.speed);
        ReplaySpeed::Factor(args.speed)
    };
    let stop = stop_on_signal()?;
    let stats = replay(&args.files, speed, args.looped, &stop).context("replay")?;
    tracing::info!("replay finished: {stats:?}");
    Ok(())
}

/// A flag set by SIGTERM/SIGINT, for the simple foreground commands.
fn stop_on_signal() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    Ok(stop)
}
