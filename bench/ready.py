"""Waiting for a `corral serve` child to be ready, shared by the benchmark scripts (no
imports with side effects, so any of them can use it)."""

import sys
import time
import urllib.request


def wait_ready(port, proc, seconds=60):
    """Until the server on 127.0.0.1:`port` answers ready; exits naming the reason when
    `proc` ends first or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited: {proc.args}")
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready").status == 200:
                return
        except Exception:
            pass
        time.sleep(0.1)
    sys.exit(f"server never ready in {seconds} s: {proc.args}")
