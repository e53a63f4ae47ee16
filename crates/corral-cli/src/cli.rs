//! Raw command-line arguments, as clap parses them. Values that need context to validate
//! (core lists, counts) stay strings here so that errors can quote them; `settings` resolves
//! them together with the environment.

use std::ffi::OsString;

use clap::{Args, Parser, Subcommand};
use corral_cores::DeviceSpec;

#[derive(Debug, Parser)]
#[command(name = "corral", version, about = "Exclusive cores for inference processes", max_term_width = 100)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show each core of a device and who owns it
    Ls(LsArgs),
    /// Run a command on cores of its own: pinned, with the lease handed down
    Launch(LaunchArgs),
    /// Take cores and hold them until interrupted (fences them off from other processes)
    Reserve(ReserveArgs),
}

#[derive(Debug, Args)]
pub struct DeviceArg {
    /// cpu, cpu:logical, sim:N or sim:<instance type> [default: $CORRAL_DEVICE, else cpu]
    #[arg(long, value_parser = parse_device)]
    pub device: Option<DeviceSpec>,
}

fn parse_device(text: &str) -> Result<DeviceSpec, String> {
    text.parse().map_err(|e: corral_cores::DeviceSpecError| e.to_string())
}

#[derive(Debug, Args)]
pub struct CoreArgs {
    /// Take the first run of N consecutive free cores [default: $CORRAL_NUM_CORES]
    #[arg(long, value_name = "N", conflicts_with = "visible_cores")]
    pub num_cores: Option<String>,
    /// Take exactly these global cores: 4, 4-5, 0,1,2 [default: $CORRAL_VISIBLE_CORES]
    #[arg(long, value_name = "LIST")]
    pub visible_cores: Option<String>,
    /// Legacy NeuronCore groups, e.g. 2,4,3,4 [default: $CORRAL_GROUP_SIZES]
    #[arg(long, value_name = "SIZES")]
    pub group_sizes: Option<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub device: DeviceArg,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LaunchArgs {
    #[command(flatten)]
    pub device: DeviceArg,
    #[command(flatten)]
    pub cores: CoreArgs,
    /// Start this many copies, each on its own consecutive cores
    #[arg(long, value_name = "I", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub instances: u32,
    /// The command and its arguments
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct ReserveArgs {
    #[command(flatten)]
    pub device: DeviceArg,
    #[command(flatten)]
    pub cores: CoreArgs,
    /// Release after this many seconds instead of waiting for a signal
    #[arg(long, value_name = "SECS")]
    pub seconds: Option<f64>,
    /// Print what was taken as one JSON line
    #[arg(long)]
    pub json: bool,
}
