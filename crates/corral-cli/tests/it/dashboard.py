"""The live page (`/dashboard` on the metrics port) in a real Chromium, through Selenium and
Debian's chromedriver, on the real `cpu` device:

1. `corral reserve` holds one core and `corral serve --autopilot` the other: the page loads
   with no console error and shows the reserving process's pid and command, the server's
   model and every core of the device (`corral ls` says how many).
2. Both stop; a new `corral serve --autopilot` starts on the same ports and takes every core:
   the open page reconnects and shows the new server, without a reload (a `window` marker
   survives).
3. tritonclient load makes the autopilot grow the model: the page shows the second instance
   and the move on its time line, still without a reload, within a wall-clock deadline; the
   server counts exactly one open event stream meanwhile.
4. 16 streams at once at most: with the page and 15 more open, the next is refused 503 in
   words; closed, the count falls back to the page's one.

usage: dashboard.py CORRAL LOCK_DIR REPOSITORY [SCREENSHOT.png]
"""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import tritonclient.http as thttp
from browser import chromium, console_errors

corral, lock_dir, repository = sys.argv[1:4]
screenshot = sys.argv[4] if len(sys.argv) > 4 else None
DEADLINE_S = 30

env = {k: v for k, v in os.environ.items() if not k.startswith(("CORRAL_", "NEURON"))}
env.update(CORRAL_LOCK_DIR=lock_dir, CORRAL_ONNX_ENGINE="onnxruntime", CORRAL_AUTOPILOT_INTERVAL="0.2")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
children = []


def start(args):
    child = subprocess.Popen([corral, *args], env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    children.append(child)
    return child


def serve(extra):
    child = start(["serve", "--model-repository", repository, "--device", "cpu", "--autopilot",
                   "--http-port", str(http_port), "--grpc-port", str(grpc_port),
                   "--metrics-port", str(metrics_port), *extra])
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        assert child.poll() is None, f"corral serve exited: {child.stderr.read()}"
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/health/ready", timeout=2).status == 200:
                return child
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("corral serve not ready in time")


def stop(child):
    child.send_signal(signal.SIGTERM)
    child.wait(timeout=DEADLINE_S)


def until(what, check):
    """Waits (wall clock, DEADLINE_S at most) for `check()` to be true; returns the seconds."""
    began = time.monotonic()
    while time.monotonic() - began < DEADLINE_S:
        if check():
            return time.monotonic() - began
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {DEADLINE_S} s; page status: {page_status()}")


def pages_open():
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    return int(re.search(r"^corral_dashboard_pages (\d+)$", text, re.M).group(1))


ls = json.loads(subprocess.run([corral, "ls", "--device", "cpu", "--json"], env=env, check=True,
                               capture_output=True, text=True).stdout)
device_cores = len(ls["cores"])
assert device_cores >= 2, f"the test needs 2 cores on cpu, the device has {device_cores}"

driver = None
try:
    reserve = start(["reserve", "--json", "--device", "cpu", "--num-cores", "1"])
    held = json.loads(reserve.stdout.readline())
    first = serve(["--num-cores", "1"])

    driver = chromium()
    driver.set_page_load_timeout(DEADLINE_S)
    driver.set_script_timeout(DEADLINE_S)
    js = driver.execute_script

    def page_status():
        return js("const s = document.getElementById('status'); return s && s.textContent;")

    def page_rows(selector):
        return js(f"return [...document.querySelectorAll({json.dumps(selector)})].map(e => e.textContent);")

    driver.get(f"http://127.0.0.1:{metrics_port}/dashboard")
    until("the page goes live", lambda: js("return document.getElementById('status').dataset.state") == "live")
    until("the page shows the server's pid", lambda: js("return document.getElementById('server-pid').textContent") == str(first.pid))
    reserve_row = page_rows(f"#processes tr[data-pid='{held['pid']}'] td.command")
    assert reserve_row and "corral reserve" in reserve_row[0], reserve_row
    assert page_rows(f"#processes tr[data-pid='{held['pid']}'] td.num")[0].startswith(str(held["pid"]))
    held_core = held["cores"][0]
    assert js(f"return document.querySelector(\".core[data-core='{held_core}']\").dataset.ownerPid") == str(held["pid"])
    assert len(page_rows(".core")) == device_cores, page_rows(".core")
    assert page_rows("#models tr[data-model='one'] td")[0] == "one"
    errors = console_errors(driver)
    assert errors == [], errors
    js("window.corralMarker = 'kept';")
    print(f"phase 1: page shows reserve pid {held['pid']} on nc{held_core}, {device_cores} cores, model one")

    # 2: a restart on the same ports, with every core; the page reconnects by itself.
    reserve.send_signal(signal.SIGTERM)
    reserve.wait(timeout=DEADLINE_S)
    stop(first)
    second = serve([])
    took = until("the page reconnects to the new server",
                 lambda: js("return document.getElementById('server-pid').textContent") == str(second.pid))
    assert js("return window.corralMarker") == "kept", "the page was reloaded"
    assert js("return window.corralDashboard.connects") == 2
    # While no server listened, the page's retries were refused: the only errors allowed.
    errors = console_errors(driver, allowed=["ERR_CONNECTION_REFUSED"])
    assert errors == [], errors
    print(f"phase 2: reconnected to pid {second.pid} in {took:.1f} s")

    # 3: load grows the model onto the second core.
    assert js("return document.querySelector(\"#models tr[data-model='one']\").dataset.instances") == "1"
    stop_load = threading.Event()
    calls, failures = [0], []

    def caller():
        client = thttp.InferenceServerClient(f"127.0.0.1:{http_port}")
        x = thttp.InferInput("x", [1], "FP32")
        x.set_data_from_numpy(np.ones(1, dtype=np.float32))
        while not stop_load.is_set():
            try:
                client.infer("one", [x])
                calls[0] += 1
            except Exception as e:  # every failure is a finding
                failures.append(repr(e))

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        took = until("the page shows the autopilot's second instance",
                     lambda: js("return document.querySelector(\"#models tr[data-model='one']\").dataset.instances") == "2")
        until("the page's time line shows the grow", lambda: bool(page_rows("#events li[data-kind='grow']")))
    finally:
        stop_load.set()
        for t in threads:
            t.join()
    assert failures == [], failures[:3]
    assert calls[0] > 0
    assert js("return window.corralMarker") == "kept", "the page was reloaded"
    assert pages_open() == 1, pages_open()
    grow = page_rows("#events li[data-kind='grow']")[0]
    assert "one@1" in grow and "autopilot: grow" in grow, grow
    print(f"phase 3: the grow shown {took:.1f} s after the load began: {grow}")
    if screenshot:
        driver.save_screenshot(screenshot)

    # 4: 16 event streams at most.
    streams = []
    for _ in range(15):
        connection = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=10)
        connection.request("GET", "/dashboard/events")
        response = connection.getresponse()
        assert response.status == 200, response.status
        streams.append(connection)
    connection = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=10)
    connection.request("GET", "/dashboard/events")
    refused = connection.getresponse()
    words = refused.read().decode()
    assert refused.status == 503 and "16 dashboard pages are open" in words, (refused.status, words)
    for connection in streams:
        connection.close()
    until("the closed streams leave the count", lambda: pages_open() == 1)
    errors = console_errors(driver)
    assert errors == [], errors
    print("phase 4: the 17th stream refused 503:", words.splitlines()[0])
    print("dashboard checks passed")
finally:
    if driver is not None:
        driver.quit()
    for child in children:
        if child.poll() is None:
            child.kill()
            child.wait()
