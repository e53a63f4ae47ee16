//! Planning before loading (SPEC §12): [`optimize`] chooses a layout for a device from each
//! model's cores per instance, execution time and demand; [`simulate`] runs a layout in
//! virtual time with the runtime's own dispatch rules (`corral_dispatch`); [`arrivals`] makes
//! the open-loop arrival times that `corral plan --predict` simulates and `corral bench --rate`
//! sends, the same for the same seed; [`report`] turns calls into the one JSON shape both
//! print; [`profile`] is the measured execution times of an ONNX model (`profile.json`).
//!
//! No IO but reading and writing `profile.json` text, no threads, no clock: a plan is a pure
//! function of its inputs.

pub mod arrivals;
pub mod optimize;
pub mod profile;
pub mod report;
pub mod simulate;
