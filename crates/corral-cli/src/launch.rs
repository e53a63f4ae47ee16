//! `corral launch`: take cores, start a command on them (or I copies, each on its own
//! cores), and release each copy's cores when it exits, however it exits.
//!
//! # Protocol
//!
//! 1. Resolve the request (flags over environment) and split it into one request per copy;
//!    take every copy's lease before starting anything (all or nothing).
//! 2. Block the forwarded signals in this thread before any other thread or child exists,
//!    then start a signal thread that waits for them with `sigwaitinfo`.
//! 3. Start each copy with its lease handed down (`CORRAL_LEASE` + inherited descriptors),
//!    `CORRAL_VISIBLE_CORES`/`NEURON_RT_VISIBLE_CORES` set to its global cores,
//!    `OMP_NUM_THREADS`/`MKL_NUM_THREADS` to its core count, its signal mask emptied, and on
//!    `cpu` its affinity set to its cores' CPUs, all between fork and exec. The owner
//!    records then name the copy's pid.
//! 4. Wait with `waitid(WNOWAIT)`: a child is seen exiting while still a zombie, removed from
//!    the live set under its lock, and only then reaped. The signal thread forwards to pids
//!    in the live set under the same lock, so it never signals a reaped (reusable) pid.
//!    Signals sent by the terminal (`SI_KERNEL`) already reached the whole process group and
//!    are not sent twice.
//! 5. After reaping a copy, drop its lease: its cores are free at once. Exit with the first
//!    failing copy's status (in order of exit), 128 + signal for a killed copy.
//!
//! If this launcher is itself killed, the copies keep their inherited descriptors and so
//! their cores; the cores are released when the copies end.

use std::{
    ffi::OsString,
    os::unix::process::CommandExt,
    process::Command,
    sync::{Arc, Mutex},
    thread,
};

use anyhow::{Context, bail};
use corral_cores::{CoreRequest, CoreSet, DEVICE_ENV, Device, Lease, Registry, Request, Sources, Ticket};
use nix::{
    sched::CpuSet,
    sys::{
        signal::{SigSet, Signal, kill},
        wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid},
    },
    unistd::Pid,
};

use crate::{cli::LaunchArgs, settings::take_settings};

const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Live copies: (pid, copy index). Guarded so that forwarding and reaping never race.
type Live = Arc<Mutex<Vec<(Pid, usize)>>>;

pub fn run(args: &LaunchArgs, lookup: &impl Fn(&str) -> Option<String>) -> anyhow::Result<u8> {
    let settings = take_settings(&args.device, Some(&args.cores));
    let request = Sources::from_env(lookup).overlay(settings.explicit.clone()).resolve()?;
    let registry = settings.open_registry(lookup)?;
    let instances = args.instances as usize;
    let mut leases = take_leases(&registry, &request, instances, lookup)?;

    let mut signals = SigSet::empty();
    FORWARDED.iter().for_each(|&s| signals.add(s));
    signals.thread_block().context("cannot block signals")?;
    let live: Live = Arc::default();
    spawn_forwarder(signals, live.clone())?;

    let device = registry.device().spec().to_string();
    let shown = display_command(&args.command);
    for (index, lease) in leases.iter().enumerate() {
        let lease = lease.as_ref().expect("every copy has a lease before starting");
        let mut command = copy_command(&args.command, lease, &device, index, instances);
        // Hold the live-set lock across spawn so a forwarded signal cannot miss this child.
        let mut live_now = corral_cores::sync::lock(&live);
        match command.spawn() {
            Ok(child) => {
                lease.set_owner(child.id(), &shown);
                tracing::info!(pid = child.id(), cores = %lease.cores(), "started copy {index}");
                live_now.push((Pid::from_raw(child.id() as i32), index));
            }
            Err(error) => {
                let started: Vec<Pid> = live_now.iter().map(|(pid, _)| *pid).collect();
                drop(live_now);
                for pid in started {
                    let _ = kill(pid, Signal::SIGTERM);
                }
                wait_all(&live, &mut leases);
                // Like a shell: 127 when the command is not found, 126 when it cannot run.
                eprintln!("error: cannot start `{shown}`: {error}");
                return Ok(if error.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 });
            }
        }
    }
    Ok(wait_all(&live, &mut leases))
}

