"""The autopilot from Python (SPEC §11): ``CORRAL_AUTOPILOT=1`` moves cores to the model
Python threads drive, on ``sim:`` and on this machine's real cores with real ONNX models,
``load(..., autopilot=(lo, hi))`` bounds it, and each move reaches the ``logging`` logger
``corral``. Each case runs in a child Python: the runtime, and so the
autopilot setting, starts once per process."""

from conftest import MAGIKA, SQUEEZENET, run_python, sim_model

DRIVE = """
import logging, threading
moves = []
class Keep(logging.Handler):
    def emit(self, record):
        moves.append((record.name, record.levelname, record.getMessage()))
logging.getLogger("corral").addHandler(Keep())
logging.getLogger("corral").setLevel(logging.INFO)

def drive(model, until, seconds=60):
    # 6 threads call `model` back to back until `until()` holds (True), or for `seconds`
    # (False); every call must succeed.
    stop = threading.Event()
    errors = []
    def caller():
        while not stop.is_set():
            try:
                model(x)
            except Exception as e:
                errors.append(repr(e))
    threads = [threading.Thread(target=caller) for _ in range(6)]
    for t in threads: t.start()
    deadline = time.monotonic() + seconds
    reached = until()
    while not reached and time.monotonic() < deadline:
        time.sleep(0.05)
        reached = until()
    stop.set()
    for t in threads: t.join()
    return reached, errors
"""


def test_the_autopilot_gives_cores_to_the_model_python_threads_drive(repo, tmp_path):
    a = sim_model(repo, "a", latency_ms=10)
    b = sim_model(repo, "b", latency_ms=10)
    code = f"A, B = {str(a)!r}, {str(b)!r}\n" + DRIVE + """
ma = corral.load(A, autopilot=(1, 6))
mb = corral.load(B)
seen = {}
def look(key, holds):
    seen[key] = {"a": [list(i) for i in ma.instances], "b": [list(i) for i in mb.instances]}
    return holds(seen[key])
a_grew, a_errors = drive(ma, lambda: look("a_hot", lambda s: len(s["a"]) >= 4))
b_grew, b_errors = drive(mb, lambda: look("b_hot", lambda s: len(s["b"]) >= 4 and len(s["a"]) <= 2))
report(a_grew=a_grew, b_grew=b_grew, errors=a_errors + b_errors, a_hot=seen["a_hot"]["a"],
       a=seen["b_hot"]["a"], b=seen["b_hot"]["b"],
       moves=moves, total=ma.stats()["requests"] + mb.stats()["requests"],
       failures=ma.stats()["failures"] + mb.stats()["failures"])
"""
    got = run_python(code, tmp_path, timeout=180, CORRAL_DEVICE="sim:8", CORRAL_AUTOPILOT="1",
                     CORRAL_AUTOPILOT_INTERVAL="0.05")
    assert got["a_grew"], f"a never reached 4 instances: {got}"
    assert got["b_grew"], f"b never took a's cores: {got}"
    assert got["errors"] == [] and got["failures"] == 0, got
    assert got["total"] > 0
    assert len(got["a_hot"]) <= 6, "a went past its max"
    cores_a = {c for i in got["a"] for c in i}
    cores_b = {c for i in got["b"] for c in i}
    assert len(cores_b) > len(cores_a), got
    if cores_a & cores_b:
        assert cores_a | cores_b == set(range(8)), f"the models share a core while cores are free: {got}"
    grows = [m for m in got["moves"] if m[2].startswith("autopilot: grow")]
    assert grows and all(name == "corral" and level == "INFO" for name, level, _ in got["moves"]), got["moves"]
    assert any("model=b" in m[2] for m in grows), got["moves"]


