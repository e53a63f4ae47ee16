"""Measures how many of Triton's python_backend `examples/` (add_sub, auto_complete, BLS,
decoupled, BLS decoupled, custom metrics; pytorch, jax, instance_kind and preprocessing are
listed too) run unchanged against `corral serve`: the pass count.

The examples are read at measurement time from a python_backend checkout or bare git
directory (`--python-backend`, read with `git show` when it is a git directory) and are never
copied into this project: each example's model repository is built in a temporary folder
exactly as its README's `cp`/`mv` lines say (model.py and config.pbtxt unchanged; each README
line used is checked to be in that README), one `corral serve` is started on it (ports 0, a
private CORRAL_LOCK_DIR, CORRAL_PYTHON=.venv/bin/python), and the README's client script runs
unchanged with .venv-clients/bin/python (tritonclient). The clients hardcode
localhost:8000/8001/8002 and take no URL flag, so each runs under a small wrapper that
rewrites only those URL strings in the client's source, in memory, to the server's real
ports before exec'ing it (the client's file is not changed). A client passes when it exits 0
and prints its `PASS: ...` line. An example whose models need a framework missing from
CORRAL_PYTHON (torch, jax) or a backend corral cannot run (TensorRT) is counted as not
applicable; where the rest of its repository can still load (BLS) it is run anyway for
information, not counted. The server is always stopped (SIGTERM, then SIGKILL) and no Python
stub of it may remain.

usage: python_backend_examples.py [--python-backend DIR] [--corral PATH] [--out FILE]
                                  [--only NAME ...]   (run by bench/python_backend_examples.sh)
Python 3, standard library only.
"""

import argparse
import collections
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIRROR = "/work/.mirror/triton-inference-server+python_backend/repo"
SERVER_PYTHON = os.path.join(ROOT, ".venv/bin/python")
CLIENT_PYTHON = os.path.join(ROOT, ".venv-clients/bin/python")
READY_S = 60
CLIENT_S = 60
STOP_S = 10

