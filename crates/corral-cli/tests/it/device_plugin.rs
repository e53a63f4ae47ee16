//! `corral device-plugin` against a kubelet stand-in built here: a `Registration` server on
//! a unix socket in a temp folder that, once the plugin registers, calls it as the kubelet
//! does (options, `ListAndWatch`, `GetPreferredAllocation`, `Allocate`), then "restarts"
//! (removes every socket, as the kubelet does, and listens again). A container is simulated
//! by `corral serve` run with exactly the variables and the mount `Allocate` answered.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use corral_kube::api::{
    AllocateRequest, ContainerAllocateRequest, ContainerPreferredAllocationRequest, DevicePluginOptions, Empty,
    ListAndWatchResponse, Mount, PreferredAllocationRequest, RegisterRequest,
    device_plugin_client::DevicePluginClient,
    registration_server::{Registration, RegistrationServer},
};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming, transport::Channel};

use super::{CHILD_WAIT_MAX, Host};

/// What the stand-in kubelet does with a registration.
#[derive(Clone)]
struct StandIn {
    registrations: mpsc::UnboundedSender<RegisterRequest>,
    /// `Some(message)`: refuse every registration with it.
    refuse: Option<String>,
}

#[tonic::async_trait]
impl Registration for StandIn {
    async fn register(&self, request: Request<RegisterRequest>) -> Result<Response<Empty>, Status> {
        let _ = self.registrations.send(request.into_inner());
        match &self.refuse {
            Some(message) => Err(Status::invalid_argument(message.clone())),
            None => Ok(Response::new(Empty {})),
        }
    }
}

/// A kubelet stand-in serving `Registration` at `<dir>/kubelet.sock`.
struct Kubelet {
    dir: PathBuf,
    registrations: mpsc::UnboundedReceiver<RegisterRequest>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

impl Kubelet {
    fn start(dir: &Path, refuse: Option<&str>) -> Kubelet {
        let (tx, registrations) = mpsc::unbounded_channel();
        let listener = tokio::net::UnixListener::bind(dir.join("kubelet.sock")).expect("bind kubelet.sock");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let service = RegistrationServer::new(StandIn { registrations: tx, refuse: refuse.map(str::to_owned) });
        let server = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(tokio_stream::wrappers::UnixListenerStream::new(listener), async {
                    let _ = stopped.await;
                })
                .await
                .expect("the stand-in serves");
        });
        Kubelet { dir: dir.to_owned(), registrations, stop: Some(stop), server }
    }

    async fn registration(&mut self) -> RegisterRequest {
        tokio::time::timeout(CHILD_WAIT_MAX, self.registrations.recv())
            .await
            .expect("the plugin registers in time")
            .expect("the stand-in is running")
    }

    /// The plugin's endpoint, as the kubelet dials it.
    async fn dial(&self, registration: &RegisterRequest) -> DevicePluginClient<Channel> {
        let channel = corral_kube::connect(&self.dir.join(&registration.endpoint)).await.expect("the plugin listens");
        DevicePluginClient::new(channel)
    }

    /// Stops, and removes every socket in the folder, as a restarting kubelet does.
    async fn restart(mut self) -> Kubelet {
        let _ = self.stop.take().expect("running").send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.server).await;
        for entry in std::fs::read_dir(&self.dir).expect("kubelet folder") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "sock") {
                std::fs::remove_file(path).expect("remove socket");
            }
        }
        Kubelet::start(&self.dir, None)
    }
}

/// `corral device-plugin` with its stderr collected.
struct Plugin {
    child: Child,
    stderr: Arc<Mutex<String>>,
    /// The thread copying stderr; it ends when the plugin's stderr closes.
    pump: Option<std::thread::JoinHandle<()>>,
}

