"""corral's Python stub: one process per instance of a Triton Python model (``model.py``),
started by the server's Python engine (crates/corral-engine-python) on the instance's cores.

It needs Python >= 3.10 and numpy only: the engine writes this file and
``triton_python_backend_utils.py`` into a private folder and puts that folder first on
``PYTHONPATH``. It talks to the server over file descriptor 3, a Unix socket, in frames: a
4-byte little-endian header length, a JSON header, then the tensors' bytes back to back (sizes
in the header; numbers little-endian, BYTES elements each a 4-byte length and its bytes, as
KServe's binary tensors). ``model.py``'s stdout and stderr are the server's log, never the
channel. The stub ends when the channel closes (the server ended), or at ``finalize``.

usage: python _stub.py serve MODEL_PY             (fd 3: the channel)
       python _stub.py auto-complete MODEL_PY OUT  (stdin: the configuration as JSON)
"""

import asyncio
import importlib.util
import inspect
import itertools
import json
import logging
import mmap
import os
import queue
import socket
import struct
import sys
import threading
import traceback

import numpy as np

import triton_python_backend_utils as pb_utils

PROTOCOL = "corral-stub/1"
_KSERVE = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
    "FP32": np.float32, "FP64": np.float64,
}
_DTYPES = {k: np.dtype(v) for k, v in _KSERVE.items()}
_NUMPY = {v: k for k, v in _DTYPES.items()}


def where(error):
    """`file:line: last line of the traceback`, the line in model.py when there is one."""
    last = traceback.format_exception_only(type(error), error)[-1].strip()
    if isinstance(error, SyntaxError) and error.filename:
        return f"{error.filename}:{error.lineno}: {last}"
    frames = traceback.extract_tb(error.__traceback__)
    frame = next((f for f in reversed(frames) if f.filename.endswith("model.py")), frames[-1] if frames else None)
    return f"{frame.filename}:{frame.lineno}: {last}" if frame else last


def load(model_py):
    spec = importlib.util.spec_from_file_location("model", model_py)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.dirname(os.path.abspath(model_py)))
    spec.loader.exec_module(module)
    if not hasattr(module, "TritonPythonModel"):
        raise AttributeError(f"{model_py} defines no class TritonPythonModel")
    return module.TritonPythonModel


def auto_complete(model_py, out):
    config = json.loads(sys.stdin.read())
    try:
        cls = load(model_py)
        completed = pb_utils.ModelConfig(config)
        if hasattr(cls, "auto_complete_config"):
            completed = cls.auto_complete_config(completed)
        result = {"config": completed.as_dict()}
    except BaseException as error:  # every failure is the load's reason
        result = {"error": where(error)}
    with open(out, "w") as f:
        json.dump(result, f)


