"""Triton's QA ensemble cases against corral serve: how many of the model repositories under
Triton's qa/L0_model_config/autofill_noplatform/ensemble/ (each must fail to load with the
error its `expected*` files name) and autofill_noplatform_success/ensemble/ (the ensemble must
load) corral handles as Triton does.

Triton's cases are read at measurement time from a Triton server repository (--triton: a
checkout, or its git directory, bare or not, read at HEAD with `git show`) into a temporary
folder; none is copied into this project.

Per case, as Triton's qa/L0_model_config/test.sh runs it:
- a case folder with config.pbtxt at its top is ONE model named after the folder, and its
  expected files are <case>/expected*; otherwise its subfolders form a whole repository and
  the expected files are <case>/expected*;
- version folders are those test.sh makes (`mkdir -p .../<model>/1`, read from test.sh at run
  time; single-model cases get none, and `simple` only version 1);
- models of a backend corral does not serve (identity, repeat: Triton's test backends) become
  Python models with the same configuration (backend "python", instance_group and everything
  else kept) and a generic 1/model.py that returns its inputs, by position, as the outputs the
  configuration names (the first input again when there are more outputs than inputs);
- `corral serve` starts on free ports (--strict-readiness=false) and runs until every model has
  a final state in POST /v2/repository/index, or 20 s; its stderr and every index `reason` are
  the log text. A failure case passes when one of its expected files, a grep basic regex, is
  found in that text (Triton greps error lines of its log for it); a success case passes when
  its ensemble model is READY.

usage: bench/triton_ensemble_qa.py [--triton DIR] [--corral PATH] [--out FILE] [--only REGEX]
  [--keep]  (stdlib only; the Python models run under CORRAL_PYTHON, default .venv/bin/python)
Each server gets a private lock folder (CORRAL_LOCK_DIR), so a corral already running on this
host never holds the cores it needs.
"""

import argparse
import difflib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIRROR = "/work/.mirror/triton-inference-server+server/repo"
FAIL_DIR = "qa/L0_model_config/autofill_noplatform/ensemble"
OK_DIR = "qa/L0_model_config/autofill_noplatform_success/ensemble"
TEST_SH = "qa/L0_model_config/test.sh"
SERVED = {"onnxruntime", "python", "openvino"}
WAIT_S = 20.0
ANSI = re.compile(r"\x1b\[[0-9;]*m")

MODEL_PY = '''\
# Generic stand-in for a Triton test backend (identity, repeat, ...): output i = input i.
import json

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.outputs = [o["name"] for o in config.get("output", [])]

    def execute(self, requests):
        responses = []
        for request in requests:
            inputs = request.inputs()
            tensors = []
            for i, name in enumerate(self.outputs):
                source = inputs[i] if i < len(inputs) else inputs[0]
                tensors.append(pb_utils.Tensor(name, source.as_numpy()))
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
'''


# ---- Reading Triton's repository (a checkout or a git directory) ----

class Triton:
    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.git = None
        if os.path.isdir(os.path.join(self.path, "qa")):
            return  # a checkout: plain files
        for cand in (self.path, os.path.join(self.path, ".git")):
            r = subprocess.run(["git", "-C", cand, "rev-parse", "--git-dir"], capture_output=True, text=True)
            if r.returncode == 0:
                self.git = cand
                return
        sys.exit(f"{path}: neither a checkout of triton-inference-server/server nor its git directory")

    def files(self, under):
        """Every file below `under`, as paths relative to the repository root."""
        if self.git:
            out = subprocess.run(["git", "-C", self.git, "ls-tree", "-r", "--name-only", "HEAD", under + "/"],
                                 capture_output=True, text=True, check=True).stdout
            return [f for f in out.splitlines() if f]
        found = []
        for d, _, fs in os.walk(os.path.join(self.path, under)):
            found += [os.path.relpath(os.path.join(d, f), self.path) for f in fs]
        return sorted(found)

    def read(self, rel):
        if self.git:
            return subprocess.run(["git", "-C", self.git, "show", f"HEAD:{rel}"],
                                  capture_output=True, check=True).stdout
        with open(os.path.join(self.path, rel), "rb") as f:
            return f.read()

    def describe(self):
        if self.git:
            head = subprocess.run(["git", "-C", self.git, "rev-parse", "HEAD"], capture_output=True,
                                  text=True).stdout.strip()
            return f"{self.path} at {head}"
        return self.path


