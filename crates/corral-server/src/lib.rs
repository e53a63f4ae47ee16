//! `corral serve`: the KServe v2 / Open Inference Protocol over REST (axum) and gRPC (tonic),
//! with the Triton extensions that tritonclient and perf_analyzer use, and Prometheus
//! metrics on a third port, all over one corral [`Runtime`].
//!
//! [`serve`] binds the three listeners first (so a busy port fails at once, by name), then
//! loads the start-up models in the background (the server is live at once and ready when
//! they are done), and runs until the shutdown future completes; it then stops accepting,
//! lets every accepted call finish, and returns. Dropping the runtime afterwards releases
//! the cores.

mod batcher;
mod bls;
mod body;
pub mod call;
mod classify;
pub mod codec;
mod compress;
mod counters;
pub mod dashboard;
mod ensemble;
mod error;
pub mod grpc;
mod json_data;
mod metadata;
pub mod metrics;
pub mod overrides;
pub mod repository;
mod rest;
pub mod restrict;
pub mod sequence;
pub mod shm;
mod slab;
mod state;
mod strings;
pub mod trace;
mod triton;
mod validate;

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
};

use corral_runtime::Runtime;
pub use state::{ControlMode, ServerState};
use tokio::net::TcpListener;

/// How long the metrics port drains at shutdown at most (its open dashboard streams end at
/// once; this bounds a reader that stopped reading).
const DRAIN_METRICS: std::time::Duration = std::time::Duration::from_secs(5);

/// Default request body limit: 64 MiB.
pub const BODY_LIMIT_DEFAULT: usize = 64 << 20;

/// Everything `corral serve` is told.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub repository: PathBuf,
    pub host: IpAddr,
    pub http_port: u16,
    pub grpc_port: u16,
    pub metrics_port: u16,
    pub control: ControlMode,
    /// Loaded at start in explicit mode; `*` (Triton's `--load-model=*`) is every model of
    /// the repository.
    pub load_models: Vec<String>,
    /// The largest REST request body (`--max-body-bytes`, Triton's `--http-max-input-size`).
    pub body_limit: usize,
    /// The largest gRPC message, inflated (`--max-body-bytes`).
    pub grpc_limit: usize,
    /// Triton's `--trace-file`: where traces go (the API cannot change it).
    pub trace_file: Option<PathBuf>,
    /// The trace setting at start (`--trace-level`, `--trace-rate`, …).
    pub trace: trace::TraceSetting,
    /// Triton's `--strict-readiness`: ready only while no model that was read has failed to
    /// load ([`ServerState::readiness`]).
    pub strict_readiness: bool,
    /// Triton's `--exit-on-error`: a model that fails to load at start stops the server.
    pub exit_on_error: bool,
    /// Triton's `--allow-client-shm`: clients may register shared-memory regions.
    pub allow_client_shm: bool,
    /// Triton's `--http-restricted-api`: REST categories that need a header.
    pub http_restricted: restrict::Restrictions,
    /// Triton's `--grpc-restricted-protocol`: gRPC categories that need a header.
    pub grpc_restricted: restrict::Restrictions,
    /// The live page on the metrics port (`dashboard.rs`); off, its paths answer 404.
    pub dashboard: bool,
    /// Triton's `--disable-auto-complete-config` turned around: Python models'
    /// `auto_complete_config` runs at load.
    pub auto_complete: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "cannot listen for {what} on {addr}: {source}\nhint: pick another port with --{flag}, or stop what uses it"
    )]
    Bind {
        what: &'static str,
        flag: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the model repository {} is not a folder", .0.display())]
    Repository(PathBuf),
    #[error("{what} server failed: {reason}")]
    Server { what: &'static str, reason: String },
    /// Triton's words when `--exit-on-error` stops it, then corral's hint.
    #[error(
        "{}",
        triton::all_models_failed(
            "hint: the log names each model that failed; --exit-on-error=false serves the others"
        )
    )]
    ModelsFailed,
}

/// The addresses actually bound (ports given as 0 are chosen by the system).
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub metrics: SocketAddr,
}

/// Keeps the memory of big buffers (a request's body, a tensor read from shared memory, an
/// engine's output) in the process between calls: glibc maps each allocation over 128 KiB
/// afresh and unmaps it when freed, and then trims freed heap above 128 KiB, so every call
/// paid a page fault and a zeroed page per 4 KiB of each buffer (measured: page faults and
/// zeroing were a fifth of the server threads' CPU per 602 KB call). Memory stays at its
/// peak instead, as a server's does.
fn keep_big_buffers() {
    #[cfg(target_env = "gnu")]
    // SAFETY: `mallopt` only changes the allocator's thresholds; any value is allowed.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

async fn bind(what: &'static str, flag: &'static str, addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { what, flag, addr, source })
}