impl Plugin {
    fn start(host: &Host, kubelet_dir: &Path) -> Plugin {
        let dir = kubelet_dir.to_str().expect("utf-8");
        let mut command = host.corral(&["device-plugin", "--device", "sim:4", "--kubelet-dir", dir]);
        let mut child = command.stdin(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let pipe = child.stderr.take().expect("piped");
        let pump = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                sink.lock().expect("lock").push_str(&format!("{line}\n"));
            }
        });
        Plugin { child, stderr, pump: Some(pump) }
    }

    /// Waits for the plugin to exit, then for the last of its stderr (the copying thread may
    /// still be behind when the exit is seen).
    fn exit(&mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().expect("wait");
        if let Some(pump) = self.pump.take() {
            pump.join().expect("stderr copied");
        }
        (status, self.stderr.lock().expect("lock").clone())
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child killed when dropped, so a failed assertion leaves no server behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A device list as `nc0+ nc1- …` (`-` unhealthy).
fn show(list: &ListAndWatchResponse) -> String {
    let devices = list.devices.iter().map(|d| format!("{}{}", d.id, if d.health == "Healthy" { "+" } else { "-" }));
    devices.collect::<Vec<_>>().join(" ")
}

/// Reads lists until one shows as `expect`; returns how long that took.
async fn wait_for(stream: &mut Streaming<ListAndWatchResponse>, expect: &str) -> Duration {
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        let next = tokio::time::timeout_at((start + CHILD_WAIT_MAX).into(), stream.message()).await;
        let list = next
            .unwrap_or_else(|_| panic!("no list `{expect}` in time; saw {seen:?}"))
            .expect("the stream stays up")
            .expect("the stream does not end");
        if show(&list) == expect {
            return start.elapsed();
        }
        seen.push(show(&list));
    }
}

fn ids(list: &str) -> Vec<String> {
    list.split(',').filter(|s| !s.is_empty()).map(|i| format!("nc{i}")).collect()
}

async fn prefer(client: &mut DevicePluginClient<Channel>, available: &str, must: &str, size: i32) -> String {
    let request = PreferredAllocationRequest {
        container_requests: vec![ContainerPreferredAllocationRequest {
            available_device_i_ds: ids(available),
            must_include_device_i_ds: ids(must),
            allocation_size: size,
        }],
    };
    let answer = client.get_preferred_allocation(request).await.expect("preferred allocation").into_inner();
    assert_eq!(answer.container_responses.len(), 1);
    answer.container_responses[0].device_i_ds.join(",")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio")
}

