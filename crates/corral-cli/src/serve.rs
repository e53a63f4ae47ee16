//! `corral serve`: takes the cores, then runs the KServe v2 server of `corral-server` on a
//! tokio runtime until SIGINT or SIGTERM, drains accepted calls, and releases the cores.

use anyhow::Context;
use corral_server::{BODY_LIMIT_DEFAULT, ControlMode, ServeOptions, restrict::Restrictions};

use crate::cli::{ControlArg, ServeArgs, TraceLevelArg};

pub fn run(args: &ServeArgs, lookup: &impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    if args.model_control_mode == ControlArg::None && !args.load_model.is_empty() {
        anyhow::bail!("--load-model needs --model-control-mode explicit (mode none loads every model)");
    }
    if args.trace_level == TraceLevelArg::Timestamps && args.trace_file.is_none() {
        anyhow::bail!("--trace-level timestamps needs --trace-file FILE, where the traces are written");
    }
    // Flags are checked before any core is taken.
    let http_restricted =
        Restrictions::parse(&args.http_restricted_api, "http-restricted-api", "", "api").map_err(anyhow::Error::msg)?;
    let grpc_restricted = Restrictions::parse(
        &args.grpc_restricted_protocol,
        "grpc-restricted-protocol",
        "triton-grpc-protocol-",
        "protocol",
    )
    .map_err(anyhow::Error::msg)?;
    let runtime = crate::models::runtime(&args.device, Some(&args.cores), args.autopilot, lookup)?;
    let options = ServeOptions {
        repository: args.model_repository.clone(),
        host: args.host,
        http_port: args.http_port,
        grpc_port: args.grpc_port,
        metrics_port: args.metrics_port,
        control: match args.model_control_mode {
            ControlArg::None => ControlMode::None,
            ControlArg::Explicit => ControlMode::Explicit,
        },
        load_models: args.load_model.clone(),
        // --max-body-bytes sets both protocols' limit; Triton's --http-max-input-size the
        // REST one only (clap refuses both together).
        body_limit: args.max_body_bytes.or(args.http_max_input_size).unwrap_or(BODY_LIMIT_DEFAULT),
        grpc_limit: args.max_body_bytes.unwrap_or(BODY_LIMIT_DEFAULT),
        trace_file: args.trace_file.clone(),
        trace: corral_server::trace::TraceSetting {
            level: match args.trace_level {
                TraceLevelArg::Off => corral_server::trace::Level::Off,
                TraceLevelArg::Timestamps => corral_server::trace::Level::Timestamps,
            },
            rate: args.trace_rate,
            count: args.trace_count,
            log_frequency: args.trace_log_frequency,
        },
        strict_readiness: args.strict_readiness,
        exit_on_error: args.exit_on_error,
        allow_client_shm: args.allow_client_shm,
        http_restricted,
        grpc_restricted,
        dashboard: args.dashboard.is_on(),
        auto_complete: !args.disable_auto_complete_config,
    };
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.server_threads.map_or_else(default_server_threads, usize::from))
        .thread_name("corral-serve")
        .enable_all()
        .build()
        .context("cannot start the server's threads")?;
    let cores = runtime.global_cores();
    let device = runtime.device().to_string();
    let dashboard = options.dashboard;
    let mut terminate = tokio
        .block_on(async { tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) })
        .context("cannot install the SIGTERM handler")?;
    tokio.block_on(corral_server::serve(
        runtime,
        options,
        |bound| {
            eprintln!(
                "corral serve: HTTP {} gRPC {} metrics {} on {device} cores {cores}",
                bound.http, bound.grpc, bound.metrics
            );
            if dashboard {
                // Not eprintln!: a reader that closed stderr after the line above (a test, a
                // supervisor) must not stop the server.
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "corral serve: dashboard at http://{}/dashboard", bound.metrics);
            }
        },
        async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        },
    ))?;
    eprintln!("corral serve: stopped; cores released");
    Ok(())
}

/// The protocol threads' default: half the CPUs this process may run on (its affinity and CPU
/// quota), 1 to 8. They only decode, hand calls to the workers and encode; each one more costs
/// wake-ups, not only parallelism: tokio wakes an idle thread to steal every task an ONNX
/// Runtime worker wakes, and on a host whose CPUs all run workers each wake preempts one. On 2
/// CPUs (squeezenet, c16, `./bench/extensions.sh`) one thread instead of two took the server's
/// voluntary context switches from 4.5 to 2.4 per call and its CPU per call from 0.59 to 0.45
/// ms over REST, 0.63 to 0.53 over gRPC, with the same throughput. A simulated device's cores
/// are not CPUs, so the count follows the CPUs, not the cores taken.
fn default_server_threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    (cpus / 2).clamp(1, 8)
}
