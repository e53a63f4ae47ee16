//! `corral device-plugin`: resolves the device and the lock folder as every corral command
//! does, then runs `corral-kube`'s kubelet device plugin until SIGTERM. Its log lines go to
//! stderr (`corral device-plugin: registered …`).

use corral_cores::default_lock_dir;
use corral_kube::PluginSettings;

use crate::{cli::DevicePluginArgs, settings::take_settings};

pub fn run(args: &DevicePluginArgs, lookup: &impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    // Checked before the registry folder is made, so a typo creates nothing.
    corral_kube::check_names(&args.resource_name, &args.kubelet_dir)?;
    let registry = take_settings(&args.device, None).open_registry(lookup)?;
    let lock_dir = default_lock_dir(lookup);
    let host_lock_dir = std::path::absolute(&lock_dir).unwrap_or(lock_dir);
    let settings = PluginSettings {
        registry,
        resource_name: args.resource_name.clone(),
        kubelet_dir: args.kubelet_dir.clone(),
        host_lock_dir,
    };
    corral_kube::run(settings, |line| eprintln!("corral device-plugin: {line}"))?;
    Ok(())
}
