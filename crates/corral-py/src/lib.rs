//! `corral._corral`: the compiled half of the `corral` Python package. A thin layer over
//! `corral-runtime`: it converts Python values to the runtime's types while holding the GIL,
//! then calls the runtime with the GIL released (`Python::detach`). Placement, scheduling and
//! parsing all stay in the runtime; Python idiom (context managers over `contextvars`,
//! `DataParallel`, the exception classes) lives in `python/corral/`.
//!
//! - `process`: the one runtime of this process, its start, and fork protection.
//! - `model`: the `Model` class (calls, stats, moves, unload).
//! - `convert`: numpy arrays to tensors and back.
//! - `errors`: runtime errors to the package's exception classes.
//! - `completion`: asyncio futures answered from a completion thread.
//! - `logs`: the runtime's log records, handed to Python's `logging`.

mod completion;
mod convert;
mod errors;
mod logs;
mod model;
mod process;

use pyo3::prelude::*;

#[pymodule]
fn _corral(m: &Bound<'_, PyModule>) -> PyResult<()> {
    logs::install();
    m.add_class::<model::Model>()?;
    m.add_function(wrap_pyfunction!(process::init, m)?)?;
    m.add_function(wrap_pyfunction!(process::started, m)?)?;
    m.add_function(wrap_pyfunction!(process::device, m)?)?;
    m.add_function(wrap_pyfunction!(process::cores, m)?)?;
    m.add_function(wrap_pyfunction!(process::device_cores, m)?)?;
    m.add_function(wrap_pyfunction!(process::check_placement, m)?)?;
    m.add_function(wrap_pyfunction!(process::shutdown, m)?)?;
    m.add_function(wrap_pyfunction!(model::load, m)?)?;
    m.add_function(wrap_pyfunction!(logs::next_logs, m)?)?;
    m.add_function(wrap_pyfunction!(logs::stop_logs, m)?)?;
    Ok(())
}
