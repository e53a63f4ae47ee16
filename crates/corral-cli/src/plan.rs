//! `corral plan`: place a repository's models without running them, as a process with the
//! requested cores would, and draw the core map (text, JSON, or SVG).
//!
//! A model that cannot be placed is named (an `error:` line, or `errors` in the JSON) after
//! the map of what could be placed, and the exit status is 1, so a script can tell a layout
//! that fits from one that does not.
//!
//! Planning before loading (SPEC §12): `--optimize` chooses the layout (`corral_plan::optimize`)
//! and `--write` puts it into each model's config (`write.rs`); `--predict` simulates the
//! configured or optimised layout in virtual time with the runtime's own dispatch rules
//! (`corral_plan::simulate`) under open-loop load, and prints what `bench --rate` would
//! measure, in the same shape; `--profile` measures ONNX models on the device so the other two
//! know their execution times.

use anyhow::{Context, bail};
use corral_cores::{Device, Sources};
use corral_placement::{Layout, Placement, Where};
use corral_plan::{arrivals, optimize, simulate};
use corral_runtime::{CoreSpan, repository};
use serde_json::json;

use crate::{cli::PlanArgs, planning, settings::take_settings};

/// Returns the exit status: 0 when every model was placed, 1 when any could not be.
pub fn run(args: &PlanArgs, lookup: &impl Fn(&str) -> Option<String>) -> anyhow::Result<u8> {
    if args.profile {
        return crate::profile::run(args, lookup).map(|()| 0);
    }
    if !args.predict && (args.report.report.is_some() || args.report.sweep.is_some()) {
        bail!("--report and --sweep draw a predicted run: give --predict (and the load, --rate MODEL=R)");
    }
    let fractions = crate::report::fractions(args.report.sweep)?;
    // Before anything runs: a report that cannot be written fails now.
    let target = args.report.report.as_deref().map(crate::report::Target::create).transpose()?;
    let settings = take_settings(&args.device, Some(&args.cores));
    let device = Device::open(settings.device_spec(lookup)?)?;
    let request = Sources::from_env(lookup).overlay(settings.explicit.clone()).resolve()?;
    request.check(&device.spec().to_string(), device.len())?;
    let cores = request.core_count(device.len());
    let (folders, bad) = repository::read_folders(args.models.path())?;
    let ensembles = repository::read_ensembles(args.models.path());
    for error in bad.iter().filter(|e| !planning::of_ensemble(e, &ensembles)) {
        eprintln!("warning: skipping a model: {error}");
    }
    for ensemble in &ensembles {
        eprintln!(
            "note: ensemble `{}` holds no cores (corral serve runs it); each call of it is a call of each step: {}",
            ensemble.name,
            ensemble.steps.join(", ")
        );
    }
    if folders.is_empty() {
        bail!("{} holds no model that can be loaded", args.models.path().display());
    }
    let groups = request.groups.as_deref().unwrap_or_default();
    let (mut warnings, mut errors) = (Vec::new(), Vec::new());
    let mut layout = Layout::new(cores, groups);
    let mut elastic: Vec<bool> = folders.iter().map(|f| f.def.elastic).collect();
    if args.optimize {
        if !groups.is_empty() {
            bail!(
                "--optimize chooses placements by core, but legacy groups fix them\nhint: unset CORRAL_GROUP_SIZES / NEURONCORE_GROUP_SIZES"
            );
        }
        let plan = optimized(args, &folders, &ensembles, cores)?;
        for (planned, slot) in plan.models.iter().zip(&mut elastic) {
            layout.commit(&Placement { model: planned.name.clone(), instances: planned.spans(), shared: Vec::new() });
            *slot = planned.elastic;
        }
        if plan.shared {
            warnings.push(format!(
                "the cores do not hold one instance of every model apart: models share cores, placed for the fewest expected switches ({:.1}/s)",
                plan.switches_per_s
            ));
        }
        if args.write {
            crate::write::layout(&folders, &plan)?;
        }
    } else {
        for folder in &folders {
            let model = &folder.def;
            match layout.place(&model.name, model.cores_per_instance, model.placement.as_ref().unwrap_or(&Where::Auto))
            {
                Ok(placement) => {
                    warnings.extend(placement.warning());
                    layout.commit(&placement);
                }
                Err(error) => errors.push(format!("{}: {error}", model.name)),
            }
        }
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, layout.svg()).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let instances =
        |name: &str| -> Vec<CoreSpan> { layout.placed().iter().filter(|p| p.model == name).map(|p| p.cores).collect() };
    if args.predict {
        if !errors.is_empty() {
            for error in &errors {
                eprintln!("error: {error}");
            }
            bail!("cannot predict a layout where a model does not fit");
        }
        let specs = folders
            .iter()
            .zip(&elastic)
            .map(|(f, &e)| planning::model_spec(f, instances(&f.def.name), e))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let rates = planning::rates(&args.load, &folders, &ensembles)?.ok_or_else(|| {
            anyhow::anyhow!(
                "--predict needs the calls each model gets\nhint: give --rate MODEL=R[,MODEL=R...], or `[plan] rate = R` in a model's config.toml (`corral.plan.rate` in config.pbtxt)"
            )
        })?;
        let spec = planning::spec(cores, specs, args.autopilot, lookup)?;
        let (cv, seed) = planning::generator(&args.load);
        let duration = args.duration.unwrap_or(60.0);
        let mut points = Vec::new();
        for &fraction in &fractions {
            let scaled: Vec<f64> = rates.iter().map(|r| r * fraction).collect();
            let arrivals = arrivals::schedule(&scaled, cv, seed, duration);
            let run = simulate::simulate(&spec, &arrivals, seed);
            let report = planning::predicted(&spec, &run, duration, &layout, &elastic);
            points.push(crate::report::Point {
                predicted: None,
                load: format!("rates ×{fraction:.2}"),
                report,
                series: planning::series(&spec, &run),
            });
        }
        if !args.json {
            println!(
                "{} cores of {} ({}), {duration} simulated seconds, CV {cv}, seed {seed}\n",
                cores,
                device.spec(),
                request.origin
            );
            print!("{}", layout.render());
            println!();
        }
        crate::bench::print_points(&points, args.json);
        if let Some(target) = target {
            let rates_text: Vec<String> =
                folders.iter().zip(&rates).map(|(f, r)| format!("{}={r}", f.def.name)).collect();
            let settings = vec![
                ("command".to_owned(), crate::report::command_line()),
                ("device".to_owned(), format!("{} ({cores} cores, {})", device.spec(), request.origin)),
                ("load".to_owned(), format!("open loop: {}", rates_text.join(" "))),
                ("simulated seconds per point".to_owned(), duration.to_string()),
                ("cv, seed".to_owned(), format!("{cv}, {seed}")),
                ("autopilot".to_owned(), args.autopilot.to_string()),
                ("load points".to_owned(), fractions.len().to_string()),
            ];
            let document = crate::report::Document {
                title: "corral plan --predict".to_owned(),
                measured: false,
                settings,
                points,
                layout_svg: layout.svg(),
            };
            crate::report::write(target, &document)?;
        }
        for warning in &warnings {
            eprintln!("warning: {warning}");
        }
        return Ok(0);
    }
    if args.json {
        let placed: Vec<_> = folders
            .iter()
            .map(|f| {
                let m = &f.def;
                let instances: Vec<_> =
                    instances(&m.name).iter().map(|c| json!({"first": c.first, "count": c.count})).collect();
                json!({"name": m.name, "cores_per_instance": m.cores_per_instance, "instances": instances})
            })
            .collect();
        let out = json!({"device": device.spec().to_string(), "cores": cores, "models": placed, "warnings": warnings, "errors": errors});
        println!("{}", serde_json::to_string_pretty(&out).expect("JSON always serializes"));
    } else {
        println!("{} cores of {} ({})\n", cores, device.spec(), request.origin);
        print!("{}", layout.render());
        // The core map is the data; what is said about it goes to stderr.
        for warning in &warnings {
            eprintln!("warning: {warning}");
        }
        for error in &errors {
            eprintln!("error: {error}");
        }
        if args.write && errors.is_empty() {
            eprintln!("written: each model's placement in its config");
        }
    }
    Ok(if errors.is_empty() { 0 } else { 1 })
}

/// The optimiser's layout for the models of `folders` on `cores` cores.
fn optimized(
    args: &PlanArgs,
    folders: &[repository::ModelFolder],
    ensembles: &[repository::Ensemble],
    cores: usize,
) -> anyhow::Result<optimize::Plan> {
    let rates = planning::rates(&args.load, folders, ensembles)?;
    let demands = folders
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let service = planning::service(f)?;
            Ok(optimize::Demand {
                name: f.def.name.clone(),
                cores_per_instance: f.def.cores_per_instance,
                service: service.mean_seconds(),
                // Equal demand in calls when no rate is given anywhere.
                rate: rates.as_ref().map_or(1.0, |r| r[i]),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    optimize::optimize(&demands, cores, args.elastic).context("no layout")
}
