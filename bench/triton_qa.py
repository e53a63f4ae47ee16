"""Triton's own QA tests against corral serve: how many cases of Triton's qa/L0_http,
L0_input_validation, L0_shared_memory, L0_parameters and L0_grpc pass unchanged.

Nothing of Triton is kept in corral: the QA files, Triton's example models and its model
generators are taken from a Triton server repository at run time (TRITON_SERVER_REPO: a git
directory, bare or not, read at TRITON_REF, default HEAD; or a plain checkout) into a
temporary folder. The models are those of Triton's CI: docs/examples/model_repository, and
qa_model_repository / qa_identity_model_repository made by Triton's gen_qa_models.py and
gen_qa_identity_models.py (--onnx, as qa/common/gen_qa_model_repository runs them), with each
test.sh's own edits. Models that are not ONNX in Triton's CI but compute something trivial
(Python identities, a constant, TorchScript nn.Identity, the downloaded densenet) get ONNX
stand-ins from bench/triton_qa_models.py; QA_STANDINS=0 counts their cases as not runnable.

Each group of cases runs the way its test.sh runs it: a corral serve started with the
tritonserver flags of that test.sh spelled as Triton spells them (only --backend-directory,
a path into a Triton install, is dropped; a flag corral refuses fails the start, and the
group's cases count as failed with corral's words), on ports 8000/8001/8002 (the tests' own),
ready when /v2/health/ready answers 200 (util.sh's run_server), then the test file under
unittest. Cases needing a Python backend model with behaviour of its own, TensorRT, nginx
or an LLM backend are listed as not runnable with the reason. test.sh's shell checks (curl
lines, example clients, C++ unit tests, expected start failures) are not counted.

usage: bench/triton_qa.py (run through bench/triton_qa.sh)
  CORRAL=path            the corral binary (default: target/release/corral)
  TRITON_SERVER_REPO=dir Triton's server repository; TRITON_REF=ref (default HEAD)
  OUT=file.json          raw results (default /tmp/triton_qa.json)
  QA_ONLY=regex          run only the cases whose id matches (the others are left out)
  QA_STANDINS=0          count cases that need a stand-in model as not runnable
  QA_DROP_FLAGS=a,b      leave these tritonserver flags out too (to see past a refused flag;
                         not the figure: test.sh passes them)
  SERVER_TIMEOUT=s       seconds to wait for ready (default 60); QA_KEEP=1 keeps the folder
"""

import ast
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import unittest
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT_PY = os.path.join(ROOT, ".venv-clients/bin/python")  # tritonclient, numpy, psutil
ONNX_PY = os.path.join(ROOT, ".venv/bin/python")  # onnx, for the models
PORTS = (8000, 8001, 8002)
NO_NGINX = "needs nginx in front of the server with basic auth on port 8004"


# ---- Each test.sh, as groups of cases: (dir, file, tests, server flags, repository, env) ----

