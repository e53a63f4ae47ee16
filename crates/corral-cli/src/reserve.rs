//! `corral reserve`: take cores the way any corral process does (flags, environment, or an
//! inherited lease), say what was taken, and hold them until SIGINT/SIGTERM/SIGHUP or
//! `--seconds` pass. Useful to fence cores off from other corral processes, and the simplest
//! real process that owns cores.

use std::{io::Write, time::Duration};

use anyhow::Context;
use corral_cores::{LEASE_ENV, take_cores};
use nix::sys::signal::{SigSet, Signal};
use serde_json::json;

use crate::{cli::ReserveArgs, settings::take_settings};

pub fn run(args: &ReserveArgs, lookup: &impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    let signals = stop_signals();
    // Block before taking cores, so a signal that arrives meanwhile is waited for, not fatal
    // mid-way (it would be harmless anyway: the kernel releases the locks).
    signals.thread_block().context("cannot block signals")?;
    let settings = take_settings(&args.device, Some(&args.cores));
    let (registry, lease) = take_cores(&settings, lookup)?;
    let adopted = lookup(LEASE_ENV).is_some();
    let device = registry.device().spec().to_string();
    let line = if args.json {
        json!({
            "device": device,
            "cores": lease.cores().iter().collect::<Vec<_>>(),
            "cpus": lease.cpus(),
            "pid": std::process::id(),
            "adopted": adopted,
        })
        .to_string()
    } else {
        let how = if adopted { "adopted from the parent's lease" } else { "taken" };
        format!("holding {} of {device} ({how}, pid {}); stop with Ctrl-C", lease.cores(), std::process::id())
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").and_then(|()| stdout.flush()).context("cannot write to stdout")?;
    drop(stdout);
    wait_for_stop(&signals, args.seconds.map(Duration::from_secs_f64))?;
    drop(lease);
    Ok(())
}

fn stop_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(signal);
    }
    set
}

/// Waits for one of `signals` (blocked by the caller) or until `limit` passes.
fn wait_for_stop(signals: &SigSet, limit: Option<Duration>) -> anyhow::Result<()> {
    let Some(limit) = limit else {
        signals.wait().context("cannot wait for a signal")?;
        return Ok(());
    };
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let timeout = libc::timespec { tv_sec: left.as_secs() as libc::time_t, tv_nsec: left.subsec_nanos() as _ };
        // SAFETY: `signals` is a valid sigset; a null info pointer is allowed.
        let got = unsafe { libc::sigtimedwait(signals.as_ref(), std::ptr::null_mut(), &timeout) };
        match nix::errno::Errno::last() {
            _ if got > 0 => return Ok(()),
            nix::errno::Errno::EAGAIN => return Ok(()), // the time is up
            nix::errno::Errno::EINTR => continue,
            errno => return Err(std::io::Error::from(errno)).context("cannot wait for a signal"),
        }
    }
}
