//! How corral dispatches calls, as pure functions of state with no clock, lock or thread
//! inside (the sans-IO style of quinn-proto and h2's state machines, applied to scheduling).
//! Two drivers call the same functions: the threaded runtime (`corral-runtime`, with
//! `Instant::now()`, its locks and worker threads) and the planner's discrete-event simulator
//! (`corral-plan`, with virtual time), so a prediction runs the very rules a deployment does.
//!
//! - [`replica`]: which instance a call goes to.
//! - [`elastic`]: whether a call of an elastic model tries every idle core at once.
//! - [`gangs`]: which waiting gang may take its cores, and the switches it pays.
//! - [`runs`]: how many calls of its own model a worker runs in a row.
//! - [`autopilot`]: which instances to start and retire so that cores follow the load.
//!
//! A driver owns the state these functions read and change, and the time: nothing here reads
//! a clock or waits.

pub mod autopilot;
pub mod elastic;
pub mod gangs;
pub mod replica;
pub mod runs;

pub use corral_placement::CoreSpan;
