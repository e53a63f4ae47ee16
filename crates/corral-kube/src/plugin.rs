//! The `DevicePlugin` service: the device's cores as kubelet devices (`nc<global index>`),
//! their health, the preferred allocation, and what a container gets.
//!
//! A watcher thread (`corral-plugin-watch`) reads the registry every [`WATCH_INTERVAL`]
//! without taking any lock (as `corral ls` does), turns it into the device list through
//! [`Handed::observe`], and publishes the list on a `watch` channel when it changed; every
//! `ListAndWatch` stream sends the list it finds there, then each change, until the kubelet
//! hangs up or the plugin stops. So a core taken or freed reaches the kubelet within one
//! interval plus a registry read, and no RPC ever blocks on the registry.

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use corral_cores::{CoreSet, DEVICE_ENV, LOCK_DIR_ENV, Registry, VISIBLE_CORES, VISIBLE_CORES_NEURON};
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::{
    api::{
        self, AllocateRequest, AllocateResponse, ContainerAllocateResponse, ContainerPreferredAllocationResponse,
        DevicePluginOptions, Empty, ListAndWatchResponse, Mount, PreStartContainerRequest, PreStartContainerResponse,
        PreferredAllocationRequest, PreferredAllocationResponse, device_plugin_server::DevicePlugin,
    },
    health::Handed,
    prefer::preferred,
};

/// How often the watcher reads the registry.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(200);

/// Where a container finds the host's lock folder: `CORRAL_LOCK_DIR` in every container the
/// plugin allocates for, with the host's folder mounted there.
pub const CONTAINER_LOCK_DIR: &str = "/run/corral";

/// State shared by the service, its streams and the watcher.
struct Shared {
    registry: Registry,
    /// The host folder mounted at [`CONTAINER_LOCK_DIR`] (the registry's lock folder).
    host_lock_dir: PathBuf,
    handed: Mutex<Handed>,
    devices: watch::Sender<Vec<api::Device>>,
    /// Set when the plugin stops: the watcher ends and every stream closes.
    stopped: watch::Sender<bool>,
}

/// The plugin's service; clones share one state.
#[derive(Clone)]
pub struct CorePlugin {
    shared: Arc<Shared>,
}

/// The watcher thread; stopped and joined when dropped.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl CorePlugin {
    /// A plugin for `registry`'s device, whose lock folder on the host is `host_lock_dir`,
    /// with its watcher started (the first list is read before this returns).
    pub fn start(registry: Registry, host_lock_dir: PathBuf) -> std::io::Result<(CorePlugin, Watcher)> {
        let (devices, _) = watch::channel(Vec::new());
        let (stopped, _) = watch::channel(false);
        let shared = Arc::new(Shared { registry, host_lock_dir, handed: Mutex::default(), devices, stopped });
        refresh(&shared);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (shared, stop) = (shared.clone(), stop.clone());
            thread::Builder::new().name("corral-plugin-watch".to_owned()).spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    thread::sleep(WATCH_INTERVAL);
                    refresh(&shared);
                }
            })?
        };
        Ok((CorePlugin { shared }, Watcher { stop, thread: Some(thread) }))
    }

    /// Ends every `ListAndWatch` stream (before a server shuts down, which waits for them).
    pub fn close_streams(&self) {
        self.shared.stopped.send_replace(true);
    }

    /// Lets streams run again after [`CorePlugin::close_streams`] (a new server after a
    /// kubelet restart).
    pub fn reopen_streams(&self) {
        self.shared.stopped.send_replace(false);
    }

    fn device_len(&self) -> usize {
        self.shared.registry.device().len()
    }

    /// Parses the kubelet's device ids (`nc3`) into global core indices.
    fn cores_of(&self, ids: &[String]) -> Result<Vec<usize>, Status> {
        ids.iter()
            .map(|id| {
                id.strip_prefix("nc")
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|&n| n < self.device_len())
                    .ok_or_else(|| {
                        Status::invalid_argument(format!(
                            "unknown device id `{id}`: this plugin lists nc0-nc{} of {}",
                            self.device_len().saturating_sub(1),
                            self.shared.registry.device().spec()
                        ))
                    })
            })
            .collect()
    }
}

