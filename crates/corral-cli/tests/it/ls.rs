//! `corral ls`: the table and the JSON a user reads.

use expect_test::expect;

use super::Host;

/// Replaces run-specific values (pids, times, the binary's path) with placeholders.
fn redact(text: &str, pids: &[u32]) -> String {
    let mut text = text.replace(env!("CARGO_BIN_EXE_corral"), "corral");
    for pid in pids {
        text = text.replace(&pid.to_string(), "<pid>");
    }
    let mut out = String::new();
    for word in text.split_inclusive(' ') {
        let stamp = word.trim_end().trim_end_matches(',').trim_matches('"');
        let looks_like_time = stamp.len() == 20 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T';
        out += &if looks_like_time { word.replace(stamp, "<time>") } else { word.to_owned() };
    }
    out
}

/// Column widths follow the real pids and times: keep the columns, not their padding.
fn fold_columns(table: &str) -> String {
    let lines: Vec<String> = table
        .lines()
        .map(|l| l.split("  ").filter(|c| !c.is_empty()).map(str::trim).collect::<Vec<_>>().join("  "))
        .collect();
    lines.join("\n") + "\n"
}

#[test]
fn table_shows_owners_and_free_cores() {
    let host = Host::new();
    let holder = host.reserve(&["--device", "sim:inf1.xlarge", "--visible-cores", "1-2"], &[]);
    let output = host.run(&["ls", "--device", "sim:inf1.xlarge"], &[]);
    assert!(output.status.success());
    expect![[r#"
        sim:inf1.xlarge: 4 cores, 2 free
        CORE  CPUS  PID  SINCE  COMMAND
        nc0  -  free
        nc1  -  <pid>  <time>  corral reserve --json --device sim:inf1.xlarge --visible-cores 1-2
        nc2  -  <pid>  <time>  corral reserve --json --device sim:inf1.xlarge --visible-cores 1-2
        nc3  -  free
    "#]]
    .assert_eq(&fold_columns(&redact(&String::from_utf8_lossy(&output.stdout), &[holder.pid()])));
}

#[test]
fn json_has_device_cores_and_owners() {
    let host = Host::new();
    let holder = host.reserve(&["--device", "sim:2", "--visible-cores", "1"], &[]);
    let output = host.run(&["ls", "--device", "sim:2", "--json"], &[]);
    let text = String::from_utf8_lossy(&output.stdout).replace(&host.dir.path().display().to_string(), "<dir>");
    expect![[r#"
        {
          "device": "sim:2",
          "registry": "<dir>/sim-2",
          "quota_cpus": null,
          "cores": [
            {
              "index": 0,
              "cpus": [],
              "owner": null,
              "owners": [],
              "held": false
            },
            {
              "index": 1,
              "cpus": [],
              "owner": {
                "pid": <pid>,
                "command": "corral reserve --json --device sim:2 --visible-cores 1",
                "since": "<time>",
                "models": []
              },
              "owners": [
                {
                  "pid": <pid>,
                  "command": "corral reserve --json --device sim:2 --visible-cores 1",
                  "since": "<time>",
                  "models": []
                }
              ],
              "held": true
            }
          ]
        }
    "#]]
    .assert_eq(&redact(&text, &[holder.pid()]));
}

#[test]
fn cpu_device_lists_the_host_cpus() {
    let host = Host::new();
    let listing = host.ls("cpu:logical");
    let cpus: Vec<u64> =
        listing["cores"].as_array().expect("cores").iter().map(|c| c["cpus"][0].as_u64().expect("cpu")).collect();
    let mut host_cpus = corral_cores::host_cpus();
    host_cpus.extend(corral_cores::allowed_cpus().expect("affinity"));
    host_cpus.sort_unstable();
    host_cpus.dedup();
    assert_eq!(cpus, host_cpus.iter().map(|&c| c as u64).collect::<Vec<_>>());
}

#[test]
fn unknown_device_lists_the_valid_ones() {
    let host = Host::new();
    let output = host.run(&["ls", "--device", "sim:inf3.nano"], &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown device `sim:inf3.nano`") && stderr.contains("inf1.6xlarge"), "{stderr}");
}

#[test]
fn ray_resources_declare_the_device_cores() {
    let host = Host::new();
    let output = host.run(&["ray-resources", "--device", "sim:inf2.24xlarge"], &[]);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "{\"neuron_cores\":12}\n");
    let output = host.run(&["ray-resources"], &[("CORRAL_DEVICE", "sim:6")]);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "{\"neuron_cores\":6}\n");
    let output = host.run(&["ray-resources"], &[("CORRAL_DEVICE", "tpu")]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).starts_with("error: CORRAL_DEVICE=tpu is not valid"));
}

#[test]
fn instances_show_per_core_and_per_owner() {
    let host = Host::new();
    let repo = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(repo.path().join("tick")).expect("mkdir");
    std::fs::write(
        repo.path().join("tick/config.toml"),
        "platform = \"sim\"\n[placement]\nstart = 1\ncount = 2\n[sim]\nlatency_ms = 1\n[[input]]\nname = \"x\"\ndatatype = \"FP32\"\nshape = [1]\n[[output]]\nname = \"y\"\ndatatype = \"FP32\"\nshape = [1]\n",
    )
    .expect("config");
    let repo_arg = repo.path().to_str().expect("utf-8");
    let args = ["serve", "--model-repository", repo_arg, "--device", "sim:4", "--num-cores", "3", "--http-port", "0"];
    let mut server = host.corral(&[&args[..], &["--grpc-port", "0", "--metrics-port", "0"]].concat());
    server.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut server = server.spawn().expect("serve starts");
    // Wait (bounded) until the model is published.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let listing = loop {
        let listing = host.ls("sim:4");
        if listing["cores"][2]["owner"]["models"].as_array().is_some_and(|m| !m.is_empty()) {
            break listing;
        }
        assert!(std::time::Instant::now() < deadline, "tick was never published: {listing}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let models = &listing["cores"][0]["owner"]["models"];
    assert_eq!(
        models,
        // A served version is its own runtime model, `NAME@V`.
        &serde_json::json!([
            {"name": "tick@1", "instance": 0, "cores": [1], "engine": "sim", "engine_reason": null, "engine_medians_us": {}},
            {"name": "tick@1", "instance": 1, "cores": [2], "engine": "sim", "engine_reason": null, "engine_medians_us": {}}
        ])
    );
    let table = String::from_utf8(host.run(&["ls", "--device", "sim:4"], &[]).stdout).expect("utf-8");
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("nc")).collect();
    assert!(!rows[0].contains("tick@1["), "nc0 holds no instance: {table}");
    assert!(rows[1].contains("tick@1[0]") && rows[2].contains("tick@1[1]"), "{table}");
    let _ = server.kill();
    let _ = server.wait();
}