class Channel:
    """The channel to the server. Frames from the server are read under one lock by whoever
    waits for one (the main loop for its next request, a BLS call for its answers) and routed:
    ``answer`` frames to the call of their id, the rest to the main loop. Writes are whole
    frames under another lock, so BLS calls may come from any thread."""

    def __init__(self, fd):
        self.sock = socket.socket(fileno=fd)
        self.reading = threading.Lock()
        self.writing = threading.Lock()
        self.ops = queue.SimpleQueue()
        self.buffer, self.start, self.end = bytearray(1 << 16), 0, 0
        self.calls = {}
        self.ids = itertools.count(1)

    def read_exactly(self, n):
        """`n` bytes: from what the last receive brought first (one receive usually brings a
        whole frame), then straight from the socket."""
        if self.end - self.start >= n:  # the usual case: one slice
            start = self.start
            self.start = start + n
            return self.buffer[start:start + n]
        view = bytearray(n)
        got = min(n, self.end - self.start)
        if got:
            view[:got] = self.buffer[self.start:self.start + got]
            self.start += got
        if got == n:
            return view
        if n - got < len(self.buffer):
            while got < n:
                self.start, self.end = 0, self.sock.recv_into(self.buffer)
                if self.end == 0:
                    raise EOFError
                take = min(n - got, self.end)
                view[got:got + take] = self.buffer[:take]
                self.start, got = take, got + take
            return view
        while got < n:
            chunk = self.sock.recv_into(memoryview(view)[got:], n - got)
            if chunk == 0:
                raise EOFError
            got += chunk
        return view

    def read(self):
        (size,) = struct.unpack("<I", self.read_exactly(4))
        header = json.loads(self.read_exactly(size))
        # A tensor in the shared buffer (`at`) has no bytes on the socket.
        payloads = [None if "at" in t else self.read_exactly(t["bytes"]) for t in header.get("tensors", [])]
        return header, payloads

    def write(self, header, payloads=()):
        data = json.dumps(header).encode()
        with self.writing:
            self.sock.sendall(struct.pack("<I", len(data)) + data)
            for payload in payloads:
                if payload is not None:
                    self.sock.sendall(payload)

    def pump(self, box):
        """The next frame for ``box`` (the main loop's or a call's), reading and routing the
        server's frames until one comes. The server gone ends the stub: nobody is left to answer."""
        while True:
            if not box.empty():
                return box.get()
            with self.reading:
                if not box.empty():
                    continue
                try:
                    header, payloads = self.read()
                except (EOFError, ConnectionError):
                    os._exit(0)
                # Routed before the lock goes: a waiter that takes it next finds its frame.
                target = self.calls.get(header.get("id")) if header.get("op") == "answer" else self.ops
                if target is box:  # its own (the box was empty): no queue between
                    return header, payloads
                if target is not None:  # else a call nobody waits for any more
                    target.put((header, payloads))

    def next_op(self):
        return self.pump(self.ops)

    def call(self, header, payloads, op="call"):
        """Sends one BLS call (or model control): its id and the box its answers arrive in."""
        call_id = next(self.ids)
        box = self.calls[call_id] = queue.SimpleQueue()
        self.write(dict(header, op=op, id=call_id), payloads)
        return call_id, box


class Server:
    """BLS calls from ``model.py`` (``pb_utils.set_server``), to the server over the channel."""

    def __init__(self, channel):
        self.channel = channel
        self.area = CallArea()

    def send(self, request, decoupled):
        # Under HANDED's lock until the frame is written: see Handed.
        with HANDED.lock:
            return self.write_call(request, decoupled)

    def write_call(self, request, decoupled):
        encoded = [from_tensor(t, self.area) for t in request.inputs()]
        version = request.model_version()
        name = request.model_name() or ""
        header = {
            # Triton takes a name as bytes too (an input tensor's element, say).
            "model": name.decode() if isinstance(name, bytes) else str(name),
            "version": "" if version is None or int(version) < 0 else str(version),
            "request_id": request.request_id() or "",
            "outputs": list(request.requested_output_names()),
            "correlation_id": request.correlation_id(),
            "flags": request.flags(),
            "decoupled": decoupled,
            "tensors": [h for h, _ in encoded],
        }
        return self.channel.call(header, [p for _, p in encoded])

    def answers(self, call_id, box):
        """The call's responses as they come, the last with ``final`` set."""
        try:
            while True:
                header, payloads = self.channel.pump(box)
                if "error" in header:
                    code = getattr(pb_utils.TritonError, header.get("code") or "INTERNAL", pb_utils.TritonError.INTERNAL)
                    response = pb_utils.InferenceResponse(error=pb_utils.TritonError(header["error"], code))
                else:
                    tensors = [to_tensor(s, p) for s, p in zip(header.get("tensors", []), payloads)]
                    response = pb_utils.InferenceResponse(tensors)
                yield response, bool(header.get("final"))
                if header.get("final"):
                    return
        finally:
            self.channel.calls.pop(call_id, None)

    def control(self, fields, files=()):
        """One model-control request to the server (``op: control``), waited for: its answer."""
        encoded = [from_tensor(t) for t in files]
        header = dict(fields, tensors=[h for h, _ in encoded])
        call_id, box = self.channel.call(header, [p for _, p in encoded], op="control")
        try:
            answer, _ = self.channel.pump(box)
        finally:
            self.channel.calls.pop(call_id, None)
        return answer

    # The model loading API, in python_backend's words (model_loader.cc): explicit model
    # control mode only, as the repository API.
    def load_model(self, model_name, config, files):
        if files is not None and not isinstance(files, dict):
            raise pb_utils.TritonModelException(
                f"failed to load model '{model_name}', files should be a dictionary of file paths and file contents")
        tensors = [pb_utils.Tensor(key, np.frombuffer(bytes(content), dtype=np.uint8))
                   for key, content in (files or {}).items()]
        answer = self.control({"what": "load", "model": model_name, "config": config or ""}, tensors)
        if "error" in answer:
            raise pb_utils.TritonModelException(f"Failed to load model: {answer['error']}")

    def unload_model(self, model_name, unload_dependents):
        answer = self.control({"what": "unload", "model": model_name, "dependents": bool(unload_dependents)})
        if "error" in answer:
            raise pb_utils.TritonModelException(f"Failed to unload model: {answer['error']}")

    def is_model_ready(self, model_name, model_version):
        version = str(model_version or "")
        try:
            if version and int(version) < 0:
                raise pb_utils.TritonModelException(
                    f"Failed to check model readiness: failed to get model version from specified version string "
                    f"'{version}', version should be an integral value > 0")
        except ValueError:
            raise pb_utils.TritonModelException(
                f"Failed to check model readiness: failed to get model version from specified version string "
                f"'{version}' (details: stol), version should be an integral value > 0") from None
        answer = self.control({"what": "ready", "model": model_name, "version": version})
        if "error" in answer:
            raise pb_utils.TritonModelException(f"Failed to check model readiness: {answer['error']}")
        return bool(answer.get("ready"))

    def exec(self, request, decoupled):
        answers = self.answers(*self.send(request, decoupled))
        if decoupled:
            return (response for response, _ in answers)
        responses = [response for response, _ in answers]
        return responses[0]

    async def async_exec(self, request, decoupled):
        answers = self.answers(*self.send(request, decoupled))  # sent now; waited for below
        loop = asyncio.get_running_loop()
        if decoupled:
            return iter(await loop.run_in_executor(None, lambda: [r for r, _ in answers]))
        return (await loop.run_in_executor(None, lambda: [r for r, _ in answers]))[0]