/// Serves until `shutdown` completes, then drains. `on_bound` hears the bound addresses
/// once all three listen (the CLI prints them).
pub async fn serve(
    runtime: Runtime,
    options: ServeOptions,
    on_bound: impl FnOnce(Bound),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    if !options.repository.is_dir() {
        return Err(ServeError::Repository(options.repository));
    }
    keep_big_buffers();
    let http = bind("HTTP", "http-port", SocketAddr::new(options.host, options.http_port)).await?;
    let grpc = bind("gRPC", "grpc-port", SocketAddr::new(options.host, options.grpc_port)).await?;
    let metrics = bind("metrics", "metrics-port", SocketAddr::new(options.host, options.metrics_port)).await?;
    let local = |l: &TcpListener| l.local_addr().expect("a bound listener has an address");
    on_bound(Bound { http: local(&http), grpc: local(&grpc), metrics: local(&metrics) });

    let traces = trace::Traces::new(options.trace_file.clone(), options.trace.clone());
    let flags = state::Flags {
        control: options.control,
        body_limit: options.body_limit,
        strict_readiness: options.strict_readiness,
        allow_client_shm: options.allow_client_shm,
        auto_complete: options.auto_complete,
    };
    let state = Arc::new(ServerState::new(runtime, options.repository.clone(), flags, traces));
    // Models calling models (BLS) reach this server's models through the runtime.
    state.runtime.attach_calls(Arc::new(bls::Bls::new(&state, tokio::runtime::Handle::current())));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let grpc_limit = options.grpc_limit;
    let startup = {
        let state = state.clone();
        let names = match options.control {
            ControlMode::None => repository::names(&options.repository),
            ControlMode::Explicit if options.load_models.iter().any(|m| m == "*") => {
                repository::names(&options.repository)
            }
            ControlMode::Explicit => options.load_models.clone(),
        };
        let (exit_on_error, stop_tx) = (options.exit_on_error, stop_tx.clone());
        tokio::spawn(async move {
            let mut failed = false;
            for name in names {
                // A model that fails is logged (and shown in the index); the rest load.
                failed |= state.load(&name).await.is_err();
            }
            if failed && exit_on_error {
                // Triton: --exit-on-error stops the server when any model failed at start.
                tracing::error!("failed to load all models; stopping (--exit-on-error)");
                let _ = stop_tx.send(true);
                return true;
            }
            state.set_ready();
            false
        })
    };

    let (dashboard_stop, stop_rx_drain) = (stop_rx.clone(), stop_rx.clone());
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|&stop| stop).await;
        }
    };
    let rest_app = rest::router(state.clone(), options.http_restricted.clone());
    let (metrics_state, pages) = (state.clone(), Arc::new(dashboard::Dashboard::default()));
    let metrics_pages = pages.clone();
    let metrics_app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let (state, pages) = (metrics_state.clone(), metrics_pages.pages());
                async move {
                    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics::render(&state, pages))
                }
            }),
        )
        .merge(dashboard::router(state.clone(), pages, options.dashboard, dashboard_stop));
    let rest_server = axum::serve(http, rest_app).with_graceful_shutdown(stopped());
    let metrics_server = axum::serve(metrics, metrics_app).with_graceful_shutdown(stopped());
    let incoming = tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true));
    // HTTP/2 frames of up to 1 MiB instead of 16 KiB: a 602 KB input arrives in one DATA
    // frame instead of 37, and the server's threads spent 0.49-0.65 ms of CPU per squeezenet
    // call at c16 instead of 0.58-0.76 (7 alternating pairs, perf_analyzer over gRPC).
    let grpc_server = tonic::transport::Server::builder()
        .max_frame_size(Some(1 << 20))
        .layer(tower::util::option_layer(restrict::GrpcLayer::new(options.grpc_restricted.clone())))
        .add_service(grpc::service(state.clone(), grpc_limit))
        .serve_with_incoming_shutdown(incoming, stopped());
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: no new calls; finishing accepted ones");
        let _ = stop_tx.send(true);
    });
    // The metrics port drains for DRAIN_METRICS at most: a dashboard reader that stopped
    // reading (a paused `curl | less`, a frozen tab) must not hold the shutdown.
    let metrics_drained = {
        let mut rx = stop_rx_drain.clone();
        async move {
            let _ = rx.wait_for(|&stop| stop).await;
            tokio::time::sleep(DRAIN_METRICS).await;
        }
    };
    let metrics_server = async move {
        tokio::select! {
            served = metrics_server.into_future() => served,
            () = metrics_drained => Ok(()),
        }
    };
    let (rest, metrics, grpc) = tokio::join!(rest_server.into_future(), metrics_server, grpc_server);
    let stopped_on_error = if startup.is_finished() {
        startup.await.unwrap_or(false)
    } else {
        startup.abort();
        false
    };
    state.trace.flush();
    rest.map_err(|e| ServeError::Server { what: "HTTP", reason: e.to_string() })?;
    metrics.map_err(|e| ServeError::Server { what: "metrics", reason: e.to_string() })?;
    grpc.map_err(|e| ServeError::Server { what: "gRPC", reason: e.to_string() })?;
    if stopped_on_error {
        return Err(ServeError::ModelsFailed);
    }
    Ok(())
}
