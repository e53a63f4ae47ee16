//! Turns raw arguments into the library's settings: flags become explicit `Sources` (so
//! messages quote `--num-cores 0`), layered over the environment by `corral-cores`.

use corral_cores::{Source, Sources, TakeSettings};

use crate::cli::{CoreArgs, DeviceArg};

pub fn take_settings(device: &DeviceArg, cores: Option<&CoreArgs>) -> TakeSettings {
    let explicit = cores.map_or_else(Sources::default, |cores| Sources {
        visible: cores.visible_cores.as_ref().map(|v| Source::new("--visible-cores", v.as_str())),
        num: cores.num_cores.as_ref().map(|v| Source::new("--num-cores", v.as_str())),
        groups: cores.group_sizes.as_ref().map(|v| Source::new("--group-sizes", v.as_str())),
        shadowed: Vec::new(),
    });
    TakeSettings { device: device.device.clone(), explicit, lock_dir: None }
}
