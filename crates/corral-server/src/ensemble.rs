//! Ensembles (`platform: "ensemble"`, SPEC §13): a configuration's `ensemble_scheduling`
//! as a [`Plan`] of steps over named tensors, and the checks Triton makes when it loads one
//! against its steps' models (core `model_repository_manager.cc`: `ConnectDependencyGraph`,
//! `CircularDependencyCheck`, `CheckNode`; `ensemble_utils.cc`: `ValidateEnsembleConfig`), in
//! Triton's order and words. What the configuration alone says (steps, maps, unused or
//! unwritten tensors) is checked as it is read (`corral_config::validate`).
//!
//! An ensemble holds no cores and no instances: its steps' models do. Running one is one more
//! front end of the one call (`call.rs`): each step is a call of its model, started as soon as
//! its inputs exist.

use std::collections::BTreeMap;

use corral_config::{DataType as ConfigType, ModelConfig};
use corral_engine::{DataType, TensorSpec};

/// One step: a model's call, its inputs taken from the ensemble's tensors, its outputs named
/// into them.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub model: String,
    /// Empty: the highest ready version (`model_version: -1`).
    pub version: String,
    /// (the model's input, the ensemble tensor it reads).
    pub inputs: Vec<(String, String)>,
    /// (the model's output, the ensemble tensor it writes).
    pub outputs: Vec<(String, String)>,
}

/// An ensemble as it runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub name: String,
    pub steps: Vec<Step>,
    /// The ensemble's own tensors, shapes with the batch dimension (-1) when it batches.
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

/// Whether a configuration is an ensemble's (its platform, or its scheduling says so).
pub fn is_ensemble(config: &ModelConfig) -> bool {
    config.platform == corral_config::validate::ENSEMBLE || config.ensemble_scheduling().is_some()
}

/// The plan of a configuration that passed `corral_config::validate`.
pub fn plan(config: &ModelConfig, name: &str) -> Result<Plan, String> {
    let ensembling = config.ensemble_scheduling().ok_or_else(|| format!("{name} is not an ensemble"))?;
    let steps = ensembling
        .step
        .iter()
        .map(|step| Step {
            model: step.model_name.clone(),
            version: if step.model_version < 0 { String::new() } else { step.model_version.to_string() },
            inputs: step.input_map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            outputs: step.output_map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        })
        .collect();
    let batched = config.max_batch_size > 0;
    let spec = |tensor_name: &str, data_type: i32, dims: &[i64]| -> Result<TensorSpec, String> {
        let datatype = datatype(data_type).ok_or_else(|| format!("tensor `{tensor_name}`: data type {data_type}"))?;
        let shape = if batched { std::iter::once(-1).chain(dims.iter().copied()).collect() } else { dims.to_vec() };
        Ok(TensorSpec::new(tensor_name, datatype, shape))
    };
    let inputs = config.input.iter().map(|t| spec(&t.name, t.data_type, &t.dims)).collect::<Result<_, _>>()?;
    let outputs = config.output.iter().map(|t| spec(&t.name, t.data_type, &t.dims)).collect::<Result<_, _>>()?;
    Ok(Plan { name: name.to_owned(), steps, inputs, outputs })
}

fn datatype(value: i32) -> Option<DataType> {
    let name = ConfigType::try_from(value).ok()?.as_str_name();
    match name {
        "TYPE_STRING" => Some(DataType::Bytes),
        _ => name.strip_prefix("TYPE_")?.parse().ok(),
    }
}

fn type_name(datatype: DataType) -> String {
    match datatype {
        DataType::Bytes => "TYPE_STRING".to_owned(),
        other => format!("TYPE_{}", other.kserve_name()),
    }
}

/// What the load knows of a step's model (its highest loaded version's): its tensors, shapes
/// without the batch dimension, and which of its inputs are optional.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepModel {
    pub max_batch_size: usize,
    pub inputs: Vec<(TensorSpec, bool)>,
    pub outputs: Vec<TensorSpec>,
    pub versions: Vec<u64>,
    pub decoupled: bool,
}

/// A step model's missing names, sorted and joined as Triton lists them.
pub fn missing(name: &str, absent: &[String]) -> String {
    let mut absent: Vec<&str> = absent.iter().map(String::as_str).collect();
    absent.sort_unstable();
    absent.dedup();
    format!("ensemble {name} contains models that are not available or ambiguous: {}", absent.join(", "))
}

