//! Living beside a kubelet: serve the plugin on a socket in the kubelet's folder, register
//! it, re-register when the kubelet restarts, and stop cleanly on SIGTERM or SIGINT.
//!
//! The protocol (kubernetes `pkg/kubelet/cm/devicemanager`: `plugin/v1beta1/server.go` for
//! the kubelet's side, `client.go` for the connection it makes back):
//!
//! 1. Remove a stale socket at our endpoint (`corral-<resource>.sock`), listen there, and
//!    start serving `DevicePlugin`: the kubelet dials back as soon as it accepts the
//!    registration, so the server must already answer.
//! 2. Wait for `kubelet.sock`, connect, and call `Registration.Register` (version `v1beta1`,
//!    our endpoint, the resource name, our options). A kubelet that cannot be reached is
//!    tried again every [`RETRY_INTERVAL`]; a kubelet that answers with an error refused us
//!    (a resource name taken, a version it does not speak), which ends the plugin with that
//!    error, as the API asks.
//! 3. Every [`CHECK_INTERVAL`], look at both sockets. A kubelet that restarts removes every
//!    socket in its folder (ours too) and creates a new `kubelet.sock`: when our socket is
//!    gone or replaced, or `kubelet.sock` is a different file (or none), close the streams,
//!    stop the server and go back to 1. So a restarted kubelet sees the plugin again within
//!    [`CHECK_INTERVAL`] plus a registration.
//! 4. On SIGTERM or SIGINT (in any step): close the streams, stop the server (waiting at most
//!    [`STOP_WAIT_MAX`] for calls under way), remove our socket, and return.
//!
//! The kubelet dials plugins with the HTTP/2 authority `localhost` (kubernetes#112597). The
//! server here (tonic over h2) refuses a request whose authority is a socket path, which some
//! gRPC clients send over unix sockets (grpcio since 1.57): such a client, a test's stand-in
//! for instance, must set `localhost` itself.

use std::{
    io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::Duration,
};

use corral_cores::Registry;
use hyper_util::rt::TokioIo;
use tokio::{
    net::{UnixListener, UnixStream},
    signal::unix::{Signal, SignalKind, signal},
};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Endpoint, Server, Uri};

use crate::{
    api::{
        DEVICE_PLUGIN_PATH, KUBELET_SOCKET, RegisterRequest, VERSION, device_plugin_server::DevicePluginServer,
        registration_client::RegistrationClient,
    },
    plugin::{CorePlugin, options},
    resource::{ResourceNameError, check_resource_name, endpoint_name},
};

/// How often the sockets are checked for a kubelet restart (step 3).
pub const CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// How long between attempts to reach a kubelet that does not answer (step 2).
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// The longest one registration attempt may take.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a stopping server waits for calls under way (step 4).
const STOP_WAIT_MAX: Duration = Duration::from_secs(5);

/// What the plugin serves, and where.
#[derive(Debug)]
pub struct PluginSettings {
    /// The device's registry, read (never locked) to report each core's health.
    pub registry: Registry,
    /// The extended resource the cores count for: `corral.dev/core`.
    pub resource_name: String,
    /// The kubelet's device-plugin folder (`/var/lib/kubelet/device-plugins`).
    pub kubelet_dir: PathBuf,
    /// The registry's lock folder as a path on the host, mounted into each container.
    pub host_lock_dir: PathBuf,
}

impl PluginSettings {
    pub fn kubelet_dir_default() -> PathBuf {
        PathBuf::from(DEVICE_PLUGIN_PATH)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error(transparent)]
    ResourceName(#[from] ResourceNameError),
    #[error(
        "the kubelet's device-plugin folder {} does not exist\nhint: run the plugin on a Kubernetes node with that folder mounted (deploy/device-plugin.yaml does), or name the folder with --kubelet-dir",
        path.display()
    )]
    KubeletDir { path: PathBuf },
    #[error(
        "the host lock folder {} is not an absolute path\nhint: set CORRAL_LOCK_DIR to an absolute path; containers get it mounted from the host",
        path.display()
    )]
    LockDir { path: PathBuf },
    #[error("cannot listen on {}: {error}\nhint: the plugin needs to write in the kubelet's folder (run it as root)", path.display())]
    Listen { path: PathBuf, error: io::Error },
    #[error(
        "the kubelet at {} refused to register {resource}: {message}\nhint: another device plugin may have registered {resource}; pick another --resource-name",
        path.display()
    )]
    Refused { path: PathBuf, resource: String, message: String },
    #[error("cannot start the plugin: {0}")]
    Start(#[source] io::Error),
}

/// Serves the device plugin until SIGTERM or SIGINT (see the module docs). `say` receives
/// one line for each registration and for the stop, for the operator's log.
pub fn run(settings: PluginSettings, say: impl FnMut(&str)) -> Result<(), PluginError> {
    check_names(&settings.resource_name, &settings.kubelet_dir)?;
    if !settings.host_lock_dir.is_absolute() {
        return Err(PluginError::LockDir { path: settings.host_lock_dir });
    }
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(PluginError::Start)?;
    tokio.block_on(serve(settings, say))
}

