"""The live page's cost and delay (issue figures), one run:

1. Idle cost: `corral serve` on cpu (squeezenet loaded, no calls), its CPU time over WINDOW
   seconds (default 60) with 0, 1 and 5 event streams open, then 0 again after they closed:
   the whole process and its protocol threads (`corral-serve`, where the page's producer and
   streams run), from /proc/<pid>/task/*/stat, as percent of one CPU.
2. Throughput: perf_analyzer at concurrency 16 on squeezenet over HTTP with 0 and with 5
   streams open, alternately, ROUNDS times (default 3); medians and their ratio.
3. Delay: `corral serve --device sim:8 --autopilot` and the page in headless Chromium;
   tritonclient load on and off until the page has shown 10 or more autopilot moves; per move,
   the time from the server recording it to the page holding it (one host clock): median, max.
4. Firefox ESR: one headless screenshot of the page (`firefox-esr --screenshot`), when
   Debian's firefox-esr is installed (bench/dashboard.sh installs it).

usage: dashboard.py [WINDOW_S] [ROUNDS]
"""

import csv
import glob
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ready import wait_ready  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SITE = glob.glob(f"{ROOT}/.venv/lib/python3*/site-packages")[0]
PERF = f"{ROOT}/.venv-perf/bin/perf_analyzer"
CUDART = glob.glob(f"{ROOT}/.venv-perf/lib/python3*/site-packages/nvidia/cuda_runtime/lib")[0]
WINDOW = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
SQUEEZENET = f"{SITE}/onnx/backend/test/data/light/light_squeezenet.onnx"
TICK = os.sysconf("SC_CLK_TCK")
CORRAL = f"{ROOT}/target/release/corral"


def serve(repo, port, extra):
    command = [CORRAL, "serve", "--model-repository", repo, "--http-port", str(port),
               "--grpc-port", str(port + 1), "--metrics-port", str(port + 2), *extra]
    env = {**os.environ, "CORRAL_LOCK_DIR": tempfile.mkdtemp(), "CORRAL_ONNX_ENGINE": "onnxruntime",
           "CORRAL_AUTOPILOT_INTERVAL": "0.2"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(port, proc, seconds=120)
    return proc


def threads_cpu(pid):
    """Per thread id: its name and its seconds of CPU so far."""
    threads = {}
    for stat in glob.glob(f"/proc/{pid}/task/*/stat"):
        try:
            text = open(stat).read()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        threads[stat.split("/")[4]] = (name, (int(fields[11]) + int(fields[12])) / TICK)
    return threads


def named_cpu(before, after, name):
    """CPU seconds the threads called `name` spent between two readings (a thread that
    started meanwhile counts whole; one that ended meanwhile is lost, and is rare: tokio's
    idle blocking threads end after 10 s)."""
    return sum(cpu - before.get(tid, (name, 0))[1] for tid, (n, cpu) in after.items() if n == name)


def process_cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class Streams:
    """`count` open /dashboard/events streams, each read to the end by a thread."""

    def __init__(self, port, count):
        self.connections, self.threads = [], []
        for _ in range(count):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("GET", "/dashboard/events")
            response = connection.getresponse()
            assert response.status == 200, response.status
            thread = threading.Thread(target=self.drain, args=(response,), daemon=True)
            thread.start()
            self.connections.append(connection)
            self.threads.append(thread)

    @staticmethod
    def drain(response):
        try:
            while response.read1(65536):
                pass
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass

    def close(self):
        for connection in self.connections:
            connection.sock and connection.sock.shutdown(2)
            connection.close()


def idle_cost(port, pid):
    print(f"1. idle cost over {WINDOW:.0f} s each (percent of one CPU)")
    rows = []
    for label, pages in (("0 pages", 0), ("1 page", 1), ("5 pages", 5), ("0 pages, after closing", 0)):
        streams = Streams(port + 2, pages)
        time.sleep(2)  # the producer's first views
        t0, p0, w0 = threads_cpu(pid), process_cpu(pid), time.monotonic()
        time.sleep(WINDOW)
        t1, p1, w1 = threads_cpu(pid), process_cpu(pid), time.monotonic()
        streams.close()
        time.sleep(2)
        wall = w1 - w0
        serve_threads = named_cpu(t0, t1, "corral-serve") / wall * 100
        total = (p1 - p0) / wall * 100
        rows.append((label, pages, total, serve_threads))
        print(f"   {label:24} process {total:6.3f}%   corral-serve threads {serve_threads:6.3f}%")
    base = rows[0][3]
    for label, pages, _, threads in rows[1:3]:
        print(f"   per page ({label}): {(threads - base) / pages:.3f}% of one CPU on the protocol threads")


def perf(port):
    with tempfile.NamedTemporaryFile(suffix=".csv") as out:
        command = [PERF, "-m", "squeezenet", "-u", f"127.0.0.1:{port}", "--input-data", "zero",
                   "--concurrency-range", "16", "--measurement-interval", "4000", "--stability-percentage", "25",
                   "--max-trials", "6", "-f", out.name]
        result = subprocess.run(command, env={**os.environ, "LD_LIBRARY_PATH": CUDART}, capture_output=True, text=True)
        if result.returncode != 0:
            print(result.stdout[-500:], result.stderr[-500:])
            return None
        return float(next(csv.DictReader(open(out.name)))["Inferences/Second"])


def throughput(port):
    print(f"2. c16 squeezenet over HTTP, {ROUNDS} alternating rounds")
    rates = {0: [], 5: []}
    for _ in range(ROUNDS):
        for pages in (0, 5):
            streams = Streams(port + 2, pages)
            time.sleep(1)
            rate = perf(port)
            streams.close()
            if rate is not None:
                rates[pages].append(rate)
    none, five = statistics.median(rates[0]), statistics.median(rates[5])
    print(f"   0 pages {none:.1f}/s, 5 pages {five:.1f}/s (medians of {rates}): 5 / 0 = {five / none:.3f}")


def delay():
    import tritonclient.http as thttp
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    repo = tempfile.mkdtemp()
    os.makedirs(f"{repo}/one")
    with open(f"{repo}/one/config.toml", "w") as f:
        f.write('platform = "sim"\n[sim]\nlatency_ms = 10\n[[input]]\nname = "x"\ndatatype = "FP32"\nshape = [1]\n'
                '[[output]]\nname = "y"\ndatatype = "FP32"\nshape = [1]\n')
    port = 18620
    proc = serve(repo, port, ["--device", "sim:8", "--autopilot"])
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path="/usr/bin/chromedriver"))
    try:
        driver.get(f"http://127.0.0.1:{port + 2}/dashboard")
        moves = lambda: driver.execute_script(
            "return window.corralDashboard.events.filter(e => ['grow','shrink','move'].includes(e.kind))"
            ".map(e => e.shown_ms - e.unix_ms)")
        deadline = time.monotonic() + 300
        while len(moves()) < 10 and time.monotonic() < deadline:
            stop = threading.Event()

            def caller():
                client = thttp.InferenceServerClient(f"127.0.0.1:{port}")
                x = thttp.InferInput("x", [1], "FP32")
                x.set_data_from_numpy(np.ones(1, dtype=np.float32))
                while not stop.is_set():
                    client.infer("one", [x])

            callers = [threading.Thread(target=caller) for _ in range(16)]
            for c in callers:
                c.start()
            time.sleep(4)
            stop.set()
            for c in callers:
                c.join()
            time.sleep(4)  # idle: the autopilot gives the cores back
        delays = moves()
        print(f"3. move to page, {len(delays)} moves: median {statistics.median(delays):.0f} ms, max {max(delays)} ms")
        firefox(port + 2)
    finally:
        driver.quit()
        proc.terminate()
        proc.wait()