def test_autopilot_bounds_and_setting_errors_name_what_was_wrong(repo, tmp_path):
    a = sim_model(repo, "a", latency_ms=1)
    code = f"A = {str(a)!r}\n" + """
errors = {}
for bounds in [(0, 2), (3, 2)]:
    try:
        corral.load(A, autopilot=bounds)
    except corral.ModelLoadError as e:
        errors[str(bounds)] = str(e)
# Loaded with one instance, below its bounds: the first interval brings it to 2.
pinned = corral.load(A, autopilot=(2, 2))
deadline = time.monotonic() + 30
while len(pinned.instances) != 2 and time.monotonic() < deadline:
    time.sleep(0.02)
report(errors=errors, pinned=[list(i) for i in pinned.instances])
"""
    got = run_python(code, tmp_path, CORRAL_DEVICE="sim:4", CORRAL_AUTOPILOT="on", CORRAL_AUTOPILOT_INTERVAL="0.05")
    assert "autopilot min = 0" in got["errors"]["(0, 2)"], got
    assert "min = 3 is above max = 2" in got["errors"]["(3, 2)"], got
    assert len(got["pinned"]) == 2, got
    bad = run_python("""
try:
    corral.init()
    report(error=None)
except corral.ConfigError as e:
    report(error=str(e))
""", tmp_path, CORRAL_DEVICE="sim:1", CORRAL_AUTOPILOT="maybe")
    assert "CORRAL_AUTOPILOT" in bad["error"] and "maybe" in bad["error"], bad


def test_on_real_cores_moved_instances_answer_as_onnxruntime_and_are_pinned(tmp_path):
    # squeezenet and magika on this machine's cores, the load on one, then the other. With
    # two cores and each model at its min of 1, the hot model's second instance shares the
    # cold one's core (no free core is left).
    code = f"SQUEEZENET, MAGIKA = {str(SQUEEZENET)!r}, {str(MAGIKA)!r}\n" + DRIVE + """
import os, onnxruntime
rng = np.random.default_rng(3)
feeds = {"squeezenet": {"data_0": rng.random((1, 3, 224, 224), dtype=np.float32)},
         "magika": {"bytes": rng.integers(0, 257, size=(1, 2048), dtype=np.int32)}}
want = {name: onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds[name])[0]
        for name, path in [("squeezenet", SQUEEZENET), ("magika", MAGIKA)]}
models = {"squeezenet": corral.load(SQUEEZENET), "magika": corral.load(MAGIKA)}
wrong = []
class Checked:
    def __init__(self, name):
        self.name = name
    def __call__(self, _x):
        got = models[self.name](**feeds[self.name])
        if not np.allclose(got, want[self.name], rtol=1e-5, atol=1e-5):
            wrong.append(self.name)

def pinned():
    # Every worker thread (named corral-nc<first core>) runs on its core's CPUs only.
    cpus = {c["index"]: sorted(c["cpus"]) for c in corral.cores()}
    threads = []
    for task in os.listdir("/proc/self/task"):
        try:
            comm = open(f"/proc/self/task/{task}/comm").read().strip()
            allowed = sorted(os.sched_getaffinity(int(task)))
        except (FileNotFoundError, ProcessLookupError):
            continue  # a retired worker that just ended
        if comm.startswith("corral-nc"):
            threads.append((int(comm[len("corral-nc"):]), allowed))
    return threads, cpus

def phase(hot, cold):
    def holds():
        if not (len(models[hot].instances) == 2 and len(models[cold].instances) == 1):
            return False
        threads, cpus = pinned()
        return len(threads) == 3 and all(allowed == cpus[core] for core, allowed in threads)
    reached, errors = drive(Checked(hot), holds, seconds=90)
    threads, cpus = pinned()
    return {"reached": reached, "errors": errors, "threads": threads, "cpus": {str(k): v for k, v in cpus.items()},
            hot: [list(i) for i in models[hot].instances], cold: [list(i) for i in models[cold].instances]}

report(first=phase("squeezenet", "magika"), second=phase("magika", "squeezenet"), wrong=wrong,
       device=corral.device(), cores=len(corral.cores()),
       failures=sum(m.stats()["failures"] for m in models.values()))
"""
    got = run_python(code, tmp_path, timeout=240, CORRAL_DEVICE="cpu", CORRAL_AUTOPILOT="1",
                     CORRAL_AUTOPILOT_INTERVAL="0.1")
    assert got["device"] == "cpu" and got["cores"] >= 2, f"needs two cores of this machine: {got}"
    for phase in ("first", "second"):
        assert got[phase]["reached"], f"{phase} phase: the hot model never got a second instance: {got[phase]}"
        assert got[phase]["errors"] == [], got[phase]["errors"][:3]
    assert got["wrong"] == [] and got["failures"] == 0, got
