//! `corral plan --optimize --write`: each model's placement rewritten in its own config, and
//! nothing else: in `config.toml` the `[placement]` table's `start`, `count`, `group`,
//! `starts` and `elastic` lines give way to `starts = [..]` (and `elastic`), other lines kept
//! as they were; in `config.pbtxt` the `corral.start`, `corral.count`, `corral.group`,
//! `corral.starts` and `corral.elastic` parameters give way to `corral.starts` (and
//! `corral.elastic`), which wins over `instance_group { count }`. A folder with neither file
//! gets a `config.toml` holding only its placement.
//!
//! All or nothing: every file is rewritten, then each folder is read back and must place as
//! planned; if any does not, every file is put back as it was and the plan fails.

use std::path::PathBuf;

use anyhow::{Context, bail};
use corral_plan::optimize::{Plan, Planned};
use corral_runtime::{Where, repository::ModelFolder};

const TOML_KEYS: [&str; 5] = ["start", "count", "group", "starts", "elastic"];
const PBTXT_KEYS: [&str; 5] = ["corral.start", "corral.count", "corral.group", "corral.starts", "corral.elastic"];

/// Writes `plan` into the configs of `folders` (in the same order).
pub fn layout(folders: &[ModelFolder], plan: &Plan) -> anyhow::Result<()> {
    let mut changes: Vec<(PathBuf, Option<String>, String)> = Vec::new();
    for (folder, planned) in folders.iter().zip(&plan.models) {
        if folder.def.name != planned.name {
            bail!("internal: the plan's models are not the repository's");
        }
        let (path, old) = match &folder.config_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
                (path.clone(), Some(text))
            }
            // A model folder with no config: the placement goes into a new config.toml.
            None if folder.dir.file_name().is_some_and(|n| *n == *planned.name) => {
                (folder.dir.join("config.toml"), None)
            }
            None => bail!("`{}` is a lone model file: give plan a repository folder to --write", planned.name),
        };
        let new = if path.extension().is_some_and(|e| e == "pbtxt") {
            pbtxt(old.as_deref().unwrap_or_default(), planned)
        } else {
            toml(old.as_deref().unwrap_or_default(), planned)
        };
        changes.push((path, old, new));
    }
    let restore = |changes: &[(PathBuf, Option<String>, String)]| {
        for (path, old, _) in changes {
            let _ = match old {
                Some(text) => std::fs::write(path, text),
                None => std::fs::remove_file(path),
            };
        }
    };
    for (path, _, new) in &changes {
        if let Err(error) = std::fs::write(path, new) {
            restore(&changes);
            return Err(error).with_context(|| format!("cannot write {}; nothing was changed", path.display()));
        }
    }
    for (folder, planned) in folders.iter().zip(&plan.models) {
        let read = corral_runtime::repository::read_folder(&folder.dir);
        let placed = read.as_ref().ok().and_then(|f| f.as_ref()).map(|f| (f.def.placement.clone(), f.def.elastic));
        if placed != Some((Some(Where::Starts(planned.starts.clone())), planned.elastic)) {
            restore(&changes);
            let why = match read {
                Err(error) => error.to_string(),
                Ok(_) => format!("it reads back as {placed:?}"),
            };
            bail!(
                "the placement of `{}` could not be written as planned ({why}); every config was put back as it was\nhint: move its placement into [placement] of a config.toml, or into single-line `parameters` of its config.pbtxt",
                planned.name
            );
        }
    }
    Ok(())
}

fn starts_list(planned: &Planned) -> Vec<String> {
    planned.starts.iter().map(usize::to_string).collect()
}

/// `text` (a `config.toml`) with its `[placement]` table's placement keys replaced.
fn toml(text: &str, planned: &Planned) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut in_placement = false;
    let mut wrote = false;
    let ours = |planned: &Planned| {
        let mut out = vec![format!("starts = [{}]", starts_list(planned).join(", "))];
        if planned.elastic {
            out.push("elastic = true".to_owned());
        }
        out
    };
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            in_placement = trimmed.trim_end() == "[placement]";
            lines.push(line.to_owned());
            if in_placement {
                lines.extend(ours(planned));
                wrote = true;
            }
            continue;
        }
        let key = trimmed.split(['=', ' ', '\t']).next().unwrap_or_default();
        if in_placement && TOML_KEYS.contains(&key) {
            continue;
        }
        lines.push(line.to_owned());
    }
    if !wrote {
        if lines.last().is_some_and(|l| !l.trim().is_empty()) {
            lines.push(String::new());
        }
        lines.push("[placement]".to_owned());
        lines.extend(ours(planned));
    }
    lines.join("\n") + "\n"
}

/// `text` (a `config.pbtxt`) with corral's placement parameters replaced.
fn pbtxt(text: &str, planned: &Planned) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for line in text.lines() {
        let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        let ours = PBTXT_KEYS.iter().any(|key| compact.contains(&format!("key:\"{key}\"")));
        if !(ours && compact.starts_with("parameters")) {
            kept.push(line);
        }
    }
    let mut out = kept.join("\n");
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    let parameter =
        |key: &str, value: &str| format!("parameters {{ key: \"{key}\" value {{ string_value: \"{value}\" }} }}\n");
    out += &parameter("corral.starts", &starts_list(planned).join(","));
    if planned.elastic {
        out += &parameter("corral.elastic", "true");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(starts: &[usize], elastic: bool) -> Planned {
        Planned { name: "m".into(), cores_per_instance: 2, starts: starts.to_vec(), elastic }
    }

    #[test]
    fn only_placement_lines_change() {
        let text = "platform = \"sim\"\ncores = 2\n[placement]\nstart = 1\ncount = 4\n# kept\n[sim]\nlatency_ms = 10\n";
        expect_test::expect![[r#"
            platform = "sim"
            cores = 2
            [placement]
            starts = [0, 14]
            elastic = true
            # kept
            [sim]
            latency_ms = 10
        "#]]
        .assert_eq(&toml(text, &planned(&[0, 14], true)));
        expect_test::expect![[r#"
            cores = 2

            [placement]
            starts = [3]
        "#]]
        .assert_eq(&toml("cores = 2\n", &planned(&[3], false)));
        let config = "name: \"m\"\nparameters { key: \"corral.start\" value { string_value: \"1\" } }\nparameters { key: \"other\" value { string_value: \"x\" } }\ninstance_group [ { count: 2 } ]\n";
        expect_test::expect![[r#"
            name: "m"
            parameters { key: "other" value { string_value: "x" } }
            instance_group [ { count: 2 } ]
            parameters { key: "corral.starts" value { string_value: "0,6" } }
        "#]]
        .assert_eq(&pbtxt(config, &planned(&[0, 6], false)));
    }
}