# Each run: one model repository (built from README lines, verified against that README) and
# the client scripts the README runs against it. `needs`: modules CORRAL_PYTHON must import
# for the models to load (else not applicable); `client_needs`: the same for the client's
# interpreter; `na`: a fixed reason it cannot apply to corral at all.
RUNS = [
    dict(name="add_sub", readme="README.md",
         lines=["cp examples/add_sub/model.py models/add_sub/1/model.py",
                "cp examples/add_sub/config.pbtxt models/add_sub/config.pbtxt"],
         clients=["examples/add_sub/client.py"]),
    dict(name="auto_complete", readme="examples/auto_complete/README.md",
         lines=["cp examples/auto_complete/nobatch_model.py models/nobatch_auto_complete/1/model.py",
                "cp examples/auto_complete/batch_model.py models/batch_auto_complete/1/model.py"],
         clients=["examples/auto_complete/client.py"]),
    dict(name="bls_sync", readme="examples/bls/README.md",
         lines=["cp examples/add_sub/model.py models/add_sub/1/",
                "cp examples/add_sub/config.pbtxt models/add_sub/config.pbtxt",
                "cp examples/bls/sync_model.py models/bls_sync/1/model.py",
                "cp examples/bls/sync_config.pbtxt models/bls_sync/config.pbtxt",
                "cp examples/pytorch/model.py models/pytorch/1/",
                "cp examples/pytorch/config.pbtxt models/pytorch/"],
         clients=["examples/bls/sync_client.py"], needs={"pytorch": ["torch"]}),
    dict(name="bls_async", readme="examples/bls/README.md",
         lines=["cp examples/add_sub/model.py models/add_sub/1/",
                "cp examples/add_sub/config.pbtxt models/add_sub/",
                "cp examples/bls/async_model.py models/bls_async/1/model.py",
                "cp examples/bls/async_config.pbtxt models/bls_async/config.pbtxt",
                "cp examples/pytorch/model.py models/pytorch/1/",
                "cp examples/pytorch/config.pbtxt models/pytorch/"],
         clients=["examples/bls/async_client.py"], needs={"pytorch": ["torch"]}),
    dict(name="decoupled", readme="examples/decoupled/README.md",
         lines=["cp examples/decoupled/repeat_model.py models/repeat_int32/1/model.py",
                "cp examples/decoupled/repeat_config.pbtxt models/repeat_int32/config.pbtxt",
                "cp examples/decoupled/square_model.py models/square_int32/1/model.py",
                "cp examples/decoupled/square_config.pbtxt models/square_int32/config.pbtxt"],
         clients=["examples/decoupled/repeat_client.py", "examples/decoupled/square_client.py"]),
    dict(name="bls_decoupled_sync", readme="examples/bls_decoupled/README.md",
         lines=["cp examples/bls_decoupled/sync_model.py models/bls_decoupled_sync/1/model.py",
                "cp examples/bls_decoupled/sync_config.pbtxt models/bls_decoupled_sync/config.pbtxt",
                "cp examples/decoupled/square_model.py models/square_int32/1/model.py",
                "cp examples/decoupled/square_config.pbtxt models/square_int32/config.pbtxt"],
         clients=["examples/bls_decoupled/sync_client.py"]),
    dict(name="bls_decoupled_async", readme="examples/bls_decoupled/README.md",
         lines=["cp examples/bls_decoupled/async_model.py models/bls_decoupled_async/1/model.py",
                "cp examples/bls_decoupled/async_config.pbtxt models/bls_decoupled_async/config.pbtxt",
                "cp examples/decoupled/square_model.py models/square_int32/1/model.py",
                "cp examples/decoupled/square_config.pbtxt models/square_int32/config.pbtxt"],
         clients=["examples/bls_decoupled/async_client.py"]),
    dict(name="custom_metrics", readme="examples/custom_metrics/README.md",
         lines=["cp examples/custom_metrics/model.py models/custom_metrics/1/model.py",
                "cp examples/custom_metrics/config.pbtxt models/custom_metrics/config.pbtxt"],
         clients=["examples/custom_metrics/client.py"]),
    # The top-level README's "AddSubNet in PyTorch" names only the folder; its layout is the
    # one the BLS README gives for the same files.
    dict(name="pytorch", readme="examples/bls/README.md",
         lines=["cp examples/pytorch/model.py models/pytorch/1/",
                "cp examples/pytorch/config.pbtxt models/pytorch/"],
         clients=["examples/pytorch/client.py"], needs={"pytorch": ["torch"]}),
    dict(name="jax", readme="examples/jax/README.md",
         lines=["mv model.py models/jax/1", "mv config.pbtxt models/jax"],
         clients=["examples/jax/client.py"], needs={"jax": ["jax"]}),
    dict(name="instance_kind", readme="examples/instance_kind/README.md",
         lines=["mv model.py models/resnet50/1/", "mv config.pbtxt models/resnet50/"],
         clients=["examples/instance_kind/client.py"],
         needs={"resnet50": ["torch", "torchvision"]}, client_needs=["torch", "validators"],
         note="the model downloads torchvision's ResNet-50 weights at initialize"),
    dict(name="preprocessing", readme="examples/preprocessing/README.md",
         lines=["cp model.py model_repository/preprocess/1"],
         clients=["examples/preprocessing/client.py"],
         na="its repository is an ensemble around `resnet50_trt` (platform tensorrt_plan, an engine "
            "built with trtexec on an NVIDIA GPU) and its preprocess model needs torchvision: "
            "corral runs no TensorRT backend"),
]

