//! One call from settings to a lease: resolve the device and the request from explicit values
//! over the environment, open the registry, then adopt an inherited lease or acquire cores.
//! This is what a corral runtime does once, when it starts.

use std::path::PathBuf;

use crate::{
    device::{Device, DeviceError, DeviceSpec, DeviceSpecError},
    folder::RegistryError,
    inherit::Ticket,
    lease::Lease,
    registry::{AcquireError, Registry, default_lock_dir},
    request::{RequestError, Sources},
};

/// Selects the device when no `--device` (or API value) is given.
pub const DEVICE_ENV: &str = "CORRAL_DEVICE";

/// Explicit settings; anything left `None`/empty comes from the environment.
#[derive(Clone, Debug, Default)]
pub struct TakeSettings {
    pub device: Option<DeviceSpec>,
    /// Explicit core request values (flags or API), layered over the environment's.
    pub explicit: Sources,
    pub lock_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    #[error("{DEVICE_ENV}={value} is not valid")]
    DeviceEnv {
        value: String,
        #[source]
        source: DeviceSpecError,
    },
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Acquire(#[from] AcquireError),
}

impl TakeSettings {
    /// The device: explicit, else `CORRAL_DEVICE`, else `cpu`.
    pub fn device_spec(&self, lookup: &impl Fn(&str) -> Option<String>) -> Result<DeviceSpec, TakeError> {
        if let Some(spec) = &self.device {
            return Ok(spec.clone());
        }
        match lookup(DEVICE_ENV) {
            Some(value) => value.parse().map_err(|source| TakeError::DeviceEnv { value, source }),
            None => Ok(DeviceSpec::Cpu { logical: false }),
        }
    }

    /// Resolves the device on this host without opening its registry.
    pub fn open_device(&self, lookup: &impl Fn(&str) -> Option<String>) -> Result<Device, TakeError> {
        Ok(Device::open(self.device_spec(lookup)?)?)
    }

    /// Opens the registry of the resolved device without taking anything.
    pub fn open_registry(&self, lookup: &impl Fn(&str) -> Option<String>) -> Result<Registry, TakeError> {
        let device = self.open_device(lookup)?;
        let lock_dir = self.lock_dir.clone().unwrap_or_else(|| default_lock_dir(lookup));
        Ok(Registry::open(device, &lock_dir)?)
    }
}

/// Takes this process's cores: adopts the lease in `CORRAL_LEASE` if there is one, otherwise
/// acquires what the explicit settings and the environment ask for.
pub fn take_cores(
    settings: &TakeSettings,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(Registry, Lease), TakeError> {
    let request = Sources::from_env(&lookup).overlay(settings.explicit.clone()).resolve()?;
    let registry = settings.open_registry(&lookup)?;
    let lease = match Ticket::from_env(&lookup)? {
        Some(ticket) => registry.adopt(&ticket, &request)?,
        None => registry.acquire(&request)?,
    };
    Ok((registry, lease))
}