def firefox(port):
    binary = shutil.which("firefox-esr")
    if binary is None:
        print("4. Firefox ESR: not installed (bench/dashboard.sh installs Debian's firefox-esr)")
        return
    shot = f"{tempfile.mkdtemp()}/dashboard-firefox.png"
    profile = tempfile.mkdtemp()
    # --screenshot takes the page once it has loaded; the event stream it keeps open does not
    # delay the load event, but the first view arrives a quarter second later.
    result = subprocess.run([binary, "--headless", "--profile", profile, "--window-size=1400,1000", "--screenshot",
                             shot, f"http://127.0.0.1:{port}/dashboard"], capture_output=True, text=True, timeout=120)
    ok = result.returncode == 0 and os.path.exists(shot) and os.path.getsize(shot) > 10000
    print(f"4. Firefox ESR headless screenshot: {'ok' if ok else 'FAILED'} ({shot}, "
          f"{os.path.getsize(shot) if os.path.exists(shot) else 0} bytes){'' if ok else ' ' + result.stderr[-300:]}")


def main():
    repo = tempfile.mkdtemp()
    os.makedirs(f"{repo}/squeezenet/1")
    os.symlink(SQUEEZENET, f"{repo}/squeezenet/1/model.onnx")
    with open(f"{repo}/squeezenet/config.pbtxt", "w") as f:
        f.write(f'platform: "onnxruntime_onnx"\ninstance_group [ {{ count: {len(os.sched_getaffinity(0))} }} ]\n')
    port = 18600
    proc = serve(repo, port, ["--device", "cpu"])
    try:
        idle_cost(port, proc.pid)
        throughput(port)
    finally:
        proc.terminate()
        proc.wait()
    delay()


main()