# Run as `<client python> WRAPPER CLIENT HTTP GRPC METRICS [args]`: the client's source with
# only its hardcoded URL strings rewritten, executed as __main__ under the client's own path.
WRAPPER = r'''
import os, sys
path, http, grpc, metrics = sys.argv[1:5]
with open(path) as f:
    source = f.read()
for old, new in (("localhost:8000", "127.0.0.1:" + http), ("localhost:8001", "127.0.0.1:" + grpc),
                 ("localhost:8002", "127.0.0.1:" + metrics)):
    if old in source:
        print(f"[wrapper] {os.path.basename(path)}: {old} -> {new} ({source.count(old)}x, in memory)",
              file=sys.stderr)
        source = source.replace(old, new)
sys.argv = [path] + sys.argv[5:]
sys.path.insert(0, os.path.dirname(path))
exec(compile(source, path, "exec"), {"__name__": "__main__", "__file__": path, "__builtins__": __builtins__})
'''


class Source:
    """The python_backend files: a git directory (read with `git show HEAD:path`) or a tree."""

    def __init__(self, path):
        self.path = path
        self.git = subprocess.run(["git", "-C", path, "rev-parse", "--git-dir"], capture_output=True).returncode == 0 \
            and not os.path.isdir(os.path.join(path, "examples"))
        try:
            self.commit = subprocess.run(["git", "-C", path, "log", "-1", "--format=%H (%cd)", "HEAD"],
                                         capture_output=True, text=True, check=True).stdout.strip()
        except subprocess.CalledProcessError:
            self.commit = "not a git checkout"

    def read(self, rel):
        if self.git:
            out = subprocess.run(["git", "-C", self.path, "show", f"HEAD:{rel}"], capture_output=True)
            if out.returncode != 0:
                raise FileNotFoundError(f"{rel}: {out.stderr.decode().strip()}")
            return out.stdout
        with open(os.path.join(self.path, rel), "rb") as f:
            return f.read()


def copies(run):
    """The (source, destination) of each README line; sources the README names relative to
    its example folder (`mv model.py ...`) are taken from that folder."""
    folder = os.path.dirname(run["readme"])
    result = []
    for line in run["lines"]:
        _, src, dst = line.split()
        if not src.startswith("examples/"):
            src = f"{folder}/{src}"
        if dst.endswith("/") or "." not in os.path.basename(dst):
            dst = os.path.join(dst, os.path.basename(src))
        result.append((src, dst))
    return result


def imports(python, modules):
    missing = []
    for module in modules:
        if subprocess.run([python, "-c", f"import {module}"], capture_output=True).returncode != 0:
            missing.append(module)
    return missing


def http(method, url, body=None, timeout=2):
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def descendants(pid):
    children = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children[ppid].append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def holding(lock_dir):
    """Live processes (not this one) started with our private CORRAL_LOCK_DIR: the server's
    stubs, the only processes given that environment."""
    marker = f"CORRAL_LOCK_DIR={lock_dir}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if marker in f.read().split(b"\0") and alive(int(entry)):
                        with open(f"/proc/{entry}/cmdline", "rb") as c:
                            found.append((int(entry), c.read().replace(b"\0", b" ").decode(errors="replace").strip()))
            except OSError:
                pass
    return found