# The shared buffer the server made (a memfd on descriptor 4, fixed in size): an execute's
# inputs in its first half, its outputs in the second.
SHARED = None


class Handed:
    """The running execute's input arrays that lie in the shared buffer, by ``id`` (alive
    meanwhile: its requests hold them) to offset: an output or a BLS call's input that is one
    of them is named where it lies, no copy. They are valid until the next execute's inputs
    overwrite them, so the table is emptied under ``lock`` before the execute's answer is
    written, and a BLS call looks it up and writes its frame under the same lock: the server
    reads every frame naming them before it writes the next inputs."""

    def __init__(self):
        self.lock = threading.Lock()
        self.offsets = {}

    def start(self, specs, tensors):
        self.offsets = {id(t.as_numpy()): s["at"] for s, t in zip(specs, tensors) if "at" in s}
        return self.offsets

    def end(self):
        with self.lock:
            self.offsets = {}


HANDED = Handed()


def to_tensor(spec, payload):
    datatype = spec["datatype"]
    if datatype == "BYTES":
        array = pb_utils.deserialize_bytes_tensor(bytes(payload))
    elif "at" in spec:
        # In place in the shared buffer: valid until the next execute.
        dtype = _DTYPES[datatype]
        array = np.frombuffer(SHARED, dtype=dtype, count=spec["bytes"] // dtype.itemsize, offset=spec["at"])
    else:
        array = np.frombuffer(payload, dtype=_DTYPES[datatype])
    array = array.reshape(spec["shape"])
    # Read-only: one tensor may feed several steps.
    array.flags.writeable = False
    return pb_utils.Tensor(spec["name"], array)


class Outputs:
    """Places an answer's numeric outputs in the shared buffer's third quarter while they fit
    (the second half is the stub's to write: outputs, then BLS calls' inputs). An output that
    is one of the execute's input arrays (a model handing its input on) is named where it lies:
    no copy. ``inputs``: the offsets of those arrays (``Handed``)."""

    def __init__(self, inputs=None):
        self.next = len(SHARED) // 2 if SHARED is not None else None
        self.inputs = inputs or {}

    def place(self, array):
        if self.next is None:
            return None
        at = self.inputs.get(id(array))
        if at is not None:
            return at
        if self.next + array.nbytes > len(SHARED) * 3 // 4:
            return None
        at = self.next
        target = np.frombuffer(SHARED, dtype=array.dtype.newbyteorder("<"), count=array.size, offset=at)
        np.copyto(target.reshape(array.shape), array)
        self.next = (at + array.nbytes + 63) // 64 * 64
        return at


class CallArea:
    """Places BLS calls' numeric inputs in the shared buffer's last quarter, a ring: the server
    copies a call's tensors out as it reads the call's frame, before later calls come round."""

    def __init__(self):
        self.lock = threading.Lock()
        self.next = None

    def place(self, array):
        if SHARED is None:
            return None
        at = HANDED.offsets.get(id(array))  # the caller holds HANDED.lock
        if at is not None:
            return at
        start, end = len(SHARED) * 3 // 4, len(SHARED)
        if array.nbytes > end - start:
            return None
        with self.lock:
            at = self.next if self.next is not None and self.next + array.nbytes <= end else start
            self.next = (at + array.nbytes + 63) // 64 * 64
        target = np.frombuffer(SHARED, dtype=array.dtype.newbyteorder("<"), count=array.size, offset=at)
        np.copyto(target.reshape(array.shape), array)
        return at


def from_tensor(tensor, outputs=None):
    array = tensor.as_numpy()
    if array.dtype == np.object_ or array.dtype.kind in "SU":
        wire = pb_utils.serialize_byte_tensor(array.astype(np.object_))
        payload = b"" if wire is None else wire.tobytes()
        datatype = "BYTES"
    else:
        datatype = _NUMPY.get(array.dtype)
        if datatype is None:
            raise pb_utils.TritonModelException(f"output '{tensor.name()}': numpy type {array.dtype} has no Triton type")
        at = outputs.place(array) if outputs is not None else None
        if at is not None:
            return {"name": tensor.name(), "datatype": datatype, "shape": list(array.shape), "bytes": array.nbytes,
                    "at": at}, None
        little = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False)
        payload = memoryview(little).cast("B") if little.size else b""
    return {"name": tensor.name(), "datatype": datatype, "shape": list(array.shape), "bytes": len(payload)}, payload


