"""What happens around a process: forks, Ctrl-C, threads and the GIL, the end of a model's
and of the process's life. Each case runs in child processes of its own."""

import json
import os
import signal
import subprocess
import sys
import time

from conftest import child_env, corral_bin, finish, first_report, run_python, sim_model, start_python


def test_a_forked_child_never_keeps_the_parents_cores(repo, tmp_path):
    # The parent loads, forks a child that outlives it, and exits; the child must not keep
    # the cores, and must refuse to use the parent's runtime.
    code = f"MODEL = {str(sim_model(repo, 'tiny', latency_ms=1))!r}\n" + """
import os
m = corral.load(MODEL)
m(x)
pid = os.fork()
if pid == 0:
    errors = []
    for attempt in (lambda: m(x), lambda: corral.load(MODEL), lambda: corral.cores()):
        try:
            attempt()
        except corral.ForkError as e:
            errors.append(str(e))
    report(child=os.getpid(), errors=errors)
    sys.stdin.read()  # lives until the test closes stdin, long after the parent is gone
    os._exit(0)
report(parent=os.getpid())
"""
    parent = start_python(code, tmp_path, CORRAL_DEVICE="sim:4")
    reports = [first_report(parent), first_report(parent)]  # the two processes share stdout
    child = next(r for r in reports if "child" in r)
    parent_report = next(r for r in reports if "parent" in r)
    assert parent.wait(timeout=30) == 0
    try:
        assert len(child["errors"]) == 3
        assert child["errors"][0].startswith(
            f"this process ({child['child']}) was forked from process {parent_report['parent']}, whose corral runtime")
        assert "hint: load models after the fork" in child["errors"][0]
        assert open(f"/proc/{child['child']}/status").read().count("State:\tS"), "the child still lives..."
        got = run_python("corral.init(); report(owned=[c['global_index'] for c in corral.cores()])\n",
                         tmp_path, CORRAL_DEVICE="sim:4")
        assert got["owned"] == [0, 1, 2, 3], "...and a new process gets every core"
    finally:
        parent.stdin.close()
        os.kill(child["child"], signal.SIGKILL)


def test_ctrl_c_interrupts_a_long_call_promptly(repo, tmp_path):
    # A test run started in the background by a non-interactive shell (`./scripts/test &`)
    # hands its children SIGINT ignored, and Python then installs no KeyboardInterrupt handler:
    # the signal was dropped, the call ran its 20 s and the child "said nothing in 10 s". The
    # child sets up Ctrl-C as a terminal's Python has it, before the runtime's threads start
    # (they inherit the signal mask).
    code = f"MODEL = {str(sim_model(repo, 'slow', latency_ms=20000))!r}\n" + """
import signal, threading
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
m = corral.load(MODEL)
in_flight = lambda: m.stats()["instances"][0]["in_flight"]
# Says so once the call is in the runtime (the main thread is then waiting for its answer).
threading.Thread(target=lambda: (wait_until(lambda: in_flight() == 1, "the call is in"), report(calling=True)),
                 daemon=True).start()
try:
    m(x)
    report(interrupted=False)
except KeyboardInterrupt:
    report(interrupted=True, call_still_in=in_flight() == 1)
"""
    child = start_python(code, tmp_path, CORRAL_DEVICE="sim:1")
    try:
        assert first_report(child) == {"calling": True}
        child.send_signal(signal.SIGINT)
        # Promptly is an order, not a time: the interrupt is raised while the 20 s call is
        # still in the runtime. The generous wait outlasts the call, so a lost interrupt shows
        # as `interrupted: false` rather than as silence.
        assert first_report(child, timeout=60) == {"interrupted": True, "call_still_in": True}
    finally:
        child.kill()
        child.wait()


def test_threads_keep_every_core_of_a_multicore_model_busy(repo, tmp_path):
    # Each call waits 2 s on its simulated core with the GIL released: all 4 threads' calls
    # are in the runtime at once (counted, not timed), one on each replica.
    code = f"MODEL = {str(sim_model(repo, 'm', latency_ms=2000))!r}\n" + """
import threading
with corral.multicore_context():
    m = corral.load(MODEL)
threads = [threading.Thread(target=m, args=(x,)) for _ in range(4)]
for t in threads: t.start()
wait_until(lambda: [i["in_flight"] for i in m.stats()["instances"]] == [1, 1, 1, 1], "all 4 calls are in")
for t in threads: t.join()
report(executions=[i["executions"] for i in m.stats()["instances"]])
"""
    got = run_python(code, tmp_path, CORRAL_DEVICE="sim:4")
    assert got["executions"] == [1, 1, 1, 1]


def test_dropping_a_model_unloads_it_and_exit_frees_the_cores(repo, tmp_path):
    code = f"MODEL = {str(sim_model(repo, 'm', latency_ms=1))!r}\n" + """
m = corral.load(MODEL)
loaded = corral.cores()[0]["models"]
del m
report(loaded=loaded, after=corral.cores()[0]["models"])
"""
    got = run_python(code, tmp_path, CORRAL_DEVICE="sim:2")
    assert got == {"loaded": ["m"], "after": []}
    killed = start_python("corral.init(); report(up=True); time.sleep(60)\n", tmp_path, CORRAL_DEVICE="sim:2")
    first_report(killed)
    killed.kill()
    killed.wait()
    again = run_python("corral.init(); report(owned=len(corral.cores()))\n", tmp_path, CORRAL_DEVICE="sim:2")
    assert again["owned"] == 2, "SIGKILL released every core"


def test_importing_corral_starts_nothing(tmp_path):
    # A malformed core request would fail a start: importing must not start the runtime.
    done = subprocess.run([sys.executable, "-c", "import corral, corral.experimental; print(corral._corral.started())"],
                          env=child_env(tmp_path, CORRAL_DEVICE="sim:1", NEURON_RT_NUM_CORES="x"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_a_python_process_is_seen_by_monitor_and_top(repo, tmp_path):
    # The Python package's runtime publishes its counters like any other: corral monitor
    # counts its calls, and corral top names its instances.
    code = f"MODEL = {str(sim_model(repo, 'pym', latency_ms=1))!r}\n" + """
m = corral.load(MODEL)
for _ in range(7):
    m(x)
report(done=True)
sys.stdin.read()
"""
    child = start_python(code, tmp_path, CORRAL_DEVICE="sim:2", CORRAL_PROCESS_TAG="py-app")
    try:
        first_report(child)
        env = child_env(tmp_path)
        monitor = subprocess.run(
            [corral_bin(), "monitor", "--device", "sim:2", "--period", "0.3", "--count", "1"],
            env=env, capture_output=True, text=True, timeout=30)
        assert monitor.returncode == 0, monitor.stderr
        runtime, = json.loads(monitor.stdout)["neuron_runtime_data"]
        assert (runtime["pid"], runtime["neuron_runtime_tag"]) == (child.pid, "py-app")
        loaded = runtime["report"]["memory_used"]["loaded_models"]
        assert [m["name"] for m in loaded] == ["pym"]
        top = subprocess.run([corral_bin(), "top", "--once", "--device", "sim:2", "--interval", "0.2"],
                             env=env, capture_output=True, text=True, timeout=30)
        assert top.returncode == 0, top.stderr
        assert "pym[0]" in top.stdout and str(child.pid) in top.stdout, top.stdout
    finally:
        assert finish(child) == 0