/// Takes one lease per copy, or adopts the inherited lease when this launcher was itself
/// launched (then only one copy is possible).
fn take_leases(
    registry: &Registry,
    request: &Request,
    instances: usize,
    lookup: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Vec<Option<Lease>>> {
    if let Some(ticket) = Ticket::from_env(lookup)? {
        if instances > 1 {
            bail!(
                "this launcher runs inside another corral launch and can start one copy only\nhint: drop --instances, or launch from outside"
            );
        }
        return Ok(vec![Some(registry.adopt(&ticket, request)?)]);
    }
    let mut leases = Vec::with_capacity(instances);
    for copy in split_request(request, instances, registry.device())? {
        // On error the leases taken so far drop here: all or nothing.
        leases.push(Some(registry.acquire(&copy)?));
    }
    Ok(leases)
}

/// One request per copy: N cores each, an equal share of the visible cores, or of the cores
/// this launcher may take (the device, or the part inside its affinity), in ascending order.
fn split_request(request: &Request, instances: usize, device: &Device) -> anyhow::Result<Vec<Request>> {
    if instances == 1 {
        return Ok(vec![request.clone()]);
    }
    let share = |total: &CoreSet, each: usize| -> Vec<Request> {
        let cores: Vec<usize> = total.iter().collect();
        cores
            .chunks(each)
            .take(instances)
            .enumerate()
            .map(|(i, chunk)| Request {
                cores: CoreRequest::Visible(
                    CoreSet::from_indices(chunk.iter().copied()).expect("chunks are not empty"),
                ),
                groups: request.groups.clone(),
                origin: format!("{} (copy {i})", request.origin),
            })
            .collect()
    };
    match (&request.cores, request.groups.is_some()) {
        // A count, or legacy groups (which take sum(sizes) cores): each copy asks for as many.
        (CoreRequest::Num(_) | CoreRequest::AnyOf(_), _) | (CoreRequest::All, true) => Ok((0..instances)
            .map(|i| Request { origin: format!("{} (copy {i})", request.origin), ..request.clone() })
            .collect()),
        (CoreRequest::Visible(set), _) => {
            request.check(&device.spec().to_string(), device.len())?;
            if !set.len().is_multiple_of(instances) {
                bail!(
                    "{} has {} cores, which do not split evenly into {instances} copies\nhint: give a core count that {instances} divides, or use --num-cores",
                    request.origin,
                    set.len()
                );
            }
            Ok(share(set, set.len() / instances))
        }
        (CoreRequest::All, false) => {
            let takeable = device.takeable().expect("a device has a core this process may take");
            let each = takeable.len() / instances;
            if each == 0 {
                bail!(
                    "{instances} copies cannot each get a core: this launcher may take {} core(s) ({takeable})",
                    takeable.len()
                );
            }
            Ok(share(&takeable, each))
        }
    }
}

fn copy_command(argv: &[OsString], lease: &Lease, device: &str, index: usize, instances: usize) -> Command {
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]);
    let cores = lease.cores().to_env_value();
    let threads = lease.len().to_string();
    command
        .env(DEVICE_ENV, device)
        .env(corral_cores::VISIBLE_CORES, &cores)
        .env(corral_cores::VISIBLE_CORES_NEURON, &cores)
        .env_remove(corral_cores::NUM_CORES)
        .env_remove(corral_cores::NUM_CORES_NEURON)
        .env("OMP_NUM_THREADS", &threads)
        .env("MKL_NUM_THREADS", &threads)
        .env("CORRAL_INSTANCE", index.to_string())
        .env("CORRAL_INSTANCES", instances.to_string());
    lease.hand_down(&mut command);
    let cpus = lease.cpus();
    let mut cpu_set = CpuSet::new();
    for &cpu in &cpus {
        cpu_set.set(cpu).expect("a CPU the kernel reported fits in a CpuSet");
    }
    // SAFETY: runs in the forked child before exec; sigprocmask and sched_setaffinity are
    // async-signal-safe syscalls and nothing is allocated (the set was built before fork).
    unsafe {
        command.pre_exec(move || {
            nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
            if !cpus.is_empty() {
                nix::sched::sched_setaffinity(Pid::from_raw(0), &cpu_set)?;
            }
            Ok(())
        });
    }
    command
}

fn spawn_forwarder(signals: SigSet, live: Live) -> anyhow::Result<()> {
    thread::Builder::new()
        .name("corral-signals".to_owned())
        .spawn(move || {
            loop {
                // SAFETY: an all-zero siginfo_t is a valid value to be overwritten.
                let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
                // SAFETY: `signals` is a valid set and `info` a valid, writable siginfo_t.
                let number = unsafe { libc::sigwaitinfo(signals.as_ref(), &mut info) };
                let Ok(signal) = Signal::try_from(number) else { continue };
                if info.si_code == libc::SI_KERNEL {
                    continue; // from the terminal: the copies, in our process group, have it
                }
                for (pid, _) in corral_cores::sync::lock(&live).iter() {
                    let _ = kill(*pid, signal);
                }
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// Reaps every live copy, releasing each one's lease as it goes; returns the exit status.
fn wait_all(live: &Live, leases: &mut [Option<Lease>]) -> u8 {
    let mut status = 0;
    while !corral_cores::sync::lock(live).is_empty() {
        let seen = match waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Ok(seen) => seen,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(error) => {
                tracing::error!(%error, "cannot wait for the launched copies");
                return 1;
            }
        };
        let Some(pid) = seen.pid() else { continue };
        let index = {
            let mut live = corral_cores::sync::lock(live);
            let position = live.iter().position(|(p, _)| *p == pid);
            position.map(|at| live.swap_remove(at).1)
        };
        let code = match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => code as u8,
            Ok(WaitStatus::Signaled(_, signal, _)) => 128 + signal as u8,
            _ => 1,
        };
        if let Some(index) = index {
            leases[index] = None; // the copy is gone: release its cores now
            tracing::info!(%pid, code, "copy {index} exited");
        }
        if status == 0 {
            status = code;
        }
    }
    status
}

fn display_command(argv: &[OsString]) -> String {
    argv.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
}
