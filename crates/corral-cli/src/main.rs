//! The `corral` binary: parse arguments, resolve settings, call the library, and map errors
//! to exit codes. Nothing here knows how cores are locked; see `corral-cores`.
//!
//! Exit codes: 0 success; 1 an error corral reported (for `plan`, also a model that does not
//! fit); 2 bad usage (from clap); for `launch`, the launched command's own status (128 +
//! signal when it was killed).

mod bench;
mod chart;
mod cli;
mod demo;
mod device_plugin;
mod launch;
mod ls;
mod models;
mod monitor;
mod plan;
mod planning;
mod profile;
mod report;
mod reserve;
mod serve;
mod settings;
mod table;
mod top;
mod write;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let verbose = match &cli.command {
        // Triton's --log-verbose N: details of the server's work.
        cli::Command::Serve(args) if args.log_verbose > 0 => cli.verbose.max(2),
        _ => cli.verbose,
    };
    init_logging(verbose);
    let lookup = |name: &str| std::env::var(name).ok();
    let result = match cli.command {
        cli::Command::Ls(args) => ls::run(&args, &lookup).map(|()| 0),
        cli::Command::Launch(args) => launch::run(&args, &lookup),
        cli::Command::Reserve(args) => reserve::run(&args, &lookup).map(|()| 0),
        cli::Command::Plan(args) => plan::run(&args, &lookup),
        cli::Command::Bench(args) => bench::run(&args, &lookup).map(|()| 0),
        cli::Command::Demo(args) => demo::run(&args, &lookup).map(|()| 0),
        cli::Command::Serve(args) => serve::run(&args, &lookup).map(|()| 0),
        cli::Command::RayResources(args) => ls::ray_resources(&args, &lookup).map(|()| 0),
        cli::Command::Top(args) => top::run(&args, &lookup).map(|()| 0),
        cli::Command::Monitor(args) => monitor::run(&args, &lookup).map(|()| 0),
        cli::Command::DevicePlugin(args) => device_plugin::run(&args, &lookup).map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `RUST_LOG` (target=level list) wins over `-v` counts.
fn init_logging(verbose: u8) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    let default = match verbose {
        0 => LevelFilter::WARN,
        1 => LevelFilter::INFO,
        2 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    let targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|spec| spec.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(default));
    use tracing_subscriber::prelude::*;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .without_time()
                .with_target(false)
                .with_writer(std::io::stderr)
                .with_filter(targets),
        )
        .init();
}
