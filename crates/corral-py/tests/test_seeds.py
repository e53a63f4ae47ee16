"""The seeds' programs with ``torch_neuronx.`` -> ``corral.`` (and MXNet's ``mx.neuron(i)`` ->
``corral.neuron(i)``), on simulated machines, each checking where the models landed
(``model.instances``, process-relative) and where the calls ran (executions per instance).
Each runs in its own Python process, since a process takes its cores once."""

from conftest import corral_ls, finish, first_report, run_python, sim_model, start_python

LOAD_TWICE = """
m0 = corral.load(MODEL)  # Loads to nc0
m1 = corral.load(MODEL)  # Loads to nc1
cores = corral.cores()
report(m0=m0.instances, m1=m1.instances, names=[m0.name, m1.name],
       owned=[c["global_index"] for c in cores], device=corral.device())
"""


def seed(code: str, model) -> str:
    return f"MODEL = {str(model)!r}\n" + code


def test_default_takes_every_core_and_loads_to_the_least_used(repo, tmp_path):
    got = run_python(seed(LOAD_TWICE, sim_model(repo, "model")), tmp_path, CORRAL_DEVICE="sim:8")
    assert got["m0"] == [[0]] and got["m1"] == [[1]]
    assert got["names"] == ["model", "model#2"]
    assert got["owned"] == list(range(8)), "nc2-nc7 idle but owned"
    assert got["device"] == "sim:8"


def test_num_cores_in_two_processes(repo, tmp_path):
    model = sim_model(repo, "model")
    first = start_python(seed(LOAD_TWICE + "sys.stdin.read()\n", model), tmp_path,
                         CORRAL_DEVICE="sim:8", NEURON_RT_NUM_CORES=2)
    try:
        held = first_report(first)
        second = run_python(seed(LOAD_TWICE, model), tmp_path, CORRAL_DEVICE="sim:8", NEURON_RT_NUM_CORES=2)
    finally:
        finish(first)
    assert held["owned"] == [0, 1] and held["m0"] == [[0]] and held["m1"] == [[1]]
    assert second["owned"] == [2, 3], "the second process gets the next two cores"
    assert second["m0"] == [[0]] and second["m1"] == [[1]], "process-relative: its nc0 is global nc2"


def test_visible_cores(repo, tmp_path):
    got = run_python(seed(LOAD_TWICE, sim_model(repo, "model")), tmp_path,
                     CORRAL_DEVICE="sim:8", NEURON_RT_VISIBLE_CORES="4-5")
    assert got["owned"] == [4, 5]
    assert got["m0"] == [[0]] and got["m1"] == [[1]], "m0 on nc4, m1 on nc5"


def test_visible_cores_that_are_not_consecutive(repo, tmp_path):
    # What Ray hands an actor after fragmentation: exactly nc1 and nc3, as process cores 0, 1.
    code = """
wide = corral.load(MODEL)
wide(x)
report(owned=[c["global_index"] for c in corral.cores()], instances=wide.instances,
       executions=[c["executions"] for c in corral.cores()])
sys.stdin.read()
"""
    child = start_python(seed(code, sim_model(repo, "wide", cores=2)), tmp_path,
                         CORRAL_DEVICE="sim:4", NEURON_RT_VISIBLE_CORES="1,3")
    try:
        got = first_report(child)
        listing = corral_ls(tmp_path, "sim:4")
    finally:
        finish(child)
    assert got["owned"] == [1, 3]
    assert got["instances"] == [[0, 1]], "a 2-core model spans process cores 0 and 1"
    assert got["executions"] == [1, 1], "one call held both cores"
    held = {core["index"]: core["owner"]["pid"] for core in listing["cores"] if core["owner"]}
    assert held == {1: child.pid, 3: child.pid}


RAN_ON = """
def ran_on(model):
    # Which replicas executed one call: the per-instance executions that grew.
    before = [i["executions"] for i in model.stats()["instances"]]
    model(x)
    after = [i["executions"] for i in model.stats()["instances"]]
    return [i for i, (a, b) in enumerate(zip(before, after)) if b > a]
"""

MANUAL = RAN_ON + """
import corral.experimental
# NOTE: Order of loads does NOT matter
with corral.experimental.neuron_cores_context(start_nc=3):
    m0 = corral.load(MODEL)  # Loads to nc3
with corral.experimental.neuron_cores_context(start_nc=0, nc_count=2):
    m1 = corral.load(MODEL)  # Loads replicas to nc0 and nc1

report(m0=m0.instances, m1=m1.instances,
       m0_calls=[ran_on(m0) for _ in range(2)], m1_calls=[ran_on(m1) for _ in range(3)])
"""


def test_manual_core_selection(repo, tmp_path):
    got = run_python(seed(MANUAL, sim_model(repo, "model")), tmp_path,
                     CORRAL_DEVICE="sim:8", NEURON_RT_NUM_CORES=4)
    assert got["m0"] == [[3]]
    assert got["m1"] == [[0], [1]]
    assert got["m0_calls"] == [[0], [0]], "m0 always executes on nc3"
    assert got["m1_calls"] == [[0], [1], [0]], "m1 alternates nc0, nc1, nc0"