#[test]
fn the_plugin_registers_reports_health_prefers_runs_and_hands_out_cores() {
    let host = Host::new();
    let kubelet_dir = tempfile::tempdir().expect("dir");
    runtime().block_on(async {
        let mut kubelet = Kubelet::start(kubelet_dir.path(), None);
        let mut plugin = Plugin::start(&host, kubelet_dir.path());

        // Registration, field by field.
        let registration = kubelet.registration().await;
        let options = DevicePluginOptions { pre_start_required: false, get_preferred_allocation_available: true };
        assert_eq!(
            registration,
            RegisterRequest {
                version: "v1beta1".into(),
                endpoint: "corral-corral.dev_core.sock".into(),
                resource_name: "corral.dev/core".into(),
                options: Some(options),
            }
        );
        let mut client = kubelet.dial(&registration).await;
        assert_eq!(client.get_device_plugin_options(Empty {}).await.expect("options").into_inner(), options);

        // ListAndWatch: every core healthy; a host process taking nc2 makes it unhealthy
        // within a second, and freeing it makes it healthy again.
        let mut stream = client.list_and_watch(Empty {}).await.expect("ListAndWatch").into_inner();
        wait_for(&mut stream, "nc0+ nc1+ nc2+ nc3+").await;
        let holder = host.reserve(&["--device", "sim:4", "--visible-cores", "2"], &[]);
        let taken = wait_for(&mut stream, "nc0+ nc1+ nc2- nc3+").await;
        drop(holder);
        let freed = wait_for(&mut stream, "nc0+ nc1+ nc2+ nc3+").await;
        eprintln!("ListAndWatch reacted in {taken:?} to a core taken, {freed:?} to a core freed");

        // Preferred allocations: the lowest consecutive run holding must_include, else the
        // fewest runs.
        assert_eq!(prefer(&mut client, "0,1,2,3", "", 2).await, "nc0,nc1");
        assert_eq!(prefer(&mut client, "0,1,2,3", "2", 2).await, "nc1,nc2");
        assert_eq!(prefer(&mut client, "0,1,2,3", "3", 3).await, "nc1,nc2,nc3");
        assert_eq!(prefer(&mut client, "0,2,3", "", 2).await, "nc2,nc3");
        assert_eq!(prefer(&mut client, "0,2", "", 2).await, "nc0,nc2");
        assert_eq!(prefer(&mut client, "0,1,3", "3", 2).await, "nc0,nc3");
        let unknown = PreferredAllocationRequest {
            container_requests: vec![ContainerPreferredAllocationRequest {
                available_device_i_ds: vec!["gpu0".into()],
                must_include_device_i_ds: vec![],
                allocation_size: 1,
            }],
        };
        let refused = client.get_preferred_allocation(unknown).await.expect_err("gpu0 is not a core");
        assert!(refused.message().contains("unknown device id `gpu0`"), "{refused:?}");

        // Allocate: the cores in corral's and Neuron's variables, the device, and the host's
        // lock folder mounted where CORRAL_LOCK_DIR points.
        let request =
            AllocateRequest { container_requests: vec![ContainerAllocateRequest { devices_ids: ids("1,2") }] };
        let mut answer = client.allocate(request).await.expect("allocate").into_inner();
        assert_eq!(answer.container_responses.len(), 1);
        let container = answer.container_responses.remove(0);
        let envs: BTreeMap<String, String> = container.envs.into_iter().collect();
        let expected: BTreeMap<String, String> = [
            ("CORRAL_DEVICE", "sim:4"),
            ("CORRAL_LOCK_DIR", "/run/corral"),
            ("CORRAL_VISIBLE_CORES", "1-2"),
            ("NEURON_RT_VISIBLE_CORES", "1-2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(envs, expected);
        let host_dir = std::fs::canonicalize(host.dir.path()).expect("lock dir");
        assert_eq!(
            container.mounts,
            vec![Mount {
                container_path: "/run/corral".into(),
                host_path: host.dir.path().display().to_string(),
                read_only: false
            }]
        );
        assert!(container.devices.is_empty() && container.annotations.is_empty() && container.cdi_devices.is_empty());

        // The container: `corral serve` with exactly those variables, its lock folder being
        // the mount's host side, takes exactly nc1-nc2, and they stay healthy.
        let repo = tempfile::tempdir().expect("repo");
        super::serve::put_sim(repo.path(), "tick", 1);
        let mut serve = container_serve(&host, repo.path(), &envs, &container.mounts);
        let line = first_serve_line(&mut serve.0);
        assert!(line.ends_with("on sim:4 cores nc1-nc2"), "{line}");
        let listing = host.ls("sim:4");
        let pid = u64::from(serve.0.id());
        assert_eq!(super::held(&listing), vec![(1, pid), (2, pid)]);
        assert_eq!(
            std::fs::canonicalize(listing["registry"].as_str().expect("path")).ok(),
            Some(host_dir.join("sim-4"))
        );
        let outsider = host.reserve(&["--device", "sim:4", "--visible-cores", "3"], &[]);
        wait_for(&mut stream, "nc0+ nc1+ nc2+ nc3-").await;

        // A kubelet restart: every socket removed, kubelet.sock made again; the plugin
        // registers again and serves the same list.
        drop(stream);
        drop(client);
        let restarted = Instant::now();
        kubelet = kubelet.restart().await;
        let again = kubelet.registration().await;
        let took = restarted.elapsed();
        eprintln!("registered again {took:?} after the kubelet restarted");
        assert_eq!(again, registration);
        let mut client = kubelet.dial(&again).await;
        let mut stream = client.list_and_watch(Empty {}).await.expect("ListAndWatch").into_inner();
        wait_for(&mut stream, "nc0+ nc1+ nc2+ nc3-").await;
        drop(outsider);
        wait_for(&mut stream, "nc0+ nc1+ nc2+ nc3+").await;

        // SIGTERM: a clean exit, the socket removed.
        drop(serve);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(plugin.child.id() as i32), nix::sys::signal::Signal::SIGTERM)
            .expect("signal");
        let (status, stderr) = plugin.exit();
        assert_eq!(status.code(), Some(0), "{stderr}");
        assert!(!kubelet_dir.path().join(&registration.endpoint).exists(), "socket removed");
        assert_eq!(
            stderr.matches("corral device-plugin: registered corral.dev/core for sim:4 (4 cores)").count(),
            2,
            "{stderr}"
        );
        assert!(
            stderr.contains("the kubelet restarted") && stderr.ends_with("corral device-plugin: stopped\n"),
            "{stderr}"
        );
    });
}

/// `corral serve` as the kubelet would start it in the container: the allocated variables,
/// and `CORRAL_LOCK_DIR` seen through the mount (its container path is the host folder here).
fn container_serve(host: &Host, repo: &Path, envs: &BTreeMap<String, String>, mounts: &[Mount]) -> Killed {
    let repo = repo.to_str().expect("utf-8");
    let args = ["serve", "--model-repository", repo, "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"];
    let mut command: Command = host.corral(&args);
    for (name, value) in envs {
        let seen = mounts.iter().find(|m| m.container_path == *value).map_or(value.clone(), |m| m.host_path.clone());
        command.env(name, seen);
    }
    Killed(command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("serve starts"))
}

/// The `corral serve: HTTP …` line (it names the device and the cores taken).
fn first_serve_line(serve: &mut Child) -> String {
    let stderr = serve.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("corral serve: HTTP") {
                let _ = tx.send(Ok(line));
                return;
            }
            text += &format!("{line}\n");
        }
        let _ = tx.send(Err(text));
    });
    match rx.recv_timeout(CHILD_WAIT_MAX).expect("serve says where it listens in time") {
        Ok(line) => line,
        Err(stderr) => panic!("corral serve did not start:\n{stderr}"),
    }
}