def cases(triton, under):
    """{case: {relative path inside the case: bytes}}"""
    out = {}
    for f in triton.files(under):
        rest = f[len(under) + 1:]
        case, _, inner = rest.partition("/")
        if inner:
            out.setdefault(case, {})[inner] = triton.read(f)
    return dict(sorted(out.items()))


def version_dirs(test_sh):
    """{'<dir>/<case>/<model>': {versions}} from test.sh's `mkdir -p` lists of ensemble cases."""
    found = {}
    pat = r"(autofill_noplatform(?:_success)?/ensemble/[\w.-]+/[\w.-]+)/(\d+)\b"
    for m in re.finditer(pat, test_sh):
        found.setdefault(m.group(1), set()).add(m.group(2))
    return found


# ---- Building a case's repository ----

def is_ensemble(cfg):
    return re.search(r'^\s*platform\s*:\s*"ensemble"', cfg, re.M) is not None


def backend_of(cfg):
    m = re.search(r'^\s*backend\s*:\s*"([^"]*)"', cfg, re.M)
    return m.group(1) if m else None


def to_python(cfg):
    return re.sub(r'^(\s*backend\s*:\s*)"[^"]*"', r'\1"python"', cfg, count=1, flags=re.M)


def build(case, files, kind, vdirs, repo):
    """Writes the case's repository; returns (expected regexes, model names, notes)."""
    single = "config.pbtxt" in files
    expected = [v.decode().strip() for k, v in sorted(files.items())
                if "/" not in k and k.startswith("expected")]
    models = {}
    if single:
        models[case] = {"config.pbtxt": files["config.pbtxt"]}
    else:
        for k, v in files.items():
            if "/" in k:
                model, _, inner = k.partition("/")
                models.setdefault(model, {})[inner] = v
    notes = []
    for model, mfiles in sorted(models.items()):
        mdir = os.path.join(repo, model)
        for inner, data in mfiles.items():
            if inner.startswith("expected"):
                continue  # a success case's expected configuration, not part of the model
            p = os.path.join(mdir, inner)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(data)
        versions = set() if single else vdirs.get(f"{kind}/{case}/{model}", set())
        cfg_path = os.path.join(mdir, "config.pbtxt")
        cfg = open(cfg_path).read() if os.path.exists(cfg_path) else ""
        backend = backend_of(cfg)
        if cfg and not is_ensemble(cfg) and backend not in SERVED:
            with open(cfg_path, "w") as f:
                f.write(to_python(cfg) if backend else cfg + '\nbackend: "python"\n')
            versions = versions or {"1"}
            notes.append(f"{model}: backend {backend!r} -> python stand-in")
            for v in versions:
                os.makedirs(os.path.join(mdir, v), exist_ok=True)
                with open(os.path.join(mdir, v, "model.py"), "w") as f:
                    f.write(MODEL_PY)
        for v in versions:
            os.makedirs(os.path.join(mdir, v), exist_ok=True)
    return expected, sorted(models), notes


# ---- Running corral serve ----

def children(pid):
    """Every descendant of pid (from /proc)."""
    kids, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                c = [int(x) for x in f.read().split()]
        except OSError:
            c = []
        kids += c
        todo += c
    return kids


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def stop(proc):
    """SIGTERM, then SIGKILL, the server and every process it started (the Python stubs)."""
    kids = children(proc.pid)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            kids = sorted(set(kids + children(proc.pid)))
            proc.kill()
            proc.wait()
    deadline = time.time() + 3
    while time.time() < deadline and any(alive(k) for k in kids):
        time.sleep(0.1)
    left = [k for k in kids if alive(k)]
    for k in left:
        try:
            os.kill(k, signal.SIGKILL)
        except OSError:
            pass
    return left


