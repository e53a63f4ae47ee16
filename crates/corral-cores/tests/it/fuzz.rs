//! Fuzzing with a fixed, large case count (cargo-fuzz needs a nightly compiler, which this
//! project does not require): every environment value and every owner record, however
//! malformed or hostile, gives a value or an error, never a panic or an abort, and a request
//! that parses never asks for more cores than the device has.

use corral_cores::{Registry, Request, Sources};
use proptest::prelude::*;

/// Text shaped like core settings (digits, ranges, commas) with some noise, or anything.
fn setting() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[0-9,\\- ]{0,24}",
        1 => "(0|1|7|4095|4096|4294967295|4294967296|18446744073709551615|99999999999999999999)(-[0-9]{1,20})?(,[0-9]{1,12}(-[0-9]{1,12})?){0,3}",
        1 => any::<String>(),
    ]
}

const NAMES: [&str; 6] = [
    "CORRAL_VISIBLE_CORES",
    "NEURON_RT_VISIBLE_CORES",
    "CORRAL_NUM_CORES",
    "NEURON_RT_NUM_CORES",
    "CORRAL_GROUP_SIZES",
    "NEURONCORE_GROUP_SIZES",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn environment_values_parse_or_fail_cleanly(values in prop::collection::vec(prop::option::of(setting()), 6)) {
        let lookup = |name: &str| NAMES.iter().position(|n| *n == name).and_then(|i| values[i].clone());
        for (device, len) in [("sim:8", 8), ("sim:4096", 4096)] {
            match Sources::from_env(lookup).resolve() {
                Ok(request) => {
                    if request.check(device, len).is_ok() {
                        prop_assert!(request.core_count(len) <= len, "{:?}", request);
                    }
                }
                Err(error) => prop_assert!(error.to_string().contains("hint:") || error.to_string().contains("groups")),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_owner_record_on_a_held_core_is_read_without_harm(
        record in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            ("[0-9]{1,12}", "[0-9\\-,x]{0,30}", any::<String>()).prop_map(|(pid, cores, command)| format!(
                r#"{{"pid":{pid},"start_ticks":0,"command":{command:?},"since_unix_ms":0,"device":"sim:2","cores":"{cores}","models":[["m"],["n"]]}}"#
            ).into_bytes()),
        ],
    ) {
        let dir = tempfile::tempdir().expect("dir");
        let device = corral_cores::Device::open("sim:2".parse().expect("valid")).expect("opens");
        let registry = Registry::open(device, dir.path()).expect("registry");
        let lease = registry.acquire(&Request::num(1)).expect("free");
        std::fs::write(dir.path().join("sim-2/nc0.lock"), &record).expect("world-writable");
        let status = registry.status().expect("status");
        prop_assert!(!status[0].is_free(), "a held core stays held whatever its record says");
        prop_assert!(status[1].is_free(), "a record never makes another core look held");
        let busy = registry.acquire(&Request::all()).expect_err("nc0 is held");
        prop_assert!(busy.to_string().contains("nc0"));
        drop(lease);
        prop_assert!(registry.status().expect("status")[0].is_free());
    }
}
