"""What the client scripts of tests/it share: a check that prints one line and stops the
script at the first failure, a check that a call fails with a given message, and a plain
HTTP call."""

import os
import sys
import urllib.error
import urllib.request

from tritonclient.utils import InferenceServerException


def check(what, ok, detail=""):
    if not ok:
        print(f"FAILED: {what} {detail}", flush=True)
        sys.stderr.flush()
        # Not sys.exit: a client thread still waiting on an open stream would keep the
        # interpreter from ending.
        os._exit(1)
    print(f"ok: {what}", flush=True)


def fails(what, call, text, starts=False):
    """`call()` must raise tritonclient's error whose message contains `text` (or, with
    `starts`, begins with it)."""
    try:
        call()
        check(what, False, "no error")
    except InferenceServerException as e:
        message = e.message()
        found = message.startswith(text) if starts else text in message
        check(f"{what}: {message[:100]}", found, message)


def raw_http(address, method, path, body=None, headers=None):
    """(status, body bytes) of a plain HTTP call to `address` (host:port), errors included."""
    request = urllib.request.Request(f"http://{address}{path}", data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