class Server:
    def __init__(self, corral, repo, lock_dir):
        env = dict(os.environ, CORRAL_PYTHON=SERVER_PYTHON, CORRAL_LOCK_DIR=lock_dir)
        self.lock_dir = lock_dir
        self.lines = []
        self.first = threading.Event()
        self.proc = subprocess.Popen(
            [corral, "serve", "--model-repository", repo, "--http-port", "0", "--grpc-port", "0",
             "--metrics-port", "0"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.ports = None
        self.stubs_seen = set()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            self.first.set()
        self.first.set()

    def tail(self, n=25):
        return "\n".join(self.lines[-n:])

    def wait_ports(self, seconds=60):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for line in self.lines[:5]:
                m = re.search(r"HTTP [^ ]+:(\d+) gRPC [^ ]+:(\d+) metrics [^ ]+:(\d+)", line)
                if m:
                    self.ports = tuple(m.groups())
                    return True
            if self.proc.poll() is not None and not self.reader.is_alive():
                return False
            time.sleep(0.05)
        return False

    def note_stubs(self):
        self.stubs_seen.update(descendants(self.proc.pid))

    def wait_ready(self, models=None, seconds=READY_S):
        """Until /v2/health/ready answers 200 (or, with `models`, each of them is ready);
        gives up early once the repository index shows no model still loading and some
        unavailable. Returns (ready, what it saw)."""
        base = f"http://127.0.0.1:{self.ports[0]}"
        deadline = time.monotonic() + seconds
        settled_since = None
        index = ""
        while time.monotonic() < deadline:
            self.note_stubs()
            if self.proc.poll() is not None:
                return False, f"server exited with {self.proc.returncode}"
            try:
                if models is None:
                    ok = http("GET", f"{base}/v2/health/ready")[0] == 200
                else:
                    ok = all(http("GET", f"{base}/v2/models/{m}/ready")[0] == 200 for m in models)
                if ok:
                    return True, "ready"
                status, index = http("POST", f"{base}/v2/repository/index", b"{}")
                states = json.loads(index) if status == 200 else None
                if states and all(s.get("state") in ("READY", "UNAVAILABLE") for s in states) \
                        and any(s.get("state") == "UNAVAILABLE" for s in states):
                    settled_since = settled_since or time.monotonic()
                    if time.monotonic() - settled_since > 3:
                        return False, f"not ready; repository index: {index}"
                else:
                    settled_since = None
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        return False, f"not ready in {seconds} s; repository index: {index}"

    def stop(self):
        """SIGTERM, SIGKILL after STOP_S; then the stubs it started must be gone. Returns notes."""
        notes = []
        if self.proc.poll() is None:
            self.note_stubs()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_S)
            except subprocess.TimeoutExpired:
                notes.append(f"server ignored SIGTERM for {STOP_S} s: SIGKILL")
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)
        deadline = time.monotonic() + 5
        left = []
        while time.monotonic() < deadline:
            left = sorted(set(p for p in self.stubs_seen if alive(p)) | set(p for p, _ in holding(self.lock_dir)))
            if not left:
                break
            time.sleep(0.1)
        if left:
            for pid in left:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as c:
                        cmd = c.read().replace(b"\0", b" ").decode(errors="replace").strip()
                except OSError:
                    cmd = "?"
                notes.append(f"stub left running 5 s after the server stopped: pid {pid} `{cmd}` (killed)")
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        return notes


