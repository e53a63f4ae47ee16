"""corral under a CPU quota, and the device plugin's reaction time; one run, two tables.

1. A cgroup with a CFS quota of 1.5 CPUs over a cpuset of 2 CPUs (v2 where the cpu controller
   is there, else v1), as a Burstable Kubernetes pod gets: corral serve inside it, once as it
   sizes itself (the quota caps it to 1 core) and once forced onto both cores
   (CORRAL_VISIBLE_CORES), serving deploy/models' squeezenet (an instance per core it took).
   perf_analyzer (outside the cgroup, on the same 2 CPUs) at concurrency 4 over HTTP and gRPC:
   throughput, p50, p99, and the share of the quota's periods the kernel throttled the server
   (cpu.stat). The two cases alternate, ROUNDS times; medians.
2. A cpuset and a quota changing under a running server (the default request, squeezenet on
   each core): the cpuset shrinks to the second CPU, grows back, then the quota falls to 1 CPU
   and is removed; the time from each write until the server says so and until `corral ls`
   shows the core free or held again; CPUSET_SAMPLES runs, median and max.
3. corral device-plugin (sim:8) against a kubelet stand-in written here with grpcio (the
   kubelet's api.proto compiled by grpc_tools): the time from a host process holding a core
   (its first line) to the ListAndWatch update marking it unhealthy, and from its exit to the
   update marking it healthy again; SAMPLES of each, median and max.

usage: bench/quota.py [SECONDS_PER_POINT] [ROUNDS]   (run through bench/quota.sh, as root)
"""

import csv
import json
import os
import queue
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ready import wait_ready  # noqa: E402
from serve import CPUS, CUDART, MODELS, PERF, ROOT, SITE  # noqa: E402

CORRAL = f"{ROOT}/target/release/corral"
SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
QUOTA_CPUS = 1.5
SAMPLES = 20
CPUSET_SAMPLES = 5


class Cgroup:
    """A parent cgroup with the quota and the 2-CPU cpuset; processes join `procs`."""

    def __init__(self, cpus):
        mounts = [line.split(" - ") for line in open("/proc/self/mountinfo")]
        mounts = [(m[0].split()[4], m[1].split()) for m in mounts if len(m) == 2]
        v2 = [p for p, (fs, *_rest) in mounts if fs == "cgroup2"
              and "cpu" in open(f"{p}/cgroup.controllers").read().split()]
        v1 = {opt: p for p, (fs, _src, opts) in mounts if fs == "cgroup" for opt in opts.split(",")}
        name = f"corral-bench-quota-{os.getpid()}"
        self.made, self.procs = [], []
        if v2:
            root = v2[0]
            self.write(f"{root}/cgroup.subtree_control", "+cpu +cpuset")
            self.dir = self.mkdir(f"{root}/{name}")
            self.write(f"{self.dir}/cpuset.cpus", cpus)
            self.cpuset = f"{self.dir}/cpuset.cpus"
            self.write(f"{self.dir}/cpu.max", f"{int(QUOTA_CPUS * 100000)} 100000")
            self.procs.append(f"{self.dir}/cgroup.procs")
            self.stat, self.throttled_key, self.version = f"{self.dir}/cpu.stat", "throttled_usec", "v2 cpu.max"
        else:
            self.dir = self.mkdir(f"{v1['cpu']}/{name}")
            self.write(f"{self.dir}/cpu.cfs_period_us", "100000")
            self.write(f"{self.dir}/cpu.cfs_quota_us", str(int(QUOTA_CPUS * 100000)))
            self.procs.append(f"{self.dir}/cgroup.procs")
            if "cpuset" in v1:
                cpuset = self.mkdir(f"{v1['cpuset']}/{name}")
                self.write(f"{cpuset}/cpuset.cpus", cpus)
                self.cpuset = f"{cpuset}/cpuset.cpus"
                self.write(f"{cpuset}/cpuset.mems", open(f"{v1['cpuset']}/cpuset.mems").read().strip())
                self.procs.append(f"{cpuset}/cgroup.procs")
            self.stat, self.throttled_key, self.version = f"{self.dir}/cpu.stat", "throttled_time", "v1 cpu.cfs_quota_us"

    def mkdir(self, path):
        os.mkdir(path)
        self.made.append(path)
        return path

    @staticmethod
    def write(path, text):
        with open(path, "w") as f:
            f.write(text)

    def set_quota(self, cpus):
        """`cpus` CPUs every 100 ms, or none (None)."""
        if self.version.startswith("v2"):
            self.write(f"{self.dir}/cpu.max", "max 100000" if cpus is None else f"{int(cpus * 100000)} 100000")
        else:
            self.write(f"{self.dir}/cpu.cfs_quota_us", "-1" if cpus is None else str(int(cpus * 100000)))

    def periods(self):
        stat = dict(line.split() for line in open(self.stat))
        return int(stat["nr_periods"]), int(stat["nr_throttled"])

    def popen(self, command, **kwargs):
        """`command` started inside the cgroup (a shell joins it, then execs)."""
        join = "; ".join(f'echo $$ > "{p}"' for p in self.procs)
        return subprocess.Popen(["sh", "-c", f'{join} && exec "$@"', "sh", *command], **kwargs)

    def remove(self):
        for path in reversed(self.made):
            for _ in range(50):
                try:
                    os.rmdir(path)
                    break
                except OSError:
                    time.sleep(0.1)