def plan():
    """Every group in the order of the test.sh files. tests None: the whole file; a list: those
    (Class.test). flags: tritonserver's, {M} for the repository. notrun: the reason none runs."""
    g = []

    def add(d, f, flags=None, repo=None, tests=None, env=None, notrun=None, tag="", timeout=900):
        g.append(dict(dir=d, file=f, flags=flags, repo=repo, tests=tests, env=env or {},
                      notrun=notrun, tag=tag, timeout=timeout))

    h = "L0_http"
    shm = "--allow-client-shm=true"
    add(h, "http_client_plugin_test.py", f"--backend-directory=B --model-repository={{M}} {shm}", "http_models")
    add(h, "http_basic_auth_test.py", notrun=NO_NGINX)
    add(h, "python_http_aio_test.py", f"--backend-directory=B --model-repository={{M}} {shm}", "http_models")
    add(h, "http_test.py", "--backend-directory=B --model-repository={M} --model-control-mode=explicit --load-model=*",
        "http_unit_models")
    add(h, "generate_endpoint_test.py",
        notrun="needs Python backend LLM models (qa/python_models/generate_models, decoupled)")
    add(h, "http_restricted_api_test.py", "--model-repository={M} --http-restricted-api=model-repository:admin-key=admin-value "
        "--http-restricted-api=inference,metadata:infer-key=infer-value", "http_models", ["RestrictedAPITest"])
    lim = "InferSizeLimitTest."
    add(h, "http_input_size_limit_test.py", "--model-repository={M}", "size_models",
        [lim + t for t in ("test_default_limit_raw_binary", "test_default_limit_json", "test_large_string_in_json",
                           "test_default_limit_compressed", "test_json_dtype_size_expansion_exceeds_limit_error",
                           "test_no_leak_on_invalid_inference_header_length")])
    add(h, "http_input_size_limit_test.py", f"--model-repository={{M}} --http-max-input-size={2**27}", "size_models",
        [lim + t for t in ("test_large_input_raw_binary", "test_large_input_json", "test_large_input_compressed")])
    add(h, "http_request_many_chunks.py", f"--model-repository={{M}} {shm} --log-verbose=1 "
        "--model-control-mode=explicit --load-model=simple", "http_models")

    v, vt = "L0_input_validation", "input_validation_test.py"
    add(v, vt, "--model-repository={M}", "iv_models", ["InputValTest"])
    add(v, vt, f"--model-repository={{M}} {shm}", "iv_shape_models",
        ["InputShapeTest.test_input_shape_validation", "InputShapeTest.test_input_string_shape_validation"])
    add(v, vt, tests=["InputShapeTest.test_wrong_input_shape_tensor_size"],
        notrun="needs TensorRT shape-tensor models (plan_*_zero_1_float32_int32)")
    add(v, vt, "--model-repository={M} --model-control-mode=explicit --log-verbose=1", "empty", ["ModelNameValidationTest"],
        timeout=300)

    s, st = "L0_shared_memory", "shared_memory_test.py"
    for client in ("http", "grpc"):
        add(s, st, "--model-repository={M} --log-verbose=1 --backend-directory=B", "shm_models",
            ["SharedMemoryTest.test_client_shm_disabled_by_default"], {"CLIENT_TYPE": client}, tag=client)
    for t in ("test_invalid_create_shm test_valid_create_set_register test_unregister_before_register "
              "test_unregister_after_register test_reregister_after_register test_unregister_after_inference "
              "test_register_after_inference test_too_big_shm test_mixed_raw_shm test_unregisterall "
              "test_infer_offset_out_of_bound test_infer_byte_size_out_of_bound test_infer_integer_overflow "
              "test_register_out_of_bound test_register_reserved_names test_register_invalid_shm_key "
              "test_python_client_leak").split():
        for client in ("http", "grpc"):
            add(s, st, f"--model-repository={{M}} --log-verbose=1 --backend-directory=B {shm}", "shm_models",
                ["SharedMemoryTest." + t], {"CLIENT_TYPE": client}, tag=client, timeout=300)
    for t in ("single_req", "multiple_req"):
        for client in ("http", "grpc"):
            add(s, st, tests=[f"TestSharedMemoryUnregister.test_unregister_shm_during_inference_{t}_{client}"],
                notrun="needs the Python backend model execute_delayed_model (a delay inside execute)")
    for client in ("http", "grpc"):
        add(s, st, tests=[f"TestSharedMemoryUnregister.test_unregister_shm_after_inference_{client}"],
            notrun="needs the Python backend model execute_delayed_model (a delay inside execute)")
    # test.sh's BACKENDS (default "python onnx libtorch plan openvino") picks the models; only
    # onnx_int32_int32_int32 can be made here, so BACKENDS=onnx, which the test reads.
    for client in ("http", "grpc"):
        add(s, st, f"--model-repository={{M}} --log-verbose=1 --backend-directory=B {shm}", "shm_large_models",
            ["SharedMemoryTest.test_large_shm_register_offset"], {"CLIENT_TYPE": client, "BACKENDS": "onnx"},
            tag=client, timeout=300)

    p = "L0_parameters"
    add(p, "parameters_test.py", notrun="needs the Python backend model `parameter` (echoes request parameters and "
        "forwarded headers) and an ensemble")
    for client in ("http", "grpc"):
        add(p, "class_count_test.py", "--model-repository={M} --log-verbose=1", "cc_models", None,
            {"CLIENT_TYPE": client}, tag=client, timeout=300)

    r = "L0_grpc"
    add(r, "python_unit_test.py", "--backend-directory=B --model-repository={M}", "grpc_test_models", ["GrpcTest"])
    add(r, "grpc_client_plugin_test.py", notrun="needs the Python backend model client_plugin_test (checks the "
        "headers forwarded into the model)")
    add(r, "grpc_basic_auth_test.py", notrun=NO_NGINX)
    add(r, "python_grpc_aio_test.py", f"--backend-directory=B --model-repository={{M}} {shm}", "grpc_models")
    add(r, "python_unit_test.py", "--model-repository={M} --grpc-restricted-protocol=model-repository:admin-key=admin-value "
        "--grpc-restricted-protocol=inference,health:infer-key=infer-value", "grpc_models", ["RestrictedProtocolTest"])
    return g