def run_client(work, client_rel, client_src, ports):
    path = os.path.join(work, client_rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(client_src)
    wrapper = os.path.join(work, "url_wrapper.py")
    with open(wrapper, "w") as f:
        f.write(WRAPPER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    start = time.monotonic()
    try:
        out = subprocess.run([CLIENT_PYTHON, wrapper, path, *ports], cwd=os.path.dirname(path), env=env,
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                             timeout=CLIENT_S)
        rc, text = out.returncode, (out.stdout + ("\n" + out.stderr if out.stderr.strip() else ""))
    except subprocess.TimeoutExpired as e:
        rc = "timeout"
        text = ((e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")) + \
               ((e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or ""))
        text += f"\n[client killed after {CLIENT_S} s]"
    return rc, text, time.monotonic() - start


def tail(text, n=20):
    lines = [l for l in text.splitlines() if l.strip()]
    return "\n".join(lines[-n:])


def one_run(run, source, corral, results):
    name = run["name"]
    cases = [(name, c) for c in run["clients"]]

    def record(client, result, detail, **more):
        row = dict(run=name, client=client, result=result, detail=detail, **more)
        results.append(row)
        print(f"{name:22} {os.path.basename(client):18} {result:6} {detail.splitlines()[0] if detail else ''}",
              flush=True)

    # Does its README still say what we build from?
    try:
        readme = source.read(run["readme"]).decode(errors="replace")
    except FileNotFoundError as e:
        for _, c in cases:
            record(c, "FAIL", f"cannot read the README: {e}")
        return
    missing_lines = [l for l in run["lines"] if l not in readme]

    if run.get("na"):
        for _, c in cases:
            record(c, "n/a", run["na"])
        return
    blocked = {m: imports(SERVER_PYTHON, mods) for m, mods in run.get("needs", {}).items()}
    blocked = {m: mods for m, mods in blocked.items() if mods}
    client_missing = imports(CLIENT_PYTHON, run.get("client_needs", []))
    na_reason = None
    if blocked or client_missing:
        parts = [f"model `{m}` needs {', '.join(mods)}, not installed in CORRAL_PYTHON ({SERVER_PYTHON})"
                 for m, mods in blocked.items()]
        if client_missing:
            parts.append(f"its client needs {', '.join(client_missing)}, not installed in {CLIENT_PYTHON}")
        na_reason = "; ".join(parts)
        if run.get("note"):
            na_reason += f"; {run['note']}"
        loadable = [dst.split("/")[1] for _, dst in copies(run) if dst.split("/")[1] not in blocked]
        if not loadable or client_missing:
            for _, c in cases:
                record(c, "n/a", na_reason)
            return
    # Build the repository in a temporary folder (outside the project).
    work = tempfile.mkdtemp(prefix=f"corral-pbex-{name}-")
    lock_dir = os.path.join(work, "locks")
    os.makedirs(lock_dir)
    layout = []
    server = None
    try:
        for src, dst in copies(run):
            target = os.path.join(work, dst)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(source.read(src))
            layout.append(f"{src} -> {dst}")
        repo_dir = os.path.join(work, copies(run)[0][1].split("/")[0])
        for d in sorted(os.listdir(repo_dir)):  # the README's `mkdir -p models/<m>/1`
            os.makedirs(os.path.join(repo_dir, d, "1"), exist_ok=True)
        server = Server(corral, repo_dir, lock_dir)
        if not server.wait_ports():
            for _, c in cases:
                record(c, "FAIL", "corral serve printed no ports", server_tail=server.tail(), layout=layout,
                       informational=bool(na_reason), na=na_reason)
            return
        ready, seen = server.wait_ready(models=sorted({d.split("/")[1] for _, d in copies(run)} - set(blocked))
                                        if na_reason else None)
        for _, client in cases:
            rc, text, secs = run_client(work, client, source.read(client), server.ports)
            server.note_stubs()
            m = re.search(r'print\("(PASS: [^"]+)"\)', source.read(client).decode(errors="replace"))
            want = m.group(1) if m else None
            passed = rc == 0 and (want is None or want in text) and ready
            why = []
            if not ready:
                why.append(f"server not ready: {seen}")
            if rc != 0:
                why.append(f"client exit {rc}")
            elif want and want not in text:
                why.append(f"no `{want}` line")
            detail = f"{secs:.1f} s" if passed else "; ".join(why)
            row = dict(client_out=text, layout=layout, server_tail=None if passed else server.tail(),
                       ready=seen, missing_lines=missing_lines)
            if na_reason:
                row.update(informational=("PASS" if passed else "FAIL") + f" ({detail})", na=na_reason)
                record(client, "n/a", f"{na_reason} [informational run: {'PASS' if passed else 'FAIL'}]", **row)
            else:
                record(client, "PASS" if passed else "FAIL", detail, **row)
    finally:
        if server is not None:
            notes = server.stop()
            if notes:
                for row in results:
                    if row["run"] == name:
                        row.setdefault("stop_notes", []).extend(notes)
                for n in notes:
                    print(f"{name:22} {'':18} {'':6} {n}", flush=True)
            for row in results:
                if row["run"] == name and row.get("server_tail") is not None:
                    row["server_tail"] = server.tail(40)
        shutil.rmtree(work, ignore_errors=True)


def version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python-backend", default=MIRROR, help="python_backend checkout or git dir")
    parser.add_argument("--corral", default=os.path.join(ROOT, "target/debug/corral"))
    parser.add_argument("--out", help="write a markdown report here")
    parser.add_argument("--only", nargs="*", help="run only these runs (by name)")
    args = parser.parse_args()
    corral = os.path.abspath(args.corral)
    source = Source(args.python_backend)
    started = time.monotonic()
    results = []
    runs = [r for r in RUNS if not args.only or r["name"] in args.only]
    print(f"python_backend {source.commit} from {args.python_backend}; corral {corral}", flush=True)
    for run in runs:
        one_run(run, source, corral, results)
    counted = [r for r in results if r["result"] != "n/a"]
    passed = sum(r["result"] == "PASS" for r in counted)
    na = len(results) - len(counted)
    summary = f"passed {passed} of {len(results)} ({na} not applicable)"
    print(summary, flush=True)
    if args.out:
        write_report(args, source, corral, results, summary, time.monotonic() - started)
    return 0


def write_report(args, source, corral, results, summary, seconds):
    tc = version([CLIENT_PYTHON, "-c", "import importlib.metadata as m; print(m.version('tritonclient'))"])
    out = [
        "# Triton python_backend examples against `corral serve`",
        "",
        f"**{summary}** (client scripts; {seconds:.0f} s in all)",
        "",
        f"- python_backend: `{args.python_backend}` at {source.commit}, read at measurement time "
        f"({'git show HEAD:' if source.git else 'files'}), built into temporary repositories, never copied into the project",
        f"- corral: `{corral}` ({version([corral, '--version'])}), `serve --http-port 0 --grpc-port 0 --metrics-port 0`, "
        f"private CORRAL_LOCK_DIR, CORRAL_PYTHON=`{SERVER_PYTHON}` ({version([SERVER_PYTHON, '--version'])})",
        f"- clients: `{CLIENT_PYTHON}` (tritonclient {tc}), run unchanged under a wrapper that rewrites only the "
        "hardcoded `localhost:8000/8001/8002` strings to the server's `127.0.0.1:<port>` in memory (none takes a URL flag)",
        f"- pass: the client exits 0 and prints its `PASS: ...` line; the server's /v2/health/ready answered 200 first "
        f"(up to {READY_S} s); not applicable: the example needs a framework or backend corral cannot provide here",
        f"- {datetime.datetime.now().isoformat(timespec='seconds')}, {os.cpu_count()} CPUs",
        "",
        "| example | client | result | detail |",
        "|---|---|---|---|",
    ]
    for r in results:
        detail = (r["detail"] or "").replace("|", "\\|").replace("\n", " ")
        out.append(f"| {r['run']} | `{os.path.basename(r['client'])}` | {r['result']} | {detail} |")
    for r in results:
        if r["result"] == "PASS" and not r.get("stop_notes") and not r.get("missing_lines"):
            continue
        if r["result"] == "n/a" and "client_out" not in r:
            continue
        out += ["", f"## {r['run']} / {os.path.basename(r['client'])}: {r['result']}"
                + (f" (informational run: {r['informational']})" if r.get("informational") else ""), ""]
        if r.get("na"):
            out.append(f"Not applicable: {r['na']}.")
            out.append("")
        if r.get("layout"):
            out.append("Repository: " + "; ".join(f"`{l}`" for l in r["layout"]))
            out.append("")
        if r.get("missing_lines"):
            out.append("README lines no longer found: " + "; ".join(f"`{l}`" for l in r["missing_lines"]))
            out.append("")
        if r.get("ready"):
            out.append(f"Readiness: {r['ready']}")
            out.append("")
        for n in r.get("stop_notes", []):
            out.append(f"- {n}")
        if r.get("client_out") is not None:
            out += ["Client output (tail):", "```", tail(r["client_out"], 25), "```"]
        if r.get("server_tail"):
            out += ["Server stderr (tail):", "```", r["server_tail"], "```"]
    with open(args.out, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"report: {args.out}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