/// Triton's words for an ensemble met again while its steps load: `path` the ensembles being
/// loaded, outermost first, `step` the one met again.
pub fn circular(path: &[String], step: &str) -> String {
    let current = path.last().map_or(step, String::as_str);
    format!("circular dependency between ensembles: {step} -> ... -> {current} -> {step}")
}

/// A tensor as a step or the ensemble says it: where it was inferred from, its type, its
/// dimensions without and with the batch dimension.
struct Inferred {
    model: String,
    datatype: DataType,
    dims: Vec<i64>,
    full: Vec<i64>,
}

/// Checks `plan` (of an ensemble allowing `max_batch_size`) against its steps' models, as
/// Triton's `CheckNode` then `ValidateEnsembleConfig` do; `step_model` gives each loaded one.
/// `Ok(true)`: a step is decoupled, so the ensemble is (Triton sets its transaction policy):
/// each response of that step runs the steps after it, and the ensemble streams.
pub fn check(
    plan: &Plan,
    max_batch_size: usize,
    step_model: impl Fn(&str) -> Option<StepModel>,
) -> Result<bool, String> {
    let name = &plan.name;
    let batched = max_batch_size > 0;
    let models: Vec<(&Step, StepModel)> = plan
        .steps
        .iter()
        .map(|step| {
            let model = step_model(&step.model)
                .ok_or_else(|| format!("ensemble '{name}' depends on '{}' which has no loaded version.", step.model))?;
            Ok((step, model))
        })
        .collect::<Result<_, String>>()?;
    for (step, model) in &models {
        if let Ok(version) = step.version.parse::<u64>()
            && !model.versions.contains(&version)
        {
            return Err(format!(
                "ensemble '{name}' depends on '{}' whose required version {version} is not loaded.",
                step.model
            ));
        }
    }
    let strip = |shape: &[i64]| if batched { shape.get(1..).unwrap_or_default().to_vec() } else { shape.to_vec() };
    let mut tensors: BTreeMap<String, Inferred> = BTreeMap::new();
    for spec in plan.inputs.iter().chain(&plan.outputs) {
        tensors.insert(
            spec.name.clone(),
            Inferred {
                model: name.clone(),
                datatype: spec.datatype,
                dims: strip(&spec.shape),
                full: spec.shape.clone(),
            },
        );
    }
    for (step, model) in &models {
        if model.max_batch_size != 0 && model.max_batch_size < max_batch_size {
            return Err(format!(
                "ensemble {name} allows maximum batch size {max_batch_size}, but it contains model {} which only allows maximum batch size to be {}",
                step.model, model.max_batch_size
            ));
        }
        let full = |dims: &[i64]| -> Vec<i64> {
            if model.max_batch_size > 0 {
                std::iter::once(-1).chain(dims.iter().copied()).collect()
            } else {
                dims.to_vec()
            }
        };
        let seen = |spec: &TensorSpec| {
            let dims = if model.max_batch_size > 0 {
                spec.shape.get(1..).unwrap_or_default().to_vec()
            } else {
                spec.shape.clone()
            };
            Inferred { model: step.model.clone(), datatype: spec.datatype, full: full(&dims), dims }
        };
        for (input, tensor) in &step.inputs {
            if !model.inputs.iter().any(|(spec, _)| spec.name == *input) {
                return Err(format!(
                    "in ensemble {name}, ensemble tensor {tensor} is mapping to non-existing input {input} in model {}",
                    step.model
                ));
            }
        }
        for (spec, optional) in &model.inputs {
            let mapped: Vec<&String> = step.inputs.iter().filter(|(i, _)| *i == spec.name).map(|(_, t)| t).collect();
            for tensor in &mapped {
                consistent(name, tensor, &mut tensors, seen(spec))?;
            }
            if mapped.is_empty() && !optional {
                return Err(format!(
                    "in ensemble {name}, input {} in model {} is not mapped to any ensemble tensors",
                    spec.name, step.model
                ));
            }
        }
        for (output, tensor) in &step.outputs {
            let Some(spec) = model.outputs.iter().find(|o| o.name == *output) else {
                return Err(format!(
                    "in ensemble {name}, ensemble tensor {tensor} is mapped from non-existing output {output} in model {}",
                    step.model
                ));
            };
            consistent(name, tensor, &mut tensors, seen(spec))?;
        }
    }
    decoupled_branches(plan, &models)?;
    Ok(models.iter().any(|(_, model)| model.decoupled))
}