def test_automatic_multicore(repo, tmp_path):
    code = RAN_ON + """
with corral.multicore_context():
    m0 = corral.load(MODEL)  # Loads replications to nc0-nc7
report(instances=m0.instances, calls=[ran_on(m0) for _ in range(9)])
"""
    got = run_python(seed(code, sim_model(repo, "model")), tmp_path, CORRAL_DEVICE="sim:8", NEURON_RT_NUM_CORES=8)
    assert got["instances"] == [[i] for i in range(8)]
    assert got["calls"] == [[i] for i in [0, 1, 2, 3, 4, 5, 6, 7, 0]]


LATENCY_MS = 200

FLEXEG = """
import threading
def place(starts):
    models = {}
    for name, start in starts.items():
        with corral.neuron(start):
            models[name] = corral.load(REPO + "/" + name)
    return models

def executions():
    return [c["executions"] for c in corral.cores()]

def run_together(models):
    # One call per model from a thread each: executions per core.
    before = executions()
    threads = [threading.Thread(target=m, args=(x,)) for m in models.values()]
    for t in threads: t.start()
    for t in threads: t.join()
    return [a - b for a, b in zip(executions(), before)]

def switches(core):
    return corral.cores()[core]["switches"]

good = place({"A": 0, "B": 2, "C": 6, "D": 9})
good_runs = run_together(good)
good_where = {n: m.instances for n, m in good.items()}
for m in good.values(): m.unload()

bad = place({"A": 0, "B": 2, "C": 5, "D": 9})
nc5_before = switches(5)
bad_runs = [run_together(bad) for _ in range(3)]
bad_where = {n: m.instances for n, m in bad.items()}
nc5_switches = switches(5) - nc5_before
for m in bad.values(): m.unload()

again = place({"C": 0, "A": 3, "D": 5, "B": 9})  # another layout, same process
again_runs = run_together(again)
report(good_runs=good_runs, bad_runs=bad_runs, again_runs=again_runs, nc5_switches=nc5_switches,
       good=good_where, bad=bad_where, again={n: m.instances for n, m in again.items()})
"""


def flexeg_models(repo):
    for name, k in {"A": 2, "B": 4, "C": 3, "D": 4}.items():
        sim_model(repo, name, cores=k, latency_ms=LATENCY_MS, switch_ms=20)


def test_flexeg_good_bad_and_reloaded_layouts(repo, tmp_path):
    flexeg_models(repo)
    got = run_python(f"REPO = {str(repo)!r}\n" + FLEXEG, tmp_path, CORRAL_DEVICE="sim:inf1.6xlarge")
    span = lambda first, k: [list(range(first, first + k))]  # noqa: E731
    assert got["good"] == {"A": span(0, 2), "B": span(2, 4), "C": span(6, 3), "D": span(9, 4)}
    assert got["bad"]["C"] == span(5, 3), "C starts at nc5, inside B"
    assert got["again"] == {"C": span(0, 3), "A": span(3, 2), "D": span(5, 4), "B": span(9, 4)}
    # Counted, not timed: in the good layouts each of the 13 cores in use runs one execution
    # (nothing shared); in the bad one nc5 runs B's and C's in every run, and they take turns
    # there: the core changes model within each of the 3 runs (the first use is not a
    # switch, and a run may begin with the model that ended the last), so 3 switches at least.
    # That two models never hold a core at once is the gang table's rule, held against the
    # simulator's step by step in the runtime's tests/it/replay.rs.
    used = [1] * 13 + [0] * 3
    assert got["good_runs"] == used, got
    assert got["again_runs"] == used, got
    assert all(run[5] == 2 and run.count(0) == 4 for run in got["bad_runs"]), got
    assert got["nc5_switches"] >= 3, got


def test_flexeg_start_past_the_last_core_fails(repo, tmp_path):
    code = f"REPO = {str(repo)!r}\n" + """
ok = []
for start in range(4):
    try:
        with corral.neuron(start):
            ok.append(corral.load(REPO + "/X").instances)
    except corral.PlacementError as e:
        report(ok=ok, error=str(e), is_value_error=isinstance(e, ValueError))
"""
    sim_model(repo, "X", cores=2)
    got = run_python(code, tmp_path, CORRAL_DEVICE="sim:inf1.xlarge")
    assert got["ok"] == [[[0, 1]], [[1, 2]], [[2, 3]]]
    assert got["error"] == "cannot place `X`: model needs 2 cores from nc3, process has nc0-nc3"
    assert got["is_value_error"]


def test_legacy_groups_with_neuron_context(repo, tmp_path):
    flexeg_models(repo)
    code = f"REPO = {str(repo)!r}\n" + """
import os
os.environ['NEURONCORE_GROUP_SIZES'] = '2,4,3,4'
where = {}
for group, name in enumerate("ABCD"):
    with corral.neuron(group):
        where[name] = corral.load(REPO + "/" + name).instances
with corral.neuron(1):
    shared = corral.load(REPO + "/A").instances
report(where=where, shared=shared, owned=len(corral.cores()))
"""
    got = run_python(code, tmp_path, CORRAL_DEVICE="sim:inf1.6xlarge")
    assert got["where"] == {"A": [[0, 1]], "B": [[2, 3, 4, 5]], "C": [[6, 7, 8]], "D": [[9, 10, 11, 12]]}
    assert got["shared"] == [[2, 3]], "a second model in group 1 loads onto its first K cores"
    assert got["owned"] == 13, "sum(sizes) cores"