/// Checks what the user named before anything is opened: a resource name the kubelet
/// accepts, and a kubelet folder that exists.
pub fn check_names(resource_name: &str, kubelet_dir: &Path) -> Result<(), PluginError> {
    check_resource_name(resource_name)?;
    if !kubelet_dir.is_dir() {
        return Err(PluginError::KubeletDir { path: kubelet_dir.to_owned() });
    }
    Ok(())
}

/// The two stop signals, installed before anything listens.
struct Stop {
    terminate: Signal,
    interrupt: Signal,
}

impl Stop {
    async fn wait(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

/// (device, inode) of a file, `None` when it does not exist: tells a recreated socket from
/// the one we saw.
fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

async fn serve(settings: PluginSettings, mut say: impl FnMut(&str)) -> Result<(), PluginError> {
    let mut stop = Stop {
        terminate: signal(SignalKind::terminate()).map_err(PluginError::Start)?,
        interrupt: signal(SignalKind::interrupt()).map_err(PluginError::Start)?,
    };
    let endpoint = endpoint_name(&settings.resource_name);
    let socket = settings.kubelet_dir.join(&endpoint);
    let kubelet_socket = settings.kubelet_dir.join(KUBELET_SOCKET);
    let device = format!("{} ({} cores)", settings.registry.device().spec(), settings.registry.device().len());
    let (plugin, _watcher) =
        CorePlugin::start(settings.registry, settings.host_lock_dir).map_err(PluginError::Start)?;
    let request = RegisterRequest {
        version: VERSION.to_owned(),
        endpoint: endpoint.clone(),
        resource_name: settings.resource_name.clone(),
        options: Some(options()),
    };
    loop {
        // 1. Listen and serve.
        match std::fs::remove_file(&socket) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(PluginError::Listen { path: socket, error }),
        }
        let listener =
            UnixListener::bind(&socket).map_err(|error| PluginError::Listen { path: socket.clone(), error })?;
        let ours = identity(&socket);
        plugin.reopen_streams();
        let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(
            Server::builder().add_service(DevicePluginServer::new(plugin.clone())).serve_with_incoming_shutdown(
                UnixListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            ),
        );
        let shut_down = |plugin: &CorePlugin| {
            plugin.close_streams();
            let _ = stop_server.send(());
            async move {
                if tokio::time::timeout(STOP_WAIT_MAX, server).await.is_err() {
                    tracing::warn!("the plugin's server did not stop in time");
                }
            }
        };

        // 2. Register.
        if !kubelet_socket.exists() {
            say(&format!("waiting for the kubelet at {}", kubelet_socket.display()));
        }
        let registered = tokio::select! {
            registered = register_when_up(&kubelet_socket, &request) => Some(registered),
            () = stop.wait() => None,
        };
        let Some(registered) = registered else {
            shut_down(&plugin).await;
            let _ = std::fs::remove_file(&socket);
            say("stopped");
            return Ok(());
        };
        if let Err(message) = registered {
            shut_down(&plugin).await;
            let _ = std::fs::remove_file(&socket);
            return Err(PluginError::Refused { path: kubelet_socket, resource: request.resource_name, message });
        }
        let kubelet = identity(&kubelet_socket);
        say(&format!(
            "registered {} for {device} with the kubelet at {}; serving {}",
            request.resource_name,
            kubelet_socket.display(),
            socket.display()
        ));

        // 3. Watch both sockets.
        let reason = loop {
            tokio::select! {
                () = tokio::time::sleep(CHECK_INTERVAL) => {}
                () = stop.wait() => {
                    shut_down(&plugin).await;
                    let _ = std::fs::remove_file(&socket);
                    say("stopped");
                    return Ok(());
                }
            }
            if identity(&socket) != ours {
                break "its socket was removed";
            }
            if identity(&kubelet_socket) != kubelet {
                break "kubelet.sock was replaced";
            }
        };
        say(&format!("the kubelet restarted ({reason}); registering again"));
        shut_down(&plugin).await;
    }
}

/// Registers once the kubelet answers (trying until it does): `Ok`, or the kubelet's refusal.
async fn register_when_up(kubelet_socket: &Path, request: &RegisterRequest) -> Result<(), String> {
    let mut said = false;
    loop {
        if kubelet_socket.exists() {
            match tokio::time::timeout(REGISTER_TIMEOUT, register(kubelet_socket, request.clone())).await {
                Ok(Ok(answer)) => return answer,
                Ok(Err(error)) if !said => {
                    tracing::warn!("cannot reach the kubelet at {}: {error}; trying again", kubelet_socket.display());
                    said = true;
                }
                Err(_) if !said => {
                    tracing::warn!("the kubelet at {} did not answer; trying again", kubelet_socket.display());
                    said = true;
                }
                _ => {}
            }
        }
        tokio::time::sleep(RETRY_INTERVAL).await;
    }
}

/// One `Register` call: `Err` when the kubelet could not be reached, `Ok(Err)` when it refused.
async fn register(kubelet_socket: &Path, request: RegisterRequest) -> Result<Result<(), String>, String> {
    let channel = connect(kubelet_socket).await.map_err(|e| e.to_string())?;
    let answer = RegistrationClient::new(channel).register(request).await;
    Ok(answer.map(|_| ()).map_err(|status| status.message().to_owned()))
}

/// A gRPC channel over the unix socket at `path` (the URI is a placeholder gRPC requires).
pub async fn connect(path: &Path) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let path = path.to_owned();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
}