/// Triton's check that no step (nor the ensemble's outputs) takes tensors that come from
/// different decoupled steps: each tensor carries the decoupled step it descends from (0: none),
/// a decoupled step's outputs a new one.
fn decoupled_branches(plan: &Plan, models: &[(&Step, StepModel)]) -> Result<(), String> {
    let name = &plan.name;
    let mut labels: BTreeMap<&str, usize> = plan.inputs.iter().map(|t| (t.name.as_str(), 0)).collect();
    let mut done = vec![false; models.len()];
    let mut next_label = 0;
    let branched = |model: &str| {
        format!(
            "in ensemble {name}, step of model '{model}' receives inputs originated from different decoupled models"
        )
    };
    loop {
        let mut progressed = false;
        for (i, (step, model)) in models.iter().enumerate() {
            if done[i] {
                continue;
            }
            // Its input tensors' labels, once each of them has one.
            let Some(mut distinct) =
                step.inputs.iter().map(|(_, t)| labels.get(t.as_str()).copied()).collect::<Option<Vec<_>>>()
            else {
                continue;
            };
            done[i] = true;
            progressed = true;
            distinct.sort_unstable();
            distinct.dedup();
            if distinct.len() > 1 {
                return Err(branched(&step.model));
            }
            let label = if model.decoupled {
                next_label += 1;
                next_label
            } else {
                distinct.first().copied().unwrap_or(0)
            };
            for (_, tensor) in &step.outputs {
                labels.insert(tensor, label);
            }
        }
        if !progressed {
            break;
        }
    }
    let mut outputs: Vec<usize> = plan.outputs.iter().filter_map(|t| labels.get(t.name.as_str()).copied()).collect();
    outputs.sort_unstable();
    outputs.dedup();
    if outputs.len() > 1 {
        return Err(branched(name));
    }
    Ok(())
}

