//! corral on Kubernetes: `corral device-plugin`, a kubelet device plugin (API `v1beta1`,
//! gRPC over unix sockets) that advertises a device's cores as an extended resource
//! (`corral.dev/core`), so that the scheduler counts them and the kubelet hands each
//! container core ids that the corral runtime inside then takes, exclusively, in the host's
//! one registry (SPEC §9).
//!
//! Modules, bottom-up: `api` (the kubelet's protocol, generated), `resource` (which resource
//! names the kubelet accepts; the endpoint's name), `prefer` (the preferred allocation, pure),
//! `health` (which cores are healthy, pure) → `plugin` (the `DevicePlugin` service and its
//! registry watcher) → `kubelet` (listen, register, re-register after a kubelet restart,
//! stop on SIGTERM).
//!
//! The plugin takes no core and no lock: it reads the registry as `corral ls` does. Cores
//! are ids `nc<global index>`, the indices every corral process on the host uses.

pub mod api;
mod health;
mod kubelet;
mod plugin;
mod prefer;
mod resource;

pub use health::Handed;
pub use kubelet::{CHECK_INTERVAL, PluginError, PluginSettings, RETRY_INTERVAL, check_names, connect, run};
pub use plugin::{CONTAINER_LOCK_DIR, CorePlugin, WATCH_INTERVAL, Watcher, options};
pub use prefer::preferred;
pub use resource::{RESOURCE_NAME_DEFAULT, ResourceNameError, check_resource_name, endpoint_name};
