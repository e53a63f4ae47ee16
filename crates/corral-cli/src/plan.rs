//! `corral plan`: place a repository's models without running them, as a process with the
//! requested cores would, and draw the core map (text, JSON, or SVG).
//!
//! A model that cannot be placed is named (an `error:` line, or `errors` in the JSON) after
//! the map of what could be placed, and the exit status is 1, so a script can tell a layout
//! that fits from one that does not.

use std::fmt::Write as _;

use anyhow::Context;
use corral_cores::{Device, Sources};
use corral_placement::{Layout, Where};
use serde_json::json;

use crate::{cli::PlanArgs, settings::take_settings};

/// Returns the exit status: 0 when every model was placed, 1 when any could not be.
pub fn run(args: &PlanArgs, lookup: &impl Fn(&str) -> Option<String>) -> anyhow::Result<u8> {
    let settings = take_settings(&args.device, Some(&args.cores));
    let device = Device::open(settings.device_spec(lookup)?)?;
    let request = Sources::from_env(lookup).overlay(settings.explicit.clone()).resolve()?;
    request.check(&device.spec().to_string(), device.len())?;
    let cores = request.core_count(device.len());
    let models = crate::models::read(args.models.path())?;
    let mut layout = Layout::new(cores, request.groups.as_deref().unwrap_or_default());
    let (mut warnings, mut errors) = (Vec::new(), Vec::new());
    for model in &models {
        match layout.place(&model.name, model.cores_per_instance, model.placement.unwrap_or(Where::Auto)) {
            Ok(placement) => {
                warnings.extend(placement.warning());
                layout.commit(&placement);
            }
            Err(error) => errors.push(format!("{}: {error}", model.name)),
        }
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, svg(&layout)).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.json {
        let placed: Vec<_> = models
            .iter()
            .map(|m| {
                let instances: Vec<_> = layout
                    .placed()
                    .iter()
                    .filter(|p| p.model == m.name)
                    .map(|p| json!({"first": p.cores.first, "count": p.cores.count}))
                    .collect();
                json!({"name": m.name, "cores_per_instance": m.cores_per_instance, "instances": instances})
            })
            .collect();
        let out = json!({"device": device.spec().to_string(), "cores": cores, "models": placed, "warnings": warnings, "errors": errors});
        println!("{}", serde_json::to_string_pretty(&out).expect("JSON always serializes"));
    } else {
        println!("{} cores of {} ({})\n", cores, device.spec(), request.origin);
        print!("{}", layout.render());
        for warning in &warnings {
            println!("warning: {warning}");
        }
        for error in &errors {
            println!("error: {error}");
        }
    }
    Ok(if errors.is_empty() { 0 } else { 1 })
}

/// The core map as SVG: cores in a row, one bar per instance, shared cores in red.
pub fn svg(layout: &Layout) -> String {
    const CELL: usize = 48;
    const ROW: usize = 28;
    let cores = layout.cores();
    let placed = layout.placed();
    let mut models_on = vec![Vec::<&str>::new(); cores];
    for p in placed {
        for c in p.cores.cores() {
            if !models_on[c].contains(&p.model.as_str()) {
                models_on[c].push(&p.model);
            }
        }
    }
    let label = 120;
    let width = label + cores * CELL + 10;
    let height = (placed.len() + 2) * ROW + 10;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"monospace\" font-size=\"12\">\n"
    );
    for (c, models) in models_on.iter().enumerate() {
        let x = label + c * CELL;
        let fill = if models.len() > 1 { "#f4b6b6" } else { "#eeeeee" };
        let _ = writeln!(
            out,
            "<rect x=\"{x}\" y=\"5\" width=\"{}\" height=\"{ROW}\" fill=\"{fill}\" stroke=\"#888\"/>",
            CELL - 4
        );
        let _ = writeln!(out, "<text x=\"{}\" y=\"23\">nc{c}</text>", x + 6);
    }
    let mut order: Vec<usize> = (0..placed.len()).collect();
    order.sort_by_key(|&i| (placed[i].cores.first, i));
    for (row, i) in order.into_iter().enumerate() {
        let p = &placed[i];
        let y = 10 + (row + 1) * ROW;
        let x = label + p.cores.first * CELL;
        let shared = p.cores.cores().any(|c| models_on[c].len() > 1);
        let fill = if shared { "#d9534f" } else { "#5b8def" };
        let _ = writeln!(out, "<text x=\"4\" y=\"{}\">{}[{}]</text>", y + 17, escape(&p.model), p.replica);
        let _ = writeln!(
            out,
            "<rect x=\"{x}\" y=\"{y}\" width=\"{}\" height=\"{}\" rx=\"4\" fill=\"{fill}\"/>",
            p.cores.count * CELL - 4,
            ROW - 6
        );
    }
    out + "</svg>\n"
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