def perf(protocol, port, concurrency):
    """perf_analyzer on squeezenet: (infer/s, p50 ms, p99 ms), or None and why. A throttled
    server's windows differ more than serve.py's 25 % allows, so this one accepts 50 %."""
    _, name, shape, _ = MODELS["squeezenet"]
    with tempfile.NamedTemporaryFile(suffix=".csv") as out:
        command = [PERF, "-m", "squeezenet", "-i", protocol, "-u", f"127.0.0.1:{port}", "--input-data", "zero",
                   "--shape", f"{name}:{','.join(map(str, shape))}", "--concurrency-range", str(concurrency),
                   "--measurement-interval", str(int(SECONDS * 1000)), "--stability-percentage", "50",
                   "--max-trials", "10", "--percentile", "99", "-f", out.name]
        result = subprocess.run(command, env={**os.environ, "LD_LIBRARY_PATH": CUDART}, capture_output=True, text=True)
        if result.returncode != 0:
            return None, result.stdout[-300:] + result.stderr[-300:]
        row = next(csv.DictReader(open(out.name)))
        return (float(row["Inferences/Second"]), float(row["p50 latency"]) / 1000, float(row["p99 latency"]) / 1000), ""


def repository():
    repo = tempfile.mkdtemp()
    os.makedirs(f"{repo}/squeezenet/1")
    shutil.copy(f"{ROOT}/deploy/models/squeezenet/config.pbtxt", f"{repo}/squeezenet/config.pbtxt")
    os.symlink(f"{SITE}/onnx/backend/test/data/light/light_squeezenet.onnx", f"{repo}/squeezenet/1/model.onnx")
    return repo


def serve_case(cgroup, repo, case, port):
    """One server run: (cores taken, {protocol: (infer/s, p50, p99)}, throttled share)."""
    env = {**os.environ, "CORRAL_LOCK_DIR": tempfile.mkdtemp()}
    if case == "both cores":
        env["CORRAL_VISIBLE_CORES"] = "0-1"
    command = [CORRAL, "serve", "--model-repository", repo, "--device", "cpu", "--http-port", str(port),
               "--grpc-port", str(port + 1), "--metrics-port", str(port + 2)]
    proc = cgroup.popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        said, line = [], ""
        while not line.startswith("corral serve: HTTP"):
            said.append(line)
            line = proc.stderr.readline()
            if not line:
                sys.exit(f"corral serve did not start ({case}):\n{''.join(said)}")
        cores = line.split(" cores ")[-1].strip()
        wait_ready(port, proc)
        results = {}
        before = cgroup.periods()
        for protocol in ("http", "grpc"):
            figures, why = perf(protocol, port + (protocol == "grpc"), 4)
            if figures is None:
                sys.exit(f"perf_analyzer failed ({case}, {protocol}): {why}")
            results[protocol] = figures
        after = cgroup.periods()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    periods = after[0] - before[0]
    return cores, results, (after[1] - before[1]) / periods if periods else 0.0