/// Reads the registry once and publishes the device list if it changed.
fn refresh(shared: &Shared) {
    let status = match shared.registry.status() {
        Ok(status) => status,
        Err(error) => {
            tracing::warn!(%error, "cannot read the registry; the kubelet keeps the last device list");
            return;
        }
    };
    let held: Vec<bool> = status.iter().map(|core| !core.is_free()).collect();
    let health = corral_cores::sync::lock(&shared.handed).observe(&held);
    let devices: Vec<api::Device> = health
        .iter()
        .enumerate()
        .map(|(index, &healthy)| api::Device {
            id: format!("nc{index}"),
            health: if healthy { api::HEALTHY } else { api::UNHEALTHY }.to_owned(),
            topology: None,
        })
        .collect();
    shared.devices.send_if_modified(|current| {
        let changed = *current != devices;
        if changed {
            let unhealthy: Vec<&str> =
                devices.iter().filter(|d| d.health == api::UNHEALTHY).map(|d| d.id.as_str()).collect();
            tracing::info!(?unhealthy, "device list changed");
            *current = devices;
        }
        changed
    });
}

#[tonic::async_trait]
impl DevicePlugin for CorePlugin {
    async fn get_device_plugin_options(&self, _: Request<Empty>) -> Result<Response<DevicePluginOptions>, Status> {
        Ok(Response::new(options()))
    }

    type ListAndWatchStream = ReceiverStream<Result<ListAndWatchResponse, Status>>;

    async fn list_and_watch(&self, _: Request<Empty>) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut devices = self.shared.devices.subscribe();
        let mut stopped = self.shared.stopped.subscribe();
        tokio::spawn(async move {
            loop {
                let list = devices.borrow_and_update().clone();
                if tx.send(Ok(ListAndWatchResponse { devices: list })).await.is_err() {
                    return; // the kubelet hung up
                }
                tokio::select! {
                    changed = devices.changed() => if changed.is_err() { return },
                    _ = stopped.wait_for(|&stopped| stopped) => return,
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_preferred_allocation(
        &self,
        request: Request<PreferredAllocationRequest>,
    ) -> Result<Response<PreferredAllocationResponse>, Status> {
        let mut container_responses = Vec::new();
        for container in request.into_inner().container_requests {
            let available = self.cores_of(&container.available_device_i_ds)?;
            let must = self.cores_of(&container.must_include_device_i_ds)?;
            let size = usize::try_from(container.allocation_size).map_err(|_| {
                Status::invalid_argument(format!("allocation_size {} is negative", container.allocation_size))
            })?;
            let chosen = preferred(&available, &must, size);
            container_responses.push(ContainerPreferredAllocationResponse {
                device_i_ds: chosen.iter().map(|core| format!("nc{core}")).collect(),
            });
        }
        Ok(Response::new(PreferredAllocationResponse { container_responses }))
    }

    async fn allocate(&self, request: Request<AllocateRequest>) -> Result<Response<AllocateResponse>, Status> {
        let mut container_responses = Vec::new();
        let mut all = Vec::new();
        for container in request.into_inner().container_requests {
            let cores = self.cores_of(&container.devices_ids)?;
            let set = CoreSet::from_indices(cores.iter().copied())
                .ok_or_else(|| Status::invalid_argument("a container asked for no device"))?;
            container_responses.push(container_response(&self.shared, &set));
            all.extend(cores);
        }
        tracing::info!(cores = ?all, "allocated");
        corral_cores::sync::lock(&self.shared.handed).hand(all);
        Ok(Response::new(AllocateResponse { container_responses }))
    }

    async fn pre_start_container(
        &self,
        _: Request<PreStartContainerRequest>,
    ) -> Result<Response<PreStartContainerResponse>, Status> {
        // Registered with pre_start_required = false: the kubelet never calls this.
        Ok(Response::new(PreStartContainerResponse {}))
    }
}

/// What the plugin registers: preferred allocation on, no pre-start call.
pub fn options() -> DevicePluginOptions {
    DevicePluginOptions { pre_start_required: false, get_preferred_allocation_available: true }
}

/// A container's cores in the variables a corral runtime reads, and the host's registry
/// mounted where `CORRAL_LOCK_DIR` points, so the container and the host share one registry.
fn container_response(shared: &Shared, cores: &CoreSet) -> ContainerAllocateResponse {
    let value = cores.to_env_value();
    let envs = [
        (VISIBLE_CORES, value.clone()),
        (VISIBLE_CORES_NEURON, value),
        (DEVICE_ENV, shared.registry.device().spec().to_string()),
        (LOCK_DIR_ENV, CONTAINER_LOCK_DIR.to_owned()),
    ];
    ContainerAllocateResponse {
        envs: envs.into_iter().map(|(name, value)| (name.to_owned(), value)).collect(),
        mounts: vec![Mount {
            container_path: CONTAINER_LOCK_DIR.to_owned(),
            host_path: shared.host_lock_dir.display().to_string(),
            read_only: false,
        }],
        ..ContainerAllocateResponse::default()
    }
}