# ---- The Triton files, the models ----

def extract(triton, ref, dest):
    """qa/<dirs>, qa/common, two Python model configs and the example repository, from a git
    directory (git archive) or a plain checkout (copied)."""
    dirs = ("L0_http", "L0_input_validation", "L0_shared_memory", "L0_parameters", "L0_grpc")
    paths = [f"qa/{d}" for d in dirs] + ["qa/common", "qa/python_models/identity_fp32",
                                         "qa/python_models/string_identity", "docs/examples/model_repository"]
    git = subprocess.run(["git", "-C", triton, "rev-parse", "--verify", ref + "^{commit}"],
                         capture_output=True, text=True)
    if git.returncode == 0:
        archive = subprocess.Popen(["git", "-C", triton, "archive", ref, *paths], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", dest], stdin=archive.stdout, check=True)
        if archive.wait():
            sys.exit(f"git archive failed in {triton}")
        return git.stdout.strip()
    for p in paths:
        shutil.copytree(os.path.join(triton, p), os.path.join(dest, p))
    return "(not a git repository)"


def sed(path, old, new, count=0):
    text = open(path).read()
    open(path, "w").write(re.sub(old, new, text, count=count, flags=re.M))


def build_models(t):
    """The repositories each test.sh builds, under t/repos; returns {name: (path, [stand-ins])}."""
    data = os.path.join(t, "data")
    for gen, out in (("gen_qa_models.py", "qa_model_repository"), ("gen_qa_identity_models.py", "qa_identity_model_repository")):
        subprocess.run([ONNX_PY, gen, "--onnx", "--onnx_opset=0", f"--models_dir={data}/{out}"],
                       cwd=f"{t}/qa/common", check=True, stdout=subprocess.DEVNULL)
    examples = f"{t}/docs/examples/model_repository"
    jobs, repos = [], {}

    def repo(name, *models):
        path = os.path.join(t, "repos", name)
        os.makedirs(path, exist_ok=True)
        repos[name] = (path, [])
        for src in models:
            shutil.copytree(src, os.path.join(path, os.path.basename(src)))
        return path

    def standin(repo_name, model, kind, config_text=None):
        """Triton's non-ONNX `model` in repo_name, made ONNX: its config (given, or the one
        already copied) with backend onnxruntime, and a model computing the same."""
        path, names = repos[repo_name]
        cfg = os.path.join(path, model, "config.pbtxt")
        os.makedirs(os.path.join(path, model, "1"), exist_ok=True)
        if config_text is not None:
            open(cfg, "w").write(config_text)
        if os.path.exists(os.path.join(path, model, "1", "model.py")):
            os.remove(os.path.join(path, model, "1", "model.py"))
        sed(cfg, r'^(\s*)(backend|platform)\s*:\s*"(python|pytorch)"', r'\1backend: "onnxruntime"')
        names.append(model)
        jobs.extend([kind, cfg, os.path.join(path, model, "1", "model.onnx")])

    def dyna_string(path):  # test.sh: simple_string_dyna_sequence, a custom backend (.so) not made here
        d = os.path.join(path, "simple_string_dyna_sequence")
        shutil.copytree(os.path.join(path, "simple_dyna_sequence"), d)
        cfg = os.path.join(d, "config.pbtxt")
        sed(cfg, "simple_dyna_sequence", "simple_string_dyna_sequence")
        sed(cfg, r"^platform: .*", 'backend: "dyna_sequence"')
        sed(cfg, r"(CONTROL_SEQUENCE_CORRID\n.*?)data_type:.*", r"\1data_type: TYPE_STRING")
        os.remove(os.path.join(d, "1", "model.onnx"))

    ex = lambda *ms: [f"{examples}/{m}" for m in ms]  # noqa: E731
    ident = lambda *ms: [f"{data}/qa_identity_model_repository/{m}" for m in ms]  # noqa: E731

    # Dockerfile.QA's qa/L0_http/models and qa/L0_grpc/models, then test.sh's edits.
    for name, models in (("http_models", ex("simple", "simple_dyna_sequence", "simple_identity", "simple_sequence",
                                            "simple_string", "densenet_onnx")),
                         ("grpc_models", ex("simple", "simple_dyna_sequence", "simple_int8", "simple_identity",
                                            "simple_sequence", "simple_string", "densenet_onnx"))):
        path = repo(name, *models)
        standin(name, "simple_identity", "identity")
        standin(name, "densenet_onnx", "densenet")
        dyna_string(path)

    # L0_http: python_unit_test_models (http_test.py).
    path = repo("http_unit_models", *ident("onnx_zero_1_float32", "onnx_zero_1_object", "onnx_zero_1_float16",
                                           "onnx_zero_3_float32"))
    one = os.path.join(path, "onnx_zero_1_object_1_element")
    shutil.copytree(os.path.join(path, "onnx_zero_1_object"), one)
    sed(one + "/config.pbtxt", "onnx_zero_1_object", "onnx_zero_1_object_1_element", 1)
    sed(one + "/config.pbtxt", "-1", "1", 1)
    queue = os.path.join(path, "onnx_zero_1_float32_queue")
    shutil.copytree(os.path.join(path, "onnx_zero_1_float32"), queue)
    sed(queue + "/config.pbtxt", "onnx_zero_1_float32", "onnx_zero_1_float32_queue", 1)
    with open(queue + "/config.pbtxt", "a") as f:
        f.write("dynamic_batching { \n    max_queue_delay_microseconds: 1000000\n    preferred_batch_size: [ 8 ]\n"
                "    default_queue_policy {\n        max_queue_size: 1\n    }\n}\n")
    si = open(f"{examples}/simple_identity/config.pbtxt").read()
    standin("http_unit_models", "simple_identity", "identity", si)
    standin("http_unit_models", "simple_identity_int64", "identity",
            si.replace("TYPE_STRING", "TYPE_INT64").replace("simple_identity", "simple_identity_int64"))
    repo("size_models", *ident("onnx_zero_1_float32"))
    standin("size_models", "simple_identity", "identity", si)

    # L0_input_validation: models/ as the first server sees it, then with the later additions.
    iv = f"{t}/qa/L0_input_validation/models"
    inputs = ("input_all_optional", "input_all_required", "input_optional")
    pt = re.search(r"cat > models/pt_identity/config.pbtxt << EOL\n(.*?)\nEOL",
                   open(f"{t}/qa/L0_input_validation/test.sh").read(), re.S).group(1)
    for name in ("iv_models", "iv_shape_models"):
        repo(name)
        for m in inputs:
            standin(name, m, "constant", open(f"{iv}/{m}/config.pbtxt").read())
    standin("iv_shape_models", "pt_identity", "identity", pt)
    shutil.copytree(f"{data}/qa_model_repository/onnx_object_int32_int32", f"{t}/repos/iv_shape_models/onnx_object_int32_int32")
    repo("empty")

    repo("shm_models", *ex("simple"))
    # test.sh copies version 1 only (versions 2 and 3 swap the outputs) and the labels.
    path = repo("shm_large_models")
    src = f"{data}/qa_model_repository/onnx_int32_int32_int32"
    shutil.copytree(f"{src}/1", f"{path}/onnx_int32_int32_int32/1")
    for f in ("config.pbtxt", "output0_labels.txt"):
        shutil.copy(f"{src}/{f}", f"{path}/onnx_int32_int32_int32/")

    # L0_parameters: identity_fp32 and identity_bytes (the same Python identity, TYPE_STRING).
    repo("cc_models")
    fp32 = open(f"{t}/qa/python_models/identity_fp32/config.pbtxt").read()
    standin("cc_models", "identity_fp32", "identity", fp32)
    standin("cc_models", "identity_bytes", "identity", fp32.replace("identity_fp32", "identity_bytes")
            .replace("TYPE_FP32", "TYPE_STRING"))

    # L0_grpc: grpc_test_models (simple, string_identity with dims [ -1 ]).
    repo("grpc_test_models", *ex("simple"))
    standin("grpc_test_models", "string_identity", "identity",
            open(f"{t}/qa/python_models/string_identity/config.pbtxt").read().replace("dims: [ 1 ]", "dims: [ -1 ]"))

    subprocess.run([ONNX_PY, os.path.join(ROOT, "bench/triton_qa_models.py"), *jobs], check=True)
    return repos


# ---- Cases, servers, runs ----

def file_tests(path):
    """{Class.test: its source} for every test method of every class in a file (ast: no import)."""
    text, out = open(path).read(), {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.ClassDef):
            out.update({f"{node.name}.{f.name}": ast.get_source_segment(text, f) for f in node.body
                        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.name.startswith("test")})
    return out


def expand(tests, all_tests):
    return [t for t in all_tests if any(t == s or t.startswith(s + ".") for s in tests)] if tests else all_tests


def ports_free():
    for port in PORTS:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def start_server(corral, flags, repo_path, log_path, timeout):
    """corral serve with test.sh's flags; (process, None) once ready, or (None, why)."""
    drop = ["--backend-directory"] + [f for f in os.environ.get("QA_DROP_FLAGS", "").split(",") if f]
    args = [a.replace("{M}", repo_path) for a in flags.split() if a.split("=")[0] not in drop]
    deadline = time.time() + 30
    while not ports_free():
        if time.time() > deadline:
            return None, "ports 8000-8002 stayed busy (another server?)"
        time.sleep(0.5)
    log = open(log_path, "w")
    proc = subprocess.Popen([corral, "serve", *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            lines = [ln for ln in open(log_path).read().splitlines() if ln.strip()]
            why = next((ln for ln in lines if "error" in ln.lower()), lines[-1] if lines else "")
            return None, f"server exited with {proc.returncode} at start: {why.strip()}"
        try:
            if urllib.request.urlopen("http://127.0.0.1:8000/v2/health/ready", timeout=2).status == 200:
                return proc, None
        except Exception:
            pass
        time.sleep(0.25)
    stop_server(proc)
    return None, f"server not ready (/v2/health/ready) within {timeout}s"


def stop_server(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_tests(qa_dir, test_file, tests, env, timeout, results_path):
    """The cases under unittest in a child (this file's --unittest mode), in the QA directory as
    test.sh runs them; {test: (outcome, reason, detail)}."""
    module = test_file[:-3]
    open(results_path, "w").close()
    cmd = [CLIENT_PY, os.path.abspath(__file__), "--unittest", results_path, *[f"{module}.{t}" for t in tests]]
    child = subprocess.Popen(cmd, cwd=qa_dir, env={**os.environ, **env}, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = child.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        output, _ = child.communicate()
        timed_out = True
    got, started, fixture = {}, [], None
    for line in open(results_path):
        r = json.loads(line)
        if r["event"] == "start":
            started.append(r["test"])
        elif r["event"] == "fixture":
            fixture = fixture or r["reason"]
        else:
            got[r["test"]] = (r["outcome"], r["reason"], r["detail"])
    tail = output.decode(errors="replace")[-2000:]
    for t in tests:
        if t not in got:
            if timed_out and t in started:
                got[t] = ("fail", f"timed out after {timeout}s", tail)
            elif timed_out:
                got[t] = ("fail", f"not reached: the file timed out after {timeout}s", "")
            else:
                got[t] = ("fail", fixture or f"no result: the test process exited with {child.returncode}", tail)
    return got


def main():
    corral = os.path.abspath(os.environ.get("CORRAL", os.path.join(ROOT, "target/release/corral")))
    triton = os.environ.get("TRITON_SERVER_REPO")
    if not triton:
        sys.exit("TRITON_SERVER_REPO must name Triton's server repository (a git directory or a checkout)")
    if not os.access(corral, os.X_OK):
        sys.exit(f"no corral binary at {corral} (CORRAL=path)")
    out_path = os.environ.get("OUT", "/tmp/triton_qa.json")
    only = re.compile(os.environ.get("QA_ONLY", ""))
    standins = os.environ.get("QA_STANDINS", "1") != "0"
    server_timeout = int(os.environ.get("SERVER_TIMEOUT", "60"))

    t = tempfile.mkdtemp(prefix="triton_qa.")
    commit = extract(triton, os.environ.get("TRITON_REF", "HEAD"), t)
    repos = build_models(t)
    version = subprocess.run([corral, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"corral: {corral} ({version}); Triton server repository {triton} at {commit}; work folder {t}\n",
          flush=True)

    cases, groups = [], []
    for i, grp in enumerate(plan()):
        qa_dir = os.path.join(t, "qa", grp["dir"])
        all_tests = file_tests(os.path.join(qa_dir, grp["file"]))
        tests = expand(grp["tests"], all_tests)
        tag = f"[{grp['tag']}]" if grp["tag"] else ""
        ids = {tt: f"{grp['dir']}/{grp['file']}::{tt}{tag}" for tt in tests}
        tests = [tt for tt in tests if only.search(ids[tt])]
        if not tests:
            continue
        base = dict(dir=grp["dir"], file=grp["file"], flags=grp["flags"], env=grp["env"])
        # The stand-ins a case calls: those its own source names.
        needs = {tt: [m for m in (repos[grp["repo"]][1] if grp["repo"] else []) if f'"{m}"' in all_tests[tt]]
                 for tt in tests}
        if grp["notrun"]:
            cases += [dict(base, id=ids[tt], outcome="not runnable", reason=grp["notrun"]) for tt in tests]
            continue
        if not standins:
            cases += [dict(base, id=ids[tt], outcome="not runnable", reason=f"calls {', '.join(needs[tt])}, not ONNX "
                           "in Triton's CI (QA_STANDINS=0)") for tt in tests if needs[tt]]
            tests = [tt for tt in tests if not needs[tt]]
            if not tests:
                continue
        log = os.path.join(t, f"server.{i}.log")
        proc, why = start_server(corral, grp["flags"], repos[grp["repo"]][0], log, server_timeout)
        if proc is None:
            got = {tt: ("fail", why, open(log).read()[-2000:] if os.path.exists(log) else "") for tt in tests}
        else:
            env = dict(grp["env"], SERVER_PID=str(proc.pid))
            got = run_tests(qa_dir, grp["file"], tests, env, grp["timeout"], os.path.join(t, f"results.{i}.jsonl"))
            stop_server(proc)
        groups.append(dict(base, group=len(groups), cases=[ids[tt] for tt in tests],
                           server_log_tail=open(log).read()[-4000:] if os.path.exists(log) else ""))
        for tt in tests:
            outcome, reason, detail = got[tt]
            cases.append(dict(base, id=ids[tt], outcome=outcome, reason=reason, detail=detail,
                              standins=needs[tt], group=len(groups) - 1))
        counts = {o: sum(got[x][0] == o for x in tests) for o in ("pass", "fail", "skip")}
        flags = " ".join(a for a in grp["flags"].split() if not a.startswith(("--model-repository", "--backend-dir")))
        print(f"  {grp['dir']}/{grp['file']}{tag} [{flags or 'no flags'}]: "
              + ", ".join(f"{o} {n}" for o, n in counts.items() if n), flush=True)

    report(cases, groups, corral, version, commit, out_path)
    if os.environ.get("QA_KEEP") != "1":
        shutil.rmtree(t, ignore_errors=True)


def report(cases, groups, corral, version, commit, out_path):
    rows, totals = {}, [0, 0, 0, 0]
    for c in cases:
        row = rows.setdefault((c["dir"], c["file"]), [0, 0, 0, 0])
        k = {"pass": 0, "fail": 1, "not runnable": 2, "skip": 3}[c["outcome"]]
        row[k] += 1
        totals[k] += 1
    print("\n| directory | test file | passed | failed | not runnable |\n|---|---|---:|---:|---:|")
    for (d, f), (p, fl, nr, sk) in rows.items():
        print(f"| {d} | {f} | {p} | {fl} | {nr}{f' (+{sk} skipped)' if sk else ''} |")
    for d in dict.fromkeys(d for d, _ in rows):
        sub = [sum(r[k] for (dd, _), r in rows.items() if dd == d) for k in range(3)]
        print(f"| **{d}** | all | {sub[0]} | {sub[1]} | {sub[2]} |")
    print(f"| **total** | | **{totals[0]}** | **{totals[1]}** | **{totals[2]}** |")
    if totals[3]:
        print(f"\n{totals[3]} cases skipped themselves (unittest skip).")
    stood = [c for c in cases if c["outcome"] == "pass" and c.get("standins")]
    print(f"\nOf the passes, {len(stood)} call an ONNX stand-in for a model that is not ONNX in Triton's CI "
          f"({', '.join(sorted({m for c in stood for m in c['standins']}))}); QA_STANDINS=0 counts them not runnable.")
    print("\n### Failing cases\n")
    for c in cases:
        if c["outcome"] == "fail":
            print(f"- `{c['id']}`: {c['reason'][:400]}")
    print("\n### Not runnable\n")
    for reason in dict.fromkeys(c["reason"] for c in cases if c["outcome"] == "not runnable"):
        ids = [c["id"] for c in cases if c["outcome"] == "not runnable" and c["reason"] == reason]
        print(f"- {len(ids)} cases: {reason}: " + ", ".join(f"`{i.split('::')[-1]}`" for i in ids))
    json.dump(dict(corral=corral, corral_version=version, triton_commit=commit, totals=dict(
        passed=totals[0], failed=totals[1], not_runnable=totals[2], skipped=totals[3]), cases=cases, groups=groups),
        open(out_path, "w"), indent=1)
    print(f"\nraw results: {out_path}")


# ---- Inside the child: unittest, one JSON line per case ----

class Recorder(unittest.TestResult):
    def __init__(self, path):
        super().__init__()
        self.out = open(path, "a")
        self.bad = {}

    def emit(self, **kw):
        self.out.write(json.dumps(kw) + "\n")
        self.out.flush()

    def name(self, test):
        return test.id().split(".", 1)[1]

    def startTest(self, test):
        self.bad.pop(self.name(test), None)
        self.emit(event="start", test=self.name(test))
        print(f"--- {test.id()}", flush=True)

    def fault(self, test, err, prefix=""):
        """The first failure of a case is its reason: the exception's own words, on one line."""
        lines = traceback.format_exception_only(err[0], err[1])[-1].splitlines()
        reason = prefix + " ".join(ln.strip() for ln in lines if ln.strip())[:1000]
        detail = "".join(traceback.format_exception(*err))
        if isinstance(test, unittest.TestCase):
            self.bad.setdefault(self.name(test), (reason, detail))
        else:  # setUpClass, tearDownClass, a module fixture
            self.emit(event="fixture", test=test.description, reason=f"{test.description}: {reason}", detail=detail)

    addFailure = addError = fault

    def addSubTest(self, test, subtest, err):
        if err is not None:
            self.fault(test, err, f"{subtest._subDescription()}: ")

    def addSkip(self, test, why):
        self.bad[self.name(test)] = ("skip", why)

    def stopTest(self, test):
        reason, detail = self.bad.get(self.name(test), (None, ""))
        outcome = "pass" if reason is None else "skip" if reason == "skip" else "fail"
        self.emit(event="end", test=self.name(test), outcome=outcome,
                  reason=detail if outcome == "skip" else reason or "", detail=detail)


def child(results_path, names):
    sys.path.insert(0, os.getcwd())
    recorder = Recorder(results_path)
    for name in names:  # one at a time, so a broken import fails only its cases
        try:
            suite = unittest.defaultTestLoader.loadTestsFromName(name)
        except Exception:
            recorder.emit(event="end", test=name.split(".", 1)[1], outcome="fail",
                          reason="import failed: " + traceback.format_exc().strip().splitlines()[-1],
                          detail=traceback.format_exc())
            continue
        suite.run(recorder)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--unittest"]:
        child(sys.argv[2], sys.argv[3:])
    else:
        main()
