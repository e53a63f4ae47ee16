//! Scoped placement contexts, per thread: `cores_context(start_nc, nc_count)`,
//! `multicore_context()` and `group_context(g)` apply to every load the *same thread* makes
//! while the returned guard lives. Neuron's equivalents are process-global and documented as
//! not thread-safe; here two threads with different contexts place independently. Contexts
//! nest: the innermost wins, and dropping a guard restores the one around it.

use std::{cell::RefCell, marker::PhantomData};

use corral_placement::{PlacementError, Where};

thread_local! {
    static STACK: RefCell<Vec<Where>> = const { RefCell::new(Vec::new()) };
}

/// While alive, loads on this thread use its placement. Not `Send`: it belongs to a thread.
#[must_use = "the context applies only while this guard lives"]
#[derive(Debug)]
pub struct PlacementContext {
    _thread_bound: PhantomData<*const ()>,
}

fn push(at: Where) -> PlacementContext {
    STACK.with(|stack| stack.borrow_mut().push(at));
    PlacementContext { _thread_bound: PhantomData }
}

impl Drop for PlacementContext {
    fn drop(&mut self) {
        STACK.with(|stack| stack.borrow_mut().pop());
    }
}

/// Loads in scope go to `(start_nc, nc_count)` (process-relative; `-1` = not given).
pub fn cores_context(start_nc: i64, nc_count: i64) -> Result<PlacementContext, PlacementError> {
    Ok(push(Where::from_neuron(start_nc, nc_count)?))
}

/// Loads in scope are replicated over every process core.
pub fn multicore_context() -> PlacementContext {
    push(Where::Multicore)
}

/// Loads in scope go to legacy group `group` (`CORRAL_GROUP_SIZES`).
pub fn group_context(group: usize) -> PlacementContext {
    push(Where::Group(group))
}

/// The innermost context of this thread, if any.
pub(crate) fn current() -> Option<Where> {
    STACK.with(|stack| stack.borrow().last().cloned())
}