def post_index(port):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/repository/index", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=3) as r:
        return json.loads(r.read())


def serve(corral, repo, n_models, env, logfile):
    """Runs corral serve on repo; returns (log text, index list or None, stub processes left)."""
    cmd = [corral, "serve", "--model-repository", repo, "--http-port", "0", "--grpc-port", "0",
           "--metrics-port", "0", "--strict-readiness=false"]
    with open(logfile, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    port, index, deadline = None, None, time.time() + WAIT_S
    try:
        while time.time() < deadline:
            if port is None:
                m = re.search(r"HTTP [\w.\[\]:]*:(\d+)", open(logfile, errors="replace").read())
                port = m and int(m.group(1))
            if port:
                try:
                    index = post_index(port)
                    names = {e.get("name") for e in index}
                    if len(names) >= n_models and all(e.get("state") in ("READY", "UNAVAILABLE") for e in index):
                        break
                except (OSError, ValueError):
                    pass
            if proc.poll() is not None:
                break
            time.sleep(0.25)
    finally:
        left = stop(proc)
    text = ANSI.sub("", open(logfile, errors="replace").read())
    if proc.returncode not in (None, 0, -signal.SIGTERM, -signal.SIGKILL):
        text += f"\n(corral exited with status {proc.returncode})"
    return text, index, left


# ---- Judging ----

def bre_to_re(bre):
    """grep's basic regex to Python's: `\\[` `\\]` `.` `*` `^` `$` mean the same; `+ ? ( ) { } |`
    are literal in a basic regex, and `\\( \\) \\{ \\} \\|` are its groups."""
    out, i = [], 0
    while i < len(bre):
        c = bre[i]
        if c == "\\" and i + 1 < len(bre):
            n = bre[i + 1]
            out.append(n if n in "(){}|+?" else "\\" + n)
            i += 2
            continue
        out.append("\\" + c if c in "+?(){}|" else c)
        i += 1
    return "".join(out)


def lines_of(text, index):
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for e in index or []:
        if e.get("reason"):
            lines += [f"{e.get('name')}: {ln}" for ln in str(e["reason"]).splitlines()]
    return lines


def closest(expected, index, lines):
    """The corral reason most like the first expected text (index reasons first, then log lines)."""
    reasons = [f"{e.get('name')}: {e['reason']}" for e in index or [] if e.get("reason")]
    pool = reasons or [ln for ln in lines if re.search(r"error|warn|fail", ln, re.I)] or lines
    if not pool:
        return "(nothing)"
    target = expected[0] if expected else ""
    return max(pool, key=lambda s: difflib.SequenceMatcher(None, target, s).ratio())


def short(s, n=300):
    s = " ".join(s.split())
    return s if len(s) <= n else s[:n - 3] + "..."


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--triton", default=MIRROR, help="triton-inference-server/server checkout or git dir")
    ap.add_argument("--corral", default=os.path.join(ROOT, "target/debug/corral"))
    ap.add_argument("--out", help="markdown report")
    ap.add_argument("--only", help="run only cases whose name matches this regex")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    a = ap.parse_args()
    corral = os.path.abspath(a.corral)
    if not os.access(corral, os.X_OK):
        sys.exit(f"{corral}: no corral binary (build it, or pass --corral)")
    triton = Triton(a.triton)
    vdirs = version_dirs(triton.read(TEST_SH).decode())

    work = tempfile.mkdtemp(prefix="triton-ensemble-qa-")
    env = dict(os.environ)
    env.setdefault("CORRAL_PYTHON", os.path.join(ROOT, ".venv/bin/python"))
    env["CORRAL_LOCK_DIR"] = os.path.join(work, "locks")
    env["NO_COLOR"] = "1"
    env.pop("CORRAL_DEVICE", None)  # cpu: the Python stand-ins need real CPUs
    # ONNX Runtime when it is there (no case has an ONNX model; without it corral would refuse
    # CORRAL_ONNX_ENGINE=onnxruntime at start, which is not what is measured here).
    ort = env.get("ORT_DYLIB_PATH") or next(
        (os.path.join(d, f) for d, _, fs in os.walk(os.path.join(ROOT, ".venv/lib"))
         for f in fs if f.startswith("libonnxruntime.so")), None)
    if ort:
        env["ORT_DYLIB_PATH"] = ort
        env.setdefault("CORRAL_ONNX_ENGINE", "onnxruntime")
    else:
        env.pop("CORRAL_ONNX_ENGINE", None)

    plan = [("fail", FAIL_DIR, c, f) for c, f in cases(triton, FAIL_DIR).items()]
    plan += [("success", OK_DIR, c, f) for c, f in cases(triton, OK_DIR).items()]
    if a.only:
        plan = [p for p in plan if re.search(a.only, p[2])]

    results, t0 = [], time.time()
    for kind, under, case, files in plan:
        label = ("" if kind == "fail" else "success/") + case
        repo = os.path.join(work, kind, case)
        os.makedirs(repo)
        expected, models, notes = build(case, files, under.split("qa/L0_model_config/")[1], vdirs, repo)
        text, index, left = serve(corral, repo, len(models), env, os.path.join(work, f"{kind}-{case}.log"))
        lines = lines_of(text, index)
        r = dict(kind=kind, case=label, notes=notes, index=index, stubs_left=left)
        if kind == "fail":
            pats = [bre_to_re(e) for e in expected]
            hit = next((e for e, p in zip(expected, pats) if any(re.search(p, ln) for ln in lines)), None)
            r.update(ok=hit is not None, expected=expected, matched=hit,
                     said=None if hit else closest(expected, index, lines))
        else:
            ens = [m for m in models if m == case] or [
                m for m in models if is_ensemble(files.get(f"{m}/config.pbtxt", b"").decode())]
            state = {e.get("name"): e for e in index or []}
            bad = [m for m in ens if state.get(m, {}).get("state") != "READY"]
            r.update(ok=bool(ens) and not bad, expected=[f"{', '.join(ens)} READY"], matched=None,
                     said=None if ens and not bad else "; ".join(
                         f"{m}: {state.get(m, {}).get('state', 'absent')} {state.get(m, {}).get('reason', '')}".strip()
                         for m in bad or models))
        if left:
            r["notes"].append(f"{len(left)} child process(es) outlived SIGTERM and were killed: {left}")
        results.append(r)
        line = f"{'PASS' if r['ok'] else 'FAIL'}  {label}"
        if not r["ok"]:
            line += f"\n      expected: {short(' | '.join(r['expected']))}\n      corral:   {short(r['said'] or '')}"
        print(line, flush=True)

    passed = sum(r["ok"] for r in results)
    n_fail = [r for r in results if r["kind"] == "fail"]
    n_ok = [r for r in results if r["kind"] == "success"]
    summary = (f"passed {passed} of {len(results)} "
               f"(error cases {sum(r['ok'] for r in n_fail)} of {len(n_fail)}, "
               f"success cases {sum(r['ok'] for r in n_ok)} of {len(n_ok)}) in {time.time() - t0:.0f} s")
    print(summary)

    if a.out:
        ver = subprocess.run([corral, "--version"], capture_output=True, text=True).stdout.strip()
        md = ["# Triton QA ensemble cases against corral serve", "",
              f"- Triton: {triton.describe()} ({FAIL_DIR}, {OK_DIR}), read at run time",
              f"- corral: {corral} {ver}".rstrip(),
              f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", "", f"**{summary}**", "",
              "| result | case | expected | corral said |", "|---|---|---|---|"]
        cell = lambda s: short(s or "", 400).replace("|", "\\|")
        for r in results:
            md.append(f"| {'PASS' if r['ok'] else 'FAIL'} | {r['case']} | {cell(r['matched'] or ' / '.join(r['expected']))} "
                      f"| {cell(r['said'] if not r['ok'] else '')} |")
        notes = [(r["case"], n) for r in results for n in r["notes"]]
        if notes:
            md += ["", "Stand-ins and notes:", ""] + [f"- {c}: {n}" for c, n in notes]
        with open(a.out, "w") as f:
            f.write("\n".join(md) + "\n")
    if a.keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