class ResponseSender(pb_utils.InferenceResponseSender):
    """A decoupled request's sender: each ``send`` is a ``response`` frame to the server at
    once (from any thread, before or after ``execute`` returns), tagged with its request's
    execute number (``seq``) so that a late one never reaches another request; nothing is kept."""

    def __init__(self, channel, wanted, seq):
        super().__init__()
        self._channel = channel
        self._wanted = wanted
        self._seq = seq

    def send(self, response=None, flags=0):
        if self._closed:
            raise pb_utils.TritonModelException("Unable to send response. Response sender has been closed.")
        final = bool(flags & pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        if response is None and not final:
            raise pb_utils.TritonModelException("a response sender needs a response or the final flag")
        if final:
            self._closed = True
        tag = {"op": "response", "final": final, "seq": self._seq}
        if response is None:
            self._channel.write(dict(tag, empty=True))
        elif response.has_error():
            error = response.error()
            self._channel.write(dict(tag, error=error.message(), code=error.code()))
        else:
            outputs = response.output_tensors()
            if self._wanted:
                outputs = [t for t in outputs if t.name() in self._wanted]
            encoded = [from_tensor(t) for t in outputs]
            self._channel.write(dict(tag, tensors=[h for h, _ in encoded]), [p for _, p in encoded])


def serve(model_py):
    channel = Channel(3)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")
    hello, _ = channel.next_op()
    if hello.get("protocol") != PROTOCOL:
        channel.write({"error": f"this stub speaks {PROTOCOL}, the server {hello.get('protocol')}: "
                                f"corral {hello.get('corral')} and its stub differ"})
        return
    # Custom metrics' changes go to the server as they happen (its metrics port shows them).
    pb_utils._metric_sink = lambda change: channel.write(dict(change, op="metric"))
    global SHARED
    if hello.get("shared"):
        SHARED = mmap.mmap(4, hello["shared"])
    # Before initialize, which may ask for model control (the server answers readiness there).
    pb_utils.set_server(Server(channel))
    try:
        model = load(model_py)()
        if hasattr(model, "initialize"):
            model.initialize(hello["args"])
    except BaseException as error:
        channel.write({"error": where(error)})
        return
    channel.write({"ok": True, "pid": os.getpid()})
    loop = asyncio.new_event_loop()
    while True:
        header, payloads = channel.next_op()  # the server gone ends the stub
        if header["op"] == "finalize":
            if hasattr(model, "finalize"):
                model.finalize()
            channel.write({"ok": True})
            break
        if header.get("decoupled"):
            executed(channel, model, header, payloads, hello, loop)
            continue
        try:
            specs = header.get("tensors", [])
            tensors = [to_tensor(s, p) for s, p in zip(specs, payloads)]
            handed = HANDED.start(specs, tensors)
            # A dynamic batch of several calls: each a request of its own (its rows, viewed in
            # place), as Triton's batcher hands them; one call: one request.
            parts = header.get("parts") or [None]
            requests, start = [], 0
            for rows in parts:
                mine = tensors if rows is None else [
                    pb_utils.Tensor(t.name(), t.as_numpy()[start:start + rows]) for t in tensors]
                start += rows or 0
                requests.append(request_of(header, mine, hello))
            responses = model.execute(requests)
            if type(responses) is not list and inspect.isawaitable(responses):
                responses = loop.run_until_complete(responses)
            HANDED.end()  # before any answer: BLS calls made later copy their inputs
            if responses is None or len(responses) != len(requests):
                count = "None" if responses is None else len(responses)
                raise pb_utils.TritonModelException(
                    f"Number of InferenceResponse objects do not match the number of InferenceRequest objects "
                    f"({len(requests)} requests, {count} responses)")
            good = [r for r in responses if not r.has_error()]
            if len(responses) == 1 and not good:
                error = responses[0].error()
                channel.write({"error": error.message(), "code": error.code()})
                continue
            # A batch: a request's error response fails that request alone (`failed`, one entry
            # per request); the others' outputs follow, their rows in order.
            answer = {}
            if len(good) < len(responses):
                answer["failed"] = [r.error().message() if r.has_error() else None for r in responses]
            wanted = header.get("outputs", [])
            outputs = [t for t in good[0].output_tensors() if not wanted or t.name() in wanted] if good else []
            if len(good) > 1:
                outputs = [pb_utils.Tensor(t.name(), np.concatenate(
                    [pb_utils.get_output_tensor_by_name(r, t.name()).as_numpy() for r in good]))
                    for t in outputs]
            placed = Outputs(handed)
            encoded = [from_tensor(t, placed) for t in outputs]
            answer["tensors"] = [h for h, _ in encoded]
            channel.write(answer, [p for _, p in encoded])
        except BaseException as error:
            HANDED.end()
            message = error.message() if isinstance(error, pb_utils.TritonModelException) else where(error)
            channel.write({"error": message})


def request_of(header, inputs, hello, sender=None):
    """The request an execute frame describes, with `inputs`."""
    return pb_utils.InferenceRequest(
        inputs=inputs,
        requested_output_names=header.get("outputs", []),
        request_id=header.get("id", ""),
        correlation_id=header.get("correlation_id", 0),
        flags=header.get("flags", 0),
        model_name=hello["args"]["model_name"],
        response_sender=sender,
    )


def executed(channel, model, header, payloads, hello, loop):
    """A decoupled model's request: its sender writes the responses; ``executed`` then says
    ``execute`` returned (with its error when it raised or returned responses)."""
    wanted = header.get("outputs", [])
    seq = header.get("seq", 0)
    sender = ResponseSender(channel, wanted, seq)
    try:
        inputs = [to_tensor(s, p) for s, p in zip(header.get("tensors", []), payloads)]
        request = request_of(header, inputs, hello, sender)
        returned = model.execute([request])
        if inspect.isawaitable(returned):
            returned = loop.run_until_complete(returned)
        if returned is not None:
            # python_backend's words (pb_stub.cc).
            raise pb_utils.TritonModelException(
                f"Python model '{hello['args']['model_name']}' is using the decoupled mode and the execute "
                "function must return None.")
        channel.write({"op": "executed", "seq": seq})
    except BaseException as error:
        # The request ends with this error: what its threads send later goes nowhere.
        sender._closed = True
        message = error.message() if isinstance(error, pb_utils.TritonModelException) else where(error)
        channel.write({"op": "executed", "seq": seq, "error": message})


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2])
    elif sys.argv[1] == "auto-complete":
        auto_complete(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown mode {sys.argv[1]}")