#[test]
fn a_refused_registration_ends_the_plugin_with_the_kubelets_words() {
    let host = Host::new();
    let kubelet_dir = tempfile::tempdir().expect("dir");
    runtime().block_on(async {
        let mut kubelet = Kubelet::start(kubelet_dir.path(), Some("resource corral.dev/core is already registered"));
        let mut plugin = Plugin::start(&host, kubelet_dir.path());
        kubelet.registration().await;
        let (status, stderr) = plugin.exit();
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("refused to register corral.dev/core: resource corral.dev/core is already registered"),
            "{stderr}"
        );
        assert!(!kubelet_dir.path().join("corral-corral.dev_core.sock").exists(), "socket removed");
    });
}

#[test]
fn bad_names_and_missing_folders_fail_before_anything_starts() {
    let host = Host::new();
    let output = host.run(&["device-plugin", "--resource-name", "cores", "--kubelet-dir", "/"], &[]);
    assert_eq!(output.status.code(), Some(1));
    expect_test::expect![[r#"
        error: --resource-name `cores` is not a resource name Kubernetes accepts from a device plugin: it has no domain (DOMAIN/NAME); names without one are Kubernetes' own
        hint: use DOMAIN/NAME with a domain of your own, such as corral.dev/core
    "#]]
    .assert_eq(&String::from_utf8_lossy(&output.stderr));
    let missing = host.dir.path().join("no-kubelet");
    let output = host.run(&["device-plugin", "--kubelet-dir", missing.to_str().expect("utf-8")], &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr).replace(&host.dir.path().display().to_string(), "<dir>");
    expect_test::expect![[r#"
        error: the kubelet's device-plugin folder <dir>/no-kubelet does not exist
        hint: run the plugin on a Kubernetes node with that folder mounted (deploy/device-plugin.yaml does), or name the folder with --kubelet-dir
    "#]]
    .assert_eq(&stderr);
    assert!(!host.dir.path().join("cpu").exists(), "nothing was made in the lock folder");
}