/// Triton's `ValidateTensorConsistency`: a tensor's type, and its shape (with or without the
/// batch dimension, -1 matching any size), as every step that maps it says.
fn consistent(name: &str, tensor: &str, tensors: &mut BTreeMap<String, Inferred>, new: Inferred) -> Result<(), String> {
    let Some(known) = tensors.get(tensor) else {
        tensors.insert(tensor.to_owned(), new);
        return Ok(());
    };
    let prefix = format!("in ensemble {name}, ensemble tensor {tensor}: ");
    if known.datatype != new.datatype {
        return Err(format!(
            "{prefix}inconsistent data type: {} is inferred from model {} while {} is inferred from model {}",
            type_name(known.datatype),
            known.model,
            type_name(new.datatype),
            new.model
        ));
    }
    let same =
        |a: &[i64], b: &[i64]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| *x == -1 || *y == -1 || x == y);
    if !same(&known.dims, &new.dims) && !same(&known.full, &new.full) {
        let list = |dims: &[i64]| format!("[{}]", dims.iter().map(i64::to_string).collect::<Vec<_>>().join(","));
        return Err(format!(
            "{prefix}inconsistent shape: {} is inferred from model {} while {} is inferred from model {}",
            list(&known.full),
            known.model,
            list(&new.full),
            new.model
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ensemble(text: &str) -> Plan {
        let config = corral_config::from_text(text).expect("parses");
        corral_config::validate(&config, "e", "").expect("valid alone");
        plan(&config, "e").expect("a plan")
    }

    const TWO_STEPS: &str = r#"
platform: "ensemble"
max_batch_size: 4
input [ { name: "IN", data_type: TYPE_FP32, dims: [ 16 ] } ]
output [ { name: "OUT", data_type: TYPE_FP32, dims: [ 16 ] } ]
ensemble_scheduling { step [
  { model_name: "pre", model_version: -1, input_map { key: "x" value: "IN" } output_map { key: "y" value: "mid" } },
  { model_name: "net", model_version: 2, input_map { key: "a" value: "mid" } output_map { key: "b" value: "OUT" } }
] }
"#;

    fn model(batch: usize, input: (&str, DataType, &[i64]), output: (&str, DataType, &[i64])) -> StepModel {
        let full = |dims: &[i64]| {
            if batch > 0 { std::iter::once(-1).chain(dims.iter().copied()).collect() } else { dims.to_vec() }
        };
        StepModel {
            max_batch_size: batch,
            inputs: vec![(TensorSpec::new(input.0, input.1, full(input.2)), false)],
            outputs: vec![TensorSpec::new(output.0, output.1, full(output.2))],
            versions: vec![1, 2],
            decoupled: false,
        }
    }

    #[test]
    fn an_ensemble_is_checked_against_its_steps_in_tritons_words() {
        let plan = ensemble(TWO_STEPS);
        assert_eq!(plan.steps[0].version, "");
        assert_eq!(plan.steps[1].version, "2");
        assert_eq!(plan.inputs[0].shape, vec![-1, 16]);
        let f32 = DataType::F32;
        let good = |name: &str| match name {
            "pre" => Some(model(8, ("x", f32, &[16]), ("y", f32, &[16]))),
            "net" => Some(model(8, ("a", f32, &[16]), ("b", f32, &[16]))),
            _ => None,
        };
        assert_eq!(check(&plan, 4, good), Ok(false));
        let with = |pre: StepModel| {
            let net = good("net");
            check(&plan, 4, move |name| if name == "pre" { Some(pre.clone()) } else { net.clone() }).unwrap_err()
        };
        assert_eq!(
            with(model(2, ("x", f32, &[16]), ("y", f32, &[16]))),
            "ensemble e allows maximum batch size 4, but it contains model pre which only allows maximum batch size to be 2"
        );
        assert_eq!(
            with(model(8, ("x", DataType::I32, &[16]), ("y", f32, &[16]))),
            "in ensemble e, ensemble tensor IN: inconsistent data type: TYPE_FP32 is inferred from model e while TYPE_INT32 is inferred from model pre"
        );
        assert_eq!(
            with(model(8, ("x", f32, &[16, 2]), ("y", f32, &[16]))),
            "in ensemble e, ensemble tensor IN: inconsistent shape: [-1,16] is inferred from model e while [-1,16,2] is inferred from model pre"
        );
        // A batching step's [16] and a non-batching one's [-1,16] agree (their full shapes do).
        assert_eq!(
            check(&plan, 4, |n| if n == "pre" {
                Some(model(0, ("x", f32, &[-1, 16]), ("y", f32, &[-1, 16])))
            } else {
                good(n)
            }),
            Ok(false)
        );
        assert_eq!(
            with(model(8, ("z", f32, &[16]), ("y", f32, &[16]))),
            "in ensemble e, ensemble tensor IN is mapping to non-existing input x in model pre"
        );
        assert_eq!(
            with(model(8, ("x", f32, &[16]), ("w", f32, &[16]))),
            "in ensemble e, ensemble tensor mid is mapped from non-existing output y in model pre"
        );
        let mut two_inputs = model(8, ("x", f32, &[16]), ("y", f32, &[16]));
        two_inputs.inputs.push((TensorSpec::new("x2", f32, vec![-1, 16]), false));
        assert_eq!(
            with(two_inputs.clone()),
            "in ensemble e, input x2 in model pre is not mapped to any ensemble tensors"
        );
        two_inputs.inputs[1].1 = true;
        assert_eq!(
            check(&plan, 4, |n| if n == "pre" { Some(two_inputs.clone()) } else { good(n) }),
            Ok(false),
            "optional"
        );
        let mut old = model(8, ("a", f32, &[16]), ("b", f32, &[16]));
        old.versions = vec![1];
        assert_eq!(
            check(&plan, 4, |n| if n == "net" { Some(old.clone()) } else { good(n) }).unwrap_err(),
            "ensemble 'e' depends on 'net' whose required version 2 is not loaded."
        );
        assert_eq!(
            missing("e", &["net".into(), "b".into(), "net".into()]),
            "ensemble e contains models that are not available or ambiguous: b, net"
        );
        assert_eq!(
            circular(&["a".into(), "b".into()], "a"),
            "circular dependency between ensembles: a -> ... -> b -> a"
        );
        assert_eq!(circular(&["s".into()], "s"), "circular dependency between ensembles: s -> ... -> s -> s");
    }

    #[test]
    fn steps_fed_by_different_decoupled_steps_are_triton_s_error() {
        let plan = ensemble(
            r#"
platform: "ensemble"
input [ { name: "IN", data_type: TYPE_FP32, dims: [ 16 ] } ]
output [ { name: "OUT", data_type: TYPE_FP32, dims: [ 16 ] } ]
ensemble_scheduling { step [
  { model_name: "stream_a", model_version: -1, input_map { key: "x" value: "IN" } output_map { key: "y" value: "a" } },
  { model_name: "stream_b", model_version: -1, input_map { key: "x" value: "IN" } output_map { key: "y" value: "b" } },
  { model_name: "join", model_version: -1, input_map [ { key: "x" value: "a" }, { key: "x2" value: "b" } ] output_map { key: "y" value: "OUT" } }
] }
"#,
        );
        let f32 = DataType::F32;
        let step = |name: &str| {
            let mut m = model(0, ("x", f32, &[16]), ("y", f32, &[16]));
            if name == "join" {
                m.inputs.push((TensorSpec::new("x2", f32, vec![16]), false));
            }
            m.decoupled = name.starts_with("stream");
            Some(m)
        };
        assert_eq!(
            check(&plan, 0, step).unwrap_err(),
            "in ensemble e, step of model 'join' receives inputs originated from different decoupled models"
        );
        let one = |name: &str| step(name).map(|m| StepModel { decoupled: name == "stream_a", ..m });
        assert_eq!(
            check(&plan, 0, one).unwrap_err(),
            "in ensemble e, step of model 'join' receives inputs originated from different decoupled models",
            "a decoupled branch and a plain one"
        );
        let none = |name: &str| step(name).map(|m| StepModel { decoupled: false, ..m });
        assert_eq!(check(&plan, 0, none), Ok(false));
        // A decoupled last step, fed by plain ones: the ensemble is decoupled (it streams).
        let last = |name: &str| step(name).map(|m| StepModel { decoupled: name == "join", ..m });
        assert_eq!(check(&plan, 0, last), Ok(true));
    }

    #[test]
    fn the_configuration_alone_is_checked_as_triton_does() {
        let refused = |text: &str| {
            let config = corral_config::from_text(text).expect("parses");
            corral_config::validate(&config, "e", "").unwrap_err()
        };
        let io = r#"input [ { name: "data", data_type: TYPE_FP32, dims: [ 16 ] } ]
output [ { name: "prob", data_type: TYPE_FP32, dims: [ 16 ] } ]"#;
        let step = |m: &str, i: &str, o: &str| {
            format!(
                "{{ model_name: \"{m}\" input_map {{ key: \"in\" value: \"{i}\" }} output_map {{ key: \"out\" value: \"{o}\" }} }}"
            )
        };
        let with_steps = |steps: &[String]| {
            format!("platform: \"ensemble\"\n{io}\nensemble_scheduling {{ step [ {} ] }}", steps.join(", "))
        };
        assert_eq!(
            refused(&format!("platform: \"ensemble\"\n{io}")),
            "ensemble scheduling must be set for ensemble e whose platform is ensemble"
        );
        assert_eq!(
            refused(&format!("platform: \"ensemble\"\nbackend: \"onnxruntime\"\n{io}")),
            "Ensemble model 'e' must have platform type 'ensemble' and empty backend type"
        );
        assert_eq!(
            refused(&format!("platform: \"ensemble\"\n{io}\nensemble_scheduling {{ }}")),
            "must specify 'step' for ensemble 'e'"
        );
        let one = step("m", "data", "prob");
        assert_eq!(
            refused(&format!("{}\ninstance_group [ {{ count: 1 }} ]", with_steps(std::slice::from_ref(&one)))),
            "instance group should not be specified for ensemble 'e'"
        );
        assert_eq!(
            refused(&with_steps(&[
                one.clone(),
                "{ model_name: \"m\" output_map { key: \"out\" value: \"t\" } }".to_owned()
            ])),
            "must specify 'input_map' in step 1 of ensemble 'e'"
        );
        assert_eq!(
            refused(&with_steps(&[one.clone(), step("m", "data", "prob")])),
            "ensemble tensor 'prob' can appear in an output map only once for ensemble 'e' step 1"
        );
        assert_eq!(
            refused(&with_steps(&[step("m", "other", "prob")])),
            "ensemble input 'data' for ensemble e' is not used"
        );
        assert_eq!(
            refused(&with_steps(&[step("m", "data", "t")])),
            "ensemble output 'prob' for ensemble e' is not used"
        );
        assert_eq!(
            refused(&with_steps(&[step("m", "data", "t"), step("m", "loose", "prob")])),
            "output 'prob' for ensemble 'e' is not written: at least one of its depending tensors, 'loose', is not connected"
        );
        assert_eq!(
            refused(&with_steps(&[one.clone(), step("m", "data", "spare")])),
            "ensemble tensor 'spare' is unused in ensemble 'e'"
        );
        assert!(
            corral_config::validate(&corral_config::from_text(&with_steps(&[one])).expect("parses"), "e", "").is_ok()
        );
    }
}
