"""Chaos figures for the README, in one run:

1. Racing acquisitions: ACQUIRES `corral reserve` processes on sim:16 (1-4 cores each, up to
   24 alive at once, a third SIGKILLed at a random moment), while a checker compares, every
   few milliseconds, the kernel's /proc/locks, `corral ls --json`, and the cores each live
   process said it holds. A core owned twice is counted as a violation.
2. `corral serve` under REQUESTS calls from 16 client threads (tritonclient over HTTP) while
   one model is unloaded and loaded, and another reloaded, every second: every call must be
   answered 200, or 404 for the unloaded model; a dropped connection or any other answer is
   counted as lost.
3. Lock folders that are read-only, full, or another user's: the error must name the folder
   and say what to do.

    ./bench/chaos.sh [ACQUIRES] [REQUESTS]
"""

import collections
import json
import os
import pathlib
import random
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ready import wait_ready  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORRAL = ROOT / "target/release/corral"
ACQUIRES = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
REQUESTS = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000


def env_with(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CORRAL_", "NEURON"))}
    env.update(extra)
    return env


# --- 1. racing acquisitions ---------------------------------------------------------------

def flock_holders(inodes: dict) -> dict:
    """core -> set of pids holding its lock file, from /proc/locks."""
    held = collections.defaultdict(set)
    with open("/proc/locks") as locks:
        for line in locks:
            fields = line.split()
            if len(fields) < 6 or fields[1] != "FLOCK":
                continue
            inode = int(fields[5].split(":")[2])
            if inode in inodes:
                held[inodes[inode]].add(int(fields[4]))
    return held


def racing_acquisitions():
    lock_dir = tempfile.mkdtemp(prefix="corral-chaos-")
    env = env_with(CORRAL_LOCK_DIR=lock_dir, CORRAL_DEVICE="sim:16")
    subprocess.run([CORRAL, "ls", "--json"], env=env, check=True, capture_output=True)
    for core in range(16):  # create the lock files, so that their inodes are known
        pathlib.Path(lock_dir, "sim-16", f"nc{core}.lock").touch()
    inodes = {os.stat(pathlib.Path(lock_dir, "sim-16", f"nc{c}.lock")).st_ino: c for c in range(16)}
    live = {}  # pid -> (Popen, cores or None)
    lock = threading.Lock()
    stats = collections.Counter()
    violations = []
    done = threading.Event()

    def reader(child):
        line = child.stdout.readline()
        if line:
            cores = json.loads(line)["cores"]
            with lock:
                if child.pid in live:
                    live[child.pid] = (child, cores)
                stats["granted"] += 1

    def checker():
        while not done.is_set():
            with lock:
                claimed = {pid: cores for pid, (child, cores) in live.items() if cores and child.poll() is None}
            held = flock_holders(inodes)
            for core, pids in held.items():
                if len(pids) > 1:
                    violations.append(f"/proc/locks: nc{core} locked by {sorted(pids)}")
            owners = collections.defaultdict(list)
            for pid, cores in claimed.items():
                for core in cores:
                    # A claim counts while the kernel still shows that pid holding the core.
                    if pid in held.get(core, ()):
                        owners[core].append(pid)
            for core, pids in owners.items():
                if len(pids) > 1:
                    violations.append(f"claims: nc{core} held by {pids}")
            listing = json.loads(subprocess.run([CORRAL, "ls", "--json"], env=env, capture_output=True,
                                                text=True, check=True).stdout)
            for core in listing["cores"]:
                if len(core["owners"]) > 1:
                    violations.append(f"ls: nc{core['index']} has owners {core['owners']}")
            stats["checks"] += 1
            time.sleep(0.005)

    watcher = threading.Thread(target=checker)
    watcher.start()
    started = time.perf_counter()
    rng = random.Random(7)
    for i in range(ACQUIRES):
        while True:
            with lock:
                for pid in [p for p, (c, _) in live.items() if c.poll() is not None]:
                    child = live.pop(pid)[0]
                    stats["exit 0" if child.returncode == 0 else
                          "killed" if child.returncode < 0 else "refused (busy)"] += 1
                if len(live) < 24:
                    break
            time.sleep(0.002)
        hold = rng.uniform(0.05, 0.5)
        child = subprocess.Popen([CORRAL, "reserve", "--json", "--num-cores", str(rng.randint(1, 4)),
                                  "--seconds", f"{hold:.3f}"], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True)
        with lock:
            live[child.pid] = (child, None)
        threading.Thread(target=reader, args=(child,), daemon=True).start()
        if rng.random() < 1 / 3:
            delay = rng.uniform(0, 0.4)
            threading.Timer(delay, lambda c=child: c.poll() is None and c.kill()).start()
    for child, _ in list(live.values()):
        child.wait()
    time.sleep(0.3)
    done.set()
    watcher.join()
    with lock:
        for child, _ in live.values():
            stats["exit 0" if child.returncode == 0 else
                  "killed" if child.returncode < 0 else "refused (busy)"] += 1
    elapsed = time.perf_counter() - started
    left = flock_holders(inodes)
    print(f"1. {ACQUIRES} racing acquisitions on sim:16 in {elapsed:.1f} s: {dict(stats)}")
    print(f"   cores owned twice: {len(violations)}; cores still locked at the end: {sum(map(len, left.values()))}")
    for v in violations[:5]:
        print("   ", v)
    return not violations and not left


# --- 2. serve under traffic with loads, unloads and reloads ---------------------------------

SERVE_CLIENT = r'''
import collections, sys, threading, time
import numpy as np
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException
url, total = sys.argv[1], int(sys.argv[2])
counts = collections.Counter(); lock = threading.Lock(); left = [total]; stop = threading.Event()
def take():
    with lock:
        if left[0] == 0: return False
        left[0] -= 1; return True
def caller(seed):
    client = thttp.InferenceServerClient(url, connection_timeout=60, network_timeout=60)
    a = np.ones((3, 4, 5), np.float32)
    i = seed
    while take():
        model = ("steady", "flip", "reloaded")[i % 3]; i += 1
        x, y = thttp.InferInput("x", [3, 4, 5], "FP32"), thttp.InferInput("y", [3, 4, 5], "FP32")
        x.set_data_from_numpy(a); y.set_data_from_numpy(a)
        try:
            ok = np.array_equal(client.infer(model, [x, y]).as_numpy("sum"), 2 * a)
            outcome = "200" if ok else "wrong"
        except InferenceServerException as e:
            outcome = "404 (unloaded)" if e.status() == "404" and model == "flip" else f"{e.status()} {model}"
        except Exception as e:
            outcome = f"lost: {type(e).__name__}"
        with lock: counts[outcome] += 1
def control():
    client = thttp.InferenceServerClient(url)
    n = collections.Counter()
    while not stop.is_set():
        client.unload_model("flip"); n["unload"] += 1
        client.load_model("reloaded"); n["reload"] += 1
        time.sleep(0.5)
        client.load_model("flip"); n["load"] += 1
        time.sleep(0.5)
    counts.update({f"control: {k}": v for k, v in n.items()})
threads = [threading.Thread(target=caller, args=(i,)) for i in range(16)]
ctl = threading.Thread(target=control)
start = time.perf_counter(); ctl.start()
for t in threads: t.start()
for t in threads: t.join()
stop.set(); ctl.join()
print(f"{time.perf_counter() - start:.1f}", dict(counts))
'''


def serve_under_chaos():
    repo = pathlib.Path(tempfile.mkdtemp(prefix="corral-chaos-repo-"))
    add = pathlib.Path(ROOT / ".venv/lib").glob("python3*/site-packages/onnx/backend/test/data/node/test_add/model.onnx")
    add = next(add)
    for name in ("steady", "flip", "reloaded"):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "1" / "model.onnx").write_bytes(add.read_bytes())
    env = env_with(CORRAL_LOCK_DIR=tempfile.mkdtemp(prefix="corral-chaos-"))
    args = [CORRAL, "serve", "--model-repository", str(repo), "--device", "cpu", "--http-port", "0",
            "--grpc-port", "0", "--metrics-port", "0", "--model-control-mode", "explicit"]
    for name in ("steady", "flip", "reloaded"):
        args += ["--load-model", name]
    server = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
    try:
        address = None
        for line in server.stderr:
            if line.startswith("corral serve: HTTP"):
                address = line.split()[3]
                break
        assert address, "corral serve did not start"
        threading.Thread(target=lambda: server.stderr.read(), daemon=True).start()
        wait_ready(int(address.rsplit(":", 1)[1]), server)
        done = subprocess.run([ROOT / ".venv-clients/bin/python", "-c", SERVE_CLIENT, address, str(REQUESTS)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        seconds, counts = done.stdout.strip().split(" ", 1)
        counts = eval(counts)  # noqa: S307 (our own client's printed dict)
    finally:
        server.terminate()
        server.wait()
    calls = sum(v for k, v in counts.items() if not k.startswith("control"))
    bad = {k: v for k, v in counts.items() if not k.startswith("control") and k not in ("200", "404 (unloaded)")}
    print(f"2. corral serve, {calls} calls from 16 clients in {seconds} s ({calls / float(seconds):.0f}/s) "
          f"with a load, unload or reload every 0.5 s: {counts}")
    print(f"   lost or wrong answers: {sum(bad.values())} {bad or ''}")
    return calls == REQUESTS and not bad


# --- 3. lock folders the system refuses ----------------------------------------------------

def refused_folders():
    script = f'''
set -e
d=$(mktemp -d)
mount -t tmpfs -o ro tmpfs "$d" 2>/dev/null || exit 3
mkdir -p "$d.full" && mount -t tmpfs -o size=8k,nr_inodes=2 tmpfs "$d.full"
CORRAL_LOCK_DIR="$d/corral" {CORRAL} reserve --device sim:2 --seconds 0 2>&1 || true
echo ---
CORRAL_LOCK_DIR="$d.full/corral" {CORRAL} reserve --device sim:2 --seconds 0 2>&1 || true
'''
    cases = []
    run = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True,
                         env=env_with())
    if run.returncode == 0 and "---" in run.stdout:
        ro, full = run.stdout.split("---\n")
        cases += [("read-only", ro), ("full", full)]
    else:
        print("   (no user namespace here: read-only and full folders not tried)", run.stderr.strip()[:200])
    other = tempfile.mkdtemp(prefix="corral-chaos-other-")
    os.chmod(other, 0o755)
    as_other = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    if not as_other:
        os.chmod(other, 0o555)
    run = subprocess.run(as_other + ["env", f"CORRAL_LOCK_DIR={other}/corral", CORRAL, "reserve", "--device",
                                     "sim:2", "--seconds", "0"], capture_output=True, text=True)
    cases.append(("another user's", run.stdout + run.stderr))
    ok = True
    print("3. lock folders the system refuses:")
    for what, text in cases:
        clear = "lock folder" in text and "hint:" in text and "CORRAL_LOCK_DIR" in text
        ok &= clear
        print(f"   {what}: {'clear' if clear else 'UNCLEAR'}: {text.strip().splitlines()[0]}")
        print(f"      {text.strip().splitlines()[-1]}")
    return ok


if __name__ == "__main__":
    results = [racing_acquisitions(), serve_under_chaos(), refused_folders()]
    sys.exit(0 if all(results) else 1)