def quota_table():
    if len(CPUS) < 2:
        sys.exit("this bench needs 2 CPUs")
    cpus = f"{CPUS[0]},{CPUS[1]}"
    cgroup = Cgroup(cpus)
    repo = repository()
    cases = ("corral default", "both cores")
    runs = {case: [] for case in cases}
    try:
        for _ in range(ROUNDS):
            for case in cases:
                runs[case].append(serve_case(cgroup, repo, case, 18400))
    finally:
        cgroup.remove()
    print(f"squeezenet (deploy/models), cgroup {cgroup.version} quota {QUOTA_CPUS} CPUs over CPUs {cpus},"
          f" perf_analyzer c4, {SECONDS:.0f} s per point, median of {ROUNDS} rounds alternating the cases")
    print()
    print("| case | cores | proto | infer/s | p50 ms | p99 ms | throttled periods |")
    print("|---|---|---|---|---|---|---|")
    medians = {}
    for case in cases:
        cores = runs[case][0][0]
        throttled = statistics.median(r[2] for r in runs[case])
        for protocol in ("http", "grpc"):
            rows = [r[1][protocol] for r in runs[case]]
            m = tuple(statistics.median(row[i] for row in rows) for i in range(3))
            medians[(case, protocol)] = m
            print(f"| {case} | {cores} | {protocol} | {m[0]:.1f} | {m[1]:.2f} | {m[2]:.2f} | {throttled:.0%} |")
    print()
    for protocol in ("http", "grpc"):
        a, b = medians[("corral default", protocol)], medians[("both cores", protocol)]
        print(f"{protocol}: default / both cores: throughput {a[0] / b[0]:.2f}x, p99 {a[2] / b[2]:.2f}x")


def plugin_table():
    out = tempfile.mkdtemp()
    subprocess.run([f"{ROOT}/.venv-clients/bin/python", "-m", "grpc_tools.protoc", f"-I{ROOT}/crates/corral-kube/proto",
                    f"--python_out={out}", f"--grpc_python_out={out}", "api.proto"], check=True)
    sys.path.insert(0, out)
    import api_pb2
    import api_pb2_grpc
    import grpc
    from concurrent import futures

    kubelet_dir, lock_dir = tempfile.mkdtemp(), tempfile.mkdtemp()
    registered = queue.Queue()

    class Registration(api_pb2_grpc.RegistrationServicer):
        def Register(self, request, context):
            registered.put(request)
            return api_pb2.Empty()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    api_pb2_grpc.add_RegistrationServicer_to_server(Registration(), server)
    server.add_insecure_port(f"unix:{kubelet_dir}/kubelet.sock")
    server.start()
    env = {**os.environ, "CORRAL_LOCK_DIR": lock_dir}
    plugin = subprocess.Popen([CORRAL, "device-plugin", "--device", "sim:8", "--kubelet-dir", kubelet_dir], env=env,
                              stderr=subprocess.DEVNULL)
    try:
        taken, freed = watch_plugin(api_pb2, api_pb2_grpc, grpc, registered.get(timeout=60), kubelet_dir, env)
    finally:
        plugin.send_signal(signal.SIGTERM)
        plugin.wait()
        server.stop(None)
    print(f"corral device-plugin (sim:8, registry read every 200 ms) against a grpcio kubelet stand-in,"
          f" {SAMPLES} samples each")
    print()
    print("| event | median ms | max ms |")
    print("|---|---|---|")
    for name, samples in (("core taken -> Unhealthy", taken), ("core freed -> Healthy", freed)):
        print(f"| {name} | {statistics.median(samples) * 1000:.0f} | {max(samples) * 1000:.0f} |")


