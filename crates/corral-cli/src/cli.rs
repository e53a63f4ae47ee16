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
    /// Place a repository's models without running them and draw the core map
    Plan(PlanArgs),
    /// Load a repository's models with their placement and drive load from many threads
    Bench(BenchArgs),
    /// Place and run real models on this machine, then a FlexEG layout on a simulated inf1.6xlarge
    Demo(DemoArgs),
    /// Serve a repository's models over KServe v2 REST and gRPC (Triton-compatible), with metrics
    Serve(ServeArgs),
    /// Print the resources a Ray node should declare for this device: {"neuron_cores": N}
    RayResources(RayResourcesArgs),
    /// Watch each core and model live: owners, utilisation, calls, latency (like neuron-top)
    Top(TopArgs),
    /// Print a JSON report per period in neuron-monitor's shape
    Monitor(MonitorArgs),
    /// Run a kubelet device plugin that advertises this device's cores to Kubernetes
    DevicePlugin(DevicePluginArgs),
}

#[derive(Debug, Args)]
pub struct DevicePluginArgs {
    #[command(flatten)]
    pub device: DeviceArg,
    /// The extended resource the cores count for (DOMAIN/NAME)
    #[arg(long, value_name = "NAME", default_value = corral_kube::RESOURCE_NAME_DEFAULT)]
    pub resource_name: String,
    /// The kubelet's device-plugin folder, where its socket and the plugin's are
    #[arg(long, value_name = "DIR", default_value = corral_kube::api::DEVICE_PLUGIN_PATH)]
    pub kubelet_dir: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub device: DeviceArg,
    /// Time between refreshes: 1s, 500ms, 2 [default: 1s]
    #[arg(long, value_name = "S")]
    pub interval: Option<String>,
    /// Print one frame as text and exit
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Args)]
pub struct MonitorArgs {
    #[command(flatten)]
    pub device: DeviceArg,
    /// A neuron-monitor configuration file (period, neuron_runtimes[{tag_filter, metrics}], system_metrics)
    #[arg(short = 'c', long = "config-file", value_name = "CONFIG.json")]
    pub config_file: Option<std::path::PathBuf>,
    /// Time between reports: 1s, 500ms, 2 [default: the config's, else 5s]
    #[arg(long, value_name = "S")]
    pub period: Option<String>,
    /// Exit after this many reports
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

#[derive(Debug, Args)]
pub struct RayResourcesArgs {
    #[command(flatten)]
    pub device: DeviceArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ControlArg {
    /// Load every model of the repository at start; the repository API cannot change them
    None,
    /// Load only --load-model at start, then what the repository API asks
    Explicit,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A Triton-style repository: DIR/<model>/config.toml or config.pbtxt, DIR/<model>/<version>/model.onnx
    #[arg(long, value_name = "DIR")]
    pub model_repository: std::path::PathBuf,
    #[command(flatten)]
    pub device: DeviceArg,
    #[command(flatten)]
    pub cores: CoreArgs,
    /// Address to listen on (every port); 127.0.0.1 keeps the server local
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// REST port (0: any free port)
    #[arg(long, default_value_t = 8000)]
    pub http_port: u16,
    /// gRPC port (0: any free port)
    #[arg(long, default_value_t = 8001)]
    pub grpc_port: u16,
    /// Prometheus metrics port, path /metrics (0: any free port)
    #[arg(long, default_value_t = 8002)]
    pub metrics_port: u16,
    #[arg(long, value_enum, default_value = "none")]
    pub model_control_mode: ControlArg,
    /// A model to load at start in explicit mode (repeat for more; `*`: every model, as Triton)
    #[arg(long, value_name = "NAME")]
    pub load_model: Vec<String>,
    /// Triton's flag: a level above 0 logs the server's details (as -vv)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub log_verbose: u32,
    /// Let the autopilot move cores between the models as the load shifts (as CORRAL_AUTOPILOT=1)
    #[arg(long)]
    pub autopilot: bool,
    /// Threads serving REST, gRPC and metrics (one pool) [default: half the CPUs the process
    /// may run on, 1 to 8]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub server_threads: Option<u16>,
    /// Largest request accepted over REST and gRPC, in bytes [default: 64 MiB]
    #[arg(long, value_name = "BYTES", value_parser = parse_byte_limit)]
    pub max_body_bytes: Option<usize>,
    /// Triton's flag: the largest REST request body, in bytes (gRPC keeps its default)
    #[arg(long, value_name = "BYTES", value_parser = parse_byte_limit, conflicts_with = "max_body_bytes")]
    pub http_max_input_size: Option<usize>,
    /// Triton's trace file: traced requests are written here (the API cannot change it)
    #[arg(long, value_name = "FILE")]
    pub trace_file: Option<std::path::PathBuf>,
    /// Trace level at start: OFF or TIMESTAMPS (changeable through /v2/trace/setting)
    #[arg(long, value_enum, default_value = "off")]
    pub trace_level: TraceLevelArg,
    /// Trace every Nth request (N > 0)
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub trace_rate: u32,
    /// Traces to take before stopping; -1 for no limit
    #[arg(long, value_name = "N", default_value_t = -1, allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(-1..))]
    pub trace_count: i32,
    /// Write every N traces to FILE.<i>; 0 writes them all to FILE when the server stops
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub trace_log_frequency: u32,
    /// Triton's flag: ready only while every model loaded at start (and since) is ready
    /// (true|false, on|off, 1|0)
    #[arg(long, value_name = "BOOL", default_value = "true", action = clap::ArgAction::Set, value_parser = triton_bool)]
    pub strict_readiness: bool,
    /// Triton's flag: stop the server when a model fails to load at start [default: false,
    /// where Triton's is true: one bad model never stops the others from serving]
    #[arg(long, value_name = "BOOL", default_value = "false", action = clap::ArgAction::Set, value_parser = triton_bool)]
    pub exit_on_error: bool,
    /// Triton's flag: REST calls of these categories need this header and value,
    /// `<categories>:<header>=<value>` (health, metadata, inference, shared-memory,
    /// model-config, model-repository, statistics, trace, logging; repeat for more)
    #[arg(long, value_name = "APIS:KEY=VALUE")]
    pub http_restricted_api: Vec<String>,
    /// Triton's flag: gRPC calls of these categories need the header
    /// `triton-grpc-protocol-<key>` with this value (as --http-restricted-api)
    #[arg(long, value_name = "PROTOCOLS:KEY=VALUE")]
    pub grpc_restricted_protocol: Vec<String>,
    /// Triton's flag: clients may register shared-memory regions [default: true, where
    /// Triton's is false: corral's clients have always used them]
    #[arg(long, value_name = "BOOL", default_value = "true", action = clap::ArgAction::Set, value_parser = triton_bool)]
    pub allow_client_shm: bool,
    /// The live page of cores and models at /dashboard on the metrics port (it shows every
    /// corral process's pid and command line on this host, so it is never on the inference port)
    #[arg(long, value_name = "ON|OFF", default_value = "on")]
    pub dashboard: OnOff,
    /// Triton's flag: Python models' auto_complete_config is not called; their configuration
    /// must declare every input and output
    #[arg(long)]
    pub disable_auto_complete_config: bool,
}

/// A switch written `on` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

impl OnOff {
    pub fn is_on(self) -> bool {
        self == OnOff::On
    }
}

/// A bool as Triton's command line reads one (command_line_parser.cc, `ParseOption<bool>`):
/// `true`, `on`, `1` or `false`, `off`, `0`, in any case.
fn triton_bool(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "on" | "1" => Ok(true),
        "false" | "off" | "0" => Ok(false),
        _ => Err(format!("invalid value for bool option: {text}")),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TraceLevelArg {
    #[value(name = "off", alias = "OFF")]
    Off,
    #[value(name = "timestamps", alias = "TIMESTAMPS")]
    Timestamps,
}

/// A request size limit: a whole number of bytes, more than 0 (Triton refuses 0 and negative
/// sizes: "--http-max-input-size must be greater than 0").
fn parse_byte_limit(text: &str) -> Result<usize, String> {
    match text.parse::<i128>() {
        Ok(n) if n <= 0 => Err("must be greater than 0".to_owned()),
        Ok(n) => usize::try_from(n).map_err(|_| format!("`{text}` is more bytes than this machine can address")),
        Err(_) => Err(format!("`{text}` is not a whole number of bytes")),
    }
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
    /// Take exactly these global cores: 4, 4-5, 0,1,2, 1,3 [default: $CORRAL_VISIBLE_CORES]
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
    /// Start this many copies, each on its own cores
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

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ModelsArg {
    /// A Triton-style repository: DIR/<model>/config.toml and DIR/<model>/<version>/model.onnx
    #[arg(long, value_name = "DIR")]
    pub model_repository: Option<std::path::PathBuf>,
    /// A single .onnx file
    #[arg(value_name = "MODEL")]
    pub model: Option<std::path::PathBuf>,
}

impl ModelsArg {
    pub fn path(&self) -> &std::path::Path {
        self.model_repository.as_deref().or(self.model.as_deref()).expect("clap requires one of them")
    }
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub models: ModelsArg,
    #[command(flatten)]
    pub device: DeviceArg,
    #[command(flatten)]
    pub cores: CoreArgs,
    /// Print JSON instead of the core map
    #[arg(long)]
    pub json: bool,
    /// Also draw the core map as SVG into FILE
    #[arg(long, value_name = "FILE")]
    pub svg: Option<std::path::PathBuf>,
    /// Choose the layout: instances in proportion to demand, no core shared while the cores suffice
    #[arg(long)]
    pub optimize: bool,
    /// With --optimize, lightly loaded single-core models may be made elastic
    #[arg(long, requires = "optimize")]
    pub elastic: bool,
    /// With --optimize, write the layout into each model's config.toml or config.pbtxt
    #[arg(long, requires = "optimize")]
    pub write: bool,
    /// Simulate the layout (the configured one, or the optimised one) in virtual time
    #[arg(long)]
    pub predict: bool,
    /// Measure each ONNX model on the device's cores and write <model>/profile.json
    #[arg(long, conflicts_with_all = ["optimize", "predict", "write"])]
    pub profile: bool,
    /// With --profile: executions measured per model
    #[arg(long, value_name = "N", default_value_t = 200, requires = "profile", value_parser = clap::value_parser!(u32).range(1..))]
    pub samples: u32,
    /// With --profile: the engine every ONNX model runs on, over its configuration's
    #[arg(long, value_name = "ENGINE", requires = "profile", value_parser = ENGINES)]
    pub engine: Option<String>,
    #[command(flatten)]
    pub load: LoadArgs,
    /// With --predict: simulated seconds [default: 60]
    #[arg(long, value_name = "SECS", requires = "predict", value_parser = parse_seconds)]
    pub duration: Option<f64>,
    /// With --predict: the autopilot moves instances as the load shifts (as CORRAL_AUTOPILOT=1)
    #[arg(long, requires = "predict")]
    pub autopilot: bool,
    #[command(flatten)]
    pub report: ReportArgs,
}

/// An HTML report of a run, and load points to sweep (`bench`, `plan --predict`).
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Write an HTML report with charts (one self-contained file) to FILE.html, and its numbers
    /// to FILE.json beside it
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<std::path::PathBuf>,
    /// Run N load points: k/N of the given load (threads or rates) for k = 1..N
    #[arg(long, value_name = "N")]
    pub sweep: Option<usize>,
}

/// Open-loop load, the same for `bench --rate` and `plan --predict`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Calls per second per model, MODEL=R[,MODEL=R...] (repeatable); models not named get 0
    #[arg(long, value_name = "MODEL=R")]
    pub rate: Vec<String>,
    /// Coefficient of variation of the gaps between calls: 1 Poisson, 0 evenly spaced [default: 1]
    #[arg(long, value_name = "C", allow_negative_numbers = true, value_parser = parse_cv)]
    pub cv: Option<f64>,
    /// Seed of the arrival generator: the same seed gives the same calls in bench and plan [default: 0]
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

/// A coefficient of variation: a number, 0 or more.
fn parse_cv(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(cv) if cv >= 0.0 && cv.is_finite() => Ok(cv),
        Ok(_) => Err("must be 0 or more (0 is evenly spaced, 1 Poisson)".to_owned()),
        Err(_) => Err(format!("`{text}` is not a number")),
    }
}

/// A length of time in seconds, more than 0.
pub fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() => Ok(s),
        Ok(_) => Err("must be more than 0 seconds".to_owned()),
        Err(_) => Err(format!("`{text}` is not a number of seconds")),
    }
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub models: ModelsArg,
    #[command(flatten)]
    pub device: DeviceArg,
    #[command(flatten)]
    pub cores: CoreArgs,
    /// Calling threads, split among the models (thread t calls model t mod M) [default: 2 per
    /// process core, at least 1 per model]
    #[arg(long, value_name = "N", conflicts_with = "rate")]
    pub threads: Option<usize>,
    /// Stop after this many calls in all
    #[arg(long, value_name = "N", conflicts_with_all = ["duration", "rate"])]
    pub requests: Option<u64>,
    /// Open-loop load instead of callers: calls sent at these rates, whatever the answers
    #[command(flatten)]
    pub load: LoadArgs,
    /// Let the autopilot move cores between the models as the load shifts (as CORRAL_AUTOPILOT=1)
    #[arg(long)]
    pub autopilot: bool,
    /// Stop after this many seconds [default: 5]
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Print JSON instead of tables
    #[arg(long)]
    pub json: bool,
    /// The engine every ONNX model runs on, over its configuration's (auto: measured per model)
    #[arg(long, value_name = "ENGINE", value_parser = ENGINES)]
    pub engine: Option<String>,
    #[command(flatten)]
    pub report: ReportArgs,
}

/// What `--engine` takes: `auto` measures both engines per model (see `corral_onnx::auto`).
const ENGINES: [&str; 4] = ["onnxruntime", "openvino", "tract", "auto"];

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Seconds each benchmark of the demo runs
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    pub seconds: f64,
}
