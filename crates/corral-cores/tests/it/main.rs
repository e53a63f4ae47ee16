//! Integration tests of the registry through the public API: allocation properties, error
//! messages, stale records, and refusal of planted links. Cross-process behaviour (SIGKILL,
//! concurrent starts, inherited leases) is tested with real processes in `corral-cli`.

mod alloc_props;
mod fuzz;
mod registry;

use corral_cores::{Device, Registry};

/// A registry for `device` in a fresh temporary lock folder.
fn registry(device: &str) -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().expect("temp dir");
    let device = Device::open(device.parse().expect("valid device")).expect("device opens");
    let registry = Registry::open(device, dir.path()).expect("registry opens");
    (dir, registry)
}