def watch_plugin(api_pb2, api_pb2_grpc, grpc, request, kubelet_dir, env):
    """As the kubelet: dial the plugin that sent `request`, watch its list, time each change."""
    # As the kubelet dials (kubernetes#112597): authority `localhost`, where grpcio would send
    # the socket's path, which HTTP/2 servers such as tonic's refuse.
    channel = grpc.insecure_channel(f"unix:{kubelet_dir}/{request.endpoint}",
                                    options=[("grpc.default_authority", "localhost")])
    stub = api_pb2_grpc.DevicePluginStub(channel)
    updates = queue.Queue()

    def watch():
        try:
            for response in stub.ListAndWatch(api_pb2.Empty()):
                updates.put((time.monotonic(), {d.ID: d.health for d in response.devices}))
        except grpc.RpcError:
            pass  # the channel closed at the end

    threading.Thread(target=watch, daemon=True).start()
    updates.get(timeout=60)

    def wait_for(core, health):
        while True:
            at, devices = updates.get(timeout=60)
            if devices[core] == health:
                return at

    # A random pause before each event: the watcher reads every 200 ms, and an event made
    # right after the update of the one before would always wait a whole interval.
    rng = random.Random(7)
    taken, freed = [], []
    for i in range(SAMPLES):
        core = i % 8
        time.sleep(rng.uniform(0, 0.4))
        holder = subprocess.Popen([CORRAL, "reserve", "--device", "sim:8", "--visible-cores", str(core)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        holder.stdout.readline()
        start = time.monotonic()
        taken.append(wait_for(f"nc{core}", "Unhealthy") - start)
        time.sleep(rng.uniform(0, 0.4))
        holder.send_signal(signal.SIGTERM)
        holder.wait()
        start = time.monotonic()
        freed.append(wait_for(f"nc{core}", "Healthy") - start)
    channel.close()
    return taken, freed


def cpuset_table():
    cpus = f"{CPUS[0]},{CPUS[1]}"
    cgroup = Cgroup(cpus)
    if not hasattr(cgroup, "cpuset"):
        cgroup.remove()
        sys.exit("no cpuset controller is mounted: the cpuset figure needs one")
    cgroup.set_quota(None)
    repo = repository()
    times = {key: [] for key in ("left", "freed", "held", "quota_freed", "quota_held")}
    try:
        for sample in range(CPUSET_SAMPLES):
            cgroup.write(cgroup.cpuset, cpus)
            cgroup.set_quota(None)
            locks = tempfile.mkdtemp()
            # The default request: the server follows its cpuset and quota both ways.
            env = {**os.environ, "CORRAL_LOCK_DIR": locks}
            port = 18700 + 10 * sample
            command = [CORRAL, "serve", "--model-repository", repo, "--device", "cpu", "--http-port", str(port),
                       "--grpc-port", str(port + 1), "--metrics-port", str(port + 2)]
            proc = cgroup.popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            lines = queue.Queue()
            threading.Thread(target=lambda: [lines.put((time.monotonic(), l)) for l in proc.stderr], daemon=True).start()

            def said(text, since):
                while True:
                    at, line = lines.get(timeout=30)
                    if text in line:
                        return at - since

            def owned_until(count, since):
                while True:
                    listing = subprocess.run([CORRAL, "ls", "--json", "--device", "cpu"], env=env,
                                             capture_output=True, text=True).stdout
                    if sum(core["owner"] is not None for core in json.loads(listing)["cores"]) == count:
                        return time.monotonic() - since
                    if time.monotonic() - since > 30:
                        sys.exit(f"the server never held {count} core(s)")
                    time.sleep(0.01)

            def change(write):
                time.sleep(random.uniform(0, 0.5))  # not in step with the runtime's 0.5 s look
                at = time.monotonic()
                write()
                return at

            try:
                wait_ready(port, proc)
                at = change(lambda: cgroup.write(cgroup.cpuset, str(CPUS[1])))
                times["left"].append(said("left this process's CPUs", at))
                times["freed"].append(owned_until(1, at))
                at = change(lambda: cgroup.write(cgroup.cpuset, cpus))
                times["held"].append(owned_until(2, at))
                at = change(lambda: cgroup.set_quota(1.0))
                times["quota_freed"].append(owned_until(1, at))
                at = change(lambda: cgroup.set_quota(None))
                times["quota_held"].append(owned_until(2, at))
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
    finally:
        cgroup.remove()
    print(f"## Cpuset and quota changes under a running server (squeezenet on each core, {CPUSET_SAMPLES} runs)")
    print()
    print("| from the write to the cgroup until | median | max |")
    print("| --- | --- | --- |")
    rows = (("the cpuset shrinks to 1 CPU: the server says a core left", "left"),
            ("... `corral ls` shows it free", "freed"),
            ("the cpuset grows back: `corral ls` shows the core held again", "held"),
            ("the quota falls to 1 CPU: `corral ls` shows a core free", "quota_freed"),
            ("the quota is removed: `corral ls` shows both held", "quota_held"))
    for what, key in rows:
        print(f"| {what} | {statistics.median(times[key]) * 1000:.0f} ms | {max(times[key]) * 1000:.0f} ms |")


def main():
    if os.geteuid() != 0:
        sys.exit("bench/quota.py makes cgroups: run it as root")
    quota_table()
    print()
    cpuset_table()
    print()
    plugin_table()


if __name__ == "__main__":
    main()
