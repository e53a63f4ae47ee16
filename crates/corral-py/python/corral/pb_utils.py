"""Triton's ``triton_python_backend_utils`` for corral: the names a Triton Python model
(``model.py``) imports, importable in any Python with corral installed, with no server.

``import triton_python_backend_utils as pb_utils`` and ``from corral import pb_utils`` are the
same module. Without a server (under pytest, say) a ``model.py`` and its ``execute`` run as they
are, on requests made by hand:

- ``InferenceRequest(...).get_response_sender()`` records what it is sent: the test reads
  ``sender.responses`` and ``sender.flags`` (a list of ``(response, flags)`` is ``sender.sent``).
- ``Logger`` writes to Python's ``logging`` (logger ``triton_python_backend_utils``).
- ``MetricFamily``/``Metric`` keep their values: ``metric.value()`` reads them back.
- ``InferenceRequest.exec``/``async_exec`` (BLS) and ``load_model``/``unload_model``/
  ``is_model_ready`` go to the server set by :func:`set_server`. A test installs its own (any
  object with ``exec(request, decoupled)`` and, if used, ``load_model``, ``unload_model`` and
  ``is_model_ready``); with none, ``exec`` returns an ``InferenceResponse`` whose
  ``TritonError`` says no server is attached (and ``exec(decoupled=True)`` an iterator over
  that one response), as Triton answers a call it cannot make; the model-control functions
  raise ``TritonModelException`` saying the same.

Names, signatures and codes follow Triton's python_backend (its README is the reference).
"""

import asyncio
import json
import logging

import numpy as np

# Response and request flags (tritonserver.h's values).
TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_START = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_END = 2
TRITONSERVER_REQUEST_RELEASE_ALL = 1
TRITONSERVER_REQUEST_RELEASE_RESCHEDULE = 2

_TRITON_TO_NUMPY = {
    "TYPE_BOOL": np.bool_,
    "TYPE_UINT8": np.uint8,
    "TYPE_UINT16": np.uint16,
    "TYPE_UINT32": np.uint32,
    "TYPE_UINT64": np.uint64,
    "TYPE_INT8": np.int8,
    "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
    "TYPE_STRING": np.object_,
}


def triton_string_to_numpy(triton_type_string):
    """The numpy type of a configuration's ``data_type`` (``TYPE_FP32`` -> ``np.float32``)."""
    return _TRITON_TO_NUMPY[triton_type_string]


def serialize_byte_tensor(input_tensor):
    """A BYTES tensor (numpy object or bytes array) as Triton sends it: each element's length
    (4 bytes, little-endian) then its bytes; ``None`` for an empty tensor."""
    if input_tensor.size == 0:
        return None
    chunks = []
    for item in input_tensor.flatten(order="C"):
        data = item if isinstance(item, bytes) else str(item).encode("utf-8")
        chunks.append(len(data).to_bytes(4, "little"))
        chunks.append(data)
    return np.frombuffer(b"".join(chunks), dtype=np.uint8)


def deserialize_bytes_tensor(encoded_tensor):
    """The elements of a serialized BYTES tensor, as a 1-D numpy object array."""
    data = bytes(encoded_tensor)
    items, at = [], 0
    while at < len(data):
        size = int.from_bytes(data[at:at + 4], "little")
        items.append(data[at + 4:at + 4 + size])
        at += 4 + size
    return np.array(items, dtype=np.object_)


def _parameters_json(parameters):
    """Parameters as ``parameters()`` gives them: JSON text (written when asked, not at every
    request's making, which is on each call's path)."""
    return parameters if isinstance(parameters, str) else json.dumps(parameters or {})


class TritonError:
    """An error a response carries (``InferenceResponse(error=...)``)."""

    UNKNOWN = 0
    INTERNAL = 1
    NOT_FOUND = 2
    INVALID_ARG = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    ALREADY_EXISTS = 6
    CANCELLED = 7

    def __init__(self, message, code=INTERNAL):
        self._message = message
        self._code = code

    def message(self):
        return self._message

    def code(self):
        return self._code

    def __repr__(self):
        return f"TritonError({self._message!r}, code={self._code})"


class TritonModelException(Exception):
    """Raised by ``execute`` (the request fails with its message) and by model control."""

    def __init__(self, msg):
        super().__init__(msg)
        self._msg = msg

    def message(self):
        return self._msg


class Tensor:
    """A named tensor. Inputs handed to ``execute`` are read-only (one tensor may feed several
    steps); outputs are made from any numpy array."""

    def __init__(self, name, data):
        if not isinstance(data, np.ndarray):
            raise TritonModelException(f"tensor '{name}': expected a numpy array, got {type(data).__name__}")
        self._name = name
        self._array = data

    def name(self):
        return self._name

    def as_numpy(self):
        return self._array

    def is_cpu(self):
        return True

    def shape(self):
        return list(self._array.shape)

    def triton_dtype(self):
        return self._array.dtype

    def to_dlpack(self):
        if self._array.dtype == np.object_:
            raise TritonModelException(f"tensor '{self._name}': a BYTES tensor has no DLPack form")
        return self._array.__dlpack__()

    @staticmethod
    def from_dlpack(name, dlpack_tensor):
        """A tensor from a DLPack capsule or any object with ``__dlpack__``."""
        if hasattr(dlpack_tensor, "__dlpack__"):
            return Tensor(name, np.from_dlpack(dlpack_tensor))

        class _Capsule:
            def __init__(self, capsule):
                self.capsule = capsule

            def __dlpack__(self, stream=None):
                return self.capsule

            def __dlpack_device__(self):
                return (1, 0)

        return Tensor(name, np.from_dlpack(_Capsule(dlpack_tensor)))

    def __repr__(self):
        return f"Tensor({self._name!r}, shape={list(self._array.shape)}, dtype={self._array.dtype})"


class InferenceResponse:
    """What ``execute`` returns per request, or a BLS call gives back."""

    def __init__(self, output_tensors=None, error=None, parameters=None):
        self._outputs = list(output_tensors or [])
        self._error = error
        self._parameters = parameters

    def output_tensors(self):
        return self._outputs

    def has_error(self):
        return self._error is not None

    def error(self):
        return self._error

    def parameters(self):
        return _parameters_json(self._parameters)


class InferenceResponseSender:
    """A decoupled model's way of answering: each ``send`` delivers one response; the flag
    ``TRITONSERVER_RESPONSE_COMPLETE_FINAL`` ends the request. Without a server it records."""

    def __init__(self, on_send=None):
        self.sent = []
        self._on_send = on_send
        self._closed = False
        self._cancelled = False

    @property
    def responses(self):
        return [response for response, _ in self.sent if response is not None]

    @property
    def flags(self):
        return [flags for _, flags in self.sent]

    def send(self, response=None, flags=0):
        if self._closed:
            raise TritonModelException("Unable to send response. Response sender has been closed.")
        if response is None and flags != TRITONSERVER_RESPONSE_COMPLETE_FINAL:
            raise TritonModelException("a response sender needs a response or the final flag")
        self.sent.append((response, flags))
        if flags & TRITONSERVER_RESPONSE_COMPLETE_FINAL:
            self._closed = True
        if self._on_send is not None:
            self._on_send(response, flags)

    def is_cancelled(self):
        return self._cancelled


class _NoServer:
    REASON = ("no server is attached to triton_python_backend_utils: BLS calls and model control run "
              "under corral serve (a test installs its own with pb_utils.set_server)")

    def exec(self, request, decoupled):
        response = InferenceResponse(error=TritonError(self.REASON, TritonError.UNAVAILABLE))
        return iter([response]) if decoupled else response

    def load_model(self, model_name, config, files):
        raise TritonModelException(self.REASON)

    def unload_model(self, model_name, unload_dependents):
        raise TritonModelException(self.REASON)

    def is_model_ready(self, model_name, model_version):
        raise TritonModelException(self.REASON)


_server = _NoServer()


def set_server(server):
    """Where BLS calls and model control go: corral's stub sets its channel to the server; a
    test sets its own (``None`` restores the default, which answers that no server is attached)."""
    global _server
    _server = server if server is not None else _NoServer()


class InferenceRequest:
    """A request handed to ``execute``, or one a model makes (BLS) and runs with ``exec``."""

    def __init__(self, model_name=None, inputs=None, requested_output_names=None, correlation_id=0,
                 request_id="", flags=0, timeout=0, preferred_memory=None, trace=None, parameters=None,
                 model_version=-1, response_sender=None):
        self._model_name = model_name
        self._inputs = list(inputs or [])
        self._requested = list(requested_output_names or [])
        self._correlation_id = correlation_id
        self._request_id = request_id
        self._flags = flags
        self._timeout = timeout
        self._model_version = model_version
        self._parameters = parameters
        self._sender = response_sender
        self._cancelled = False

    def inputs(self):
        return self._inputs

    def requested_output_names(self):
        return self._requested

    def request_id(self):
        return self._request_id

    def correlation_id(self):
        return self._correlation_id

    def flags(self):
        return self._flags

    def timeout(self):
        return self._timeout

    def model_name(self):
        return self._model_name

    def model_version(self):
        return self._model_version

    def parameters(self):
        return _parameters_json(self._parameters)

    def is_cancelled(self):
        return self._cancelled

    def get_response_sender(self):
        if self._sender is None:
            self._sender = InferenceResponseSender()
        return self._sender

    def exec(self, decoupled=False):
        """Runs this request on model ``model_name`` (BLS): its response, or with
        ``decoupled=True`` an iterator over its responses. An error is in the response."""
        return _server.exec(self, decoupled)

    async def async_exec(self, decoupled=False):
        """``exec`` awaited: many calls may run at once (``asyncio.gather``)."""
        if hasattr(_server, "async_exec"):
            return await _server.async_exec(self, decoupled)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: _server.exec(self, decoupled))


def get_input_tensor_by_name(inference_request, name):
    """The request's input called ``name``, or ``None``."""
    return next((t for t in inference_request.inputs() if t.name() == name), None)


def get_output_tensor_by_name(inference_response, name):
    """The response's output called ``name``, or ``None``."""
    return next((t for t in inference_response.output_tensors() if t.name() == name), None)


def get_input_config_by_name(model_config, name):
    return next((i for i in model_config.get("input", []) if i["name"] == name), None)


def get_output_config_by_name(model_config, name):
    return next((o for o in model_config.get("output", []) if o["name"] == name), None)


def using_decoupled_model_transaction_policy(model_config):
    return bool(model_config.get("model_transaction_policy", {}).get("decoupled", False))


def load_model(model_name, config="", files=None):
    _server.load_model(model_name, config, files)


def unload_model(model_name, unload_dependents=False):
    _server.unload_model(model_name, unload_dependents)


def is_model_ready(model_name, model_version=""):
    return _server.is_model_ready(model_name, model_version)


class LogLevel:
    INFO = 0
    WARNING = 1
    ERROR = 2
    VERBOSE = 3


class Logger:
    """Triton's model logger; here Python's ``logging`` (corral's stub sends it to the server's
    log, prefixed with the model's name)."""

    _log = logging.getLogger("triton_python_backend_utils")
    _levels = {LogLevel.INFO: logging.INFO, LogLevel.WARNING: logging.WARNING, LogLevel.ERROR: logging.ERROR,
               LogLevel.VERBOSE: logging.DEBUG}

    @staticmethod
    def log(message, level=LogLevel.INFO):
        Logger._log.log(Logger._levels.get(level, logging.INFO), message)

    @staticmethod
    def log_info(message):
        Logger.log(message, LogLevel.INFO)

    @staticmethod
    def log_warn(message):
        Logger.log(message, LogLevel.WARNING)

    @staticmethod
    def log_error(message):
        Logger.log(message, LogLevel.ERROR)

    @staticmethod
    def log_verbose(message):
        Logger.log(message, LogLevel.VERBOSE)


# Where metric changes go besides the metric itself: corral's stub sends each to the server,
# which shows the model's series on its metrics port (None: kept here only, as under pytest).
_metric_sink = None


class Metric:
    """One series of a family (its labels): counters go up, gauges are set, histograms observe."""

    def __init__(self, family, labels, buckets):
        self._family = family
        self.labels = dict(labels or {})
        self.buckets = list(buckets or [])
        self._value = 0.0
        self._counts = [0] * (len(self.buckets) + 1)
        self._sum = 0.0
        self._publish("create", 0.0)

    def _publish(self, change, value):
        if _metric_sink is not None:
            family = self._family
            _metric_sink({"family": family.name, "description": family.description, "kind": family.kind,
                          "labels": [[str(k), str(v)] for k, v in self.labels.items()], "buckets": self.buckets,
                          "change": change, "value": float(value)})

    def increment(self, value):
        if self._family.kind == MetricFamily.COUNTER and value < 0:
            raise TritonModelException("a counter's increment must not be negative")
        if self._family.kind == MetricFamily.HISTOGRAM:
            raise TritonModelException("a histogram observes values; it is not incremented")
        self._value += value
        self._publish("increment", value)

    def set(self, value):
        if self._family.kind != MetricFamily.GAUGE:
            raise TritonModelException("only a gauge is set")
        self._value = value
        self._publish("set", value)

    def observe(self, value):
        if self._family.kind != MetricFamily.HISTOGRAM:
            raise TritonModelException("only a histogram observes values")
        slot = next((i for i, bound in enumerate(self.buckets) if value <= bound), len(self.buckets))
        self._counts[slot] += 1
        self._sum += value
        self._publish("observe", value)

    def value(self):
        if self._family.kind == MetricFamily.HISTOGRAM:
            return {"count": sum(self._counts), "sum": self._sum, "buckets": list(self._counts)}
        return self._value


class MetricFamily:
    """A custom metric family (``nv_``-free names of the model's own)."""

    COUNTER = 0
    GAUGE = 1
    HISTOGRAM = 2
    families = []

    def __init__(self, name, description, kind):
        if kind not in (MetricFamily.COUNTER, MetricFamily.GAUGE, MetricFamily.HISTOGRAM):
            raise TritonModelException(f"metric family '{name}': unknown kind {kind}")
        self.name, self.description, self.kind = name, description, kind
        self.metrics = []
        MetricFamily.families.append(self)

    def Metric(self, labels=None, buckets=None):  # noqa: N802 (Triton's name)
        if self.kind == MetricFamily.HISTOGRAM and not buckets:
            raise TritonModelException(f"metric family '{self.name}': a histogram needs buckets")
        metric = Metric(self, labels, buckets)
        self.metrics.append(metric)
        return metric


class ModelConfig:
    """The configuration ``auto_complete_config`` receives and completes."""

    def __init__(self, model_config):
        self._config = json.loads(model_config) if isinstance(model_config, str) else dict(model_config)
        self._config.setdefault("input", [])
        self._config.setdefault("output", [])
        self._config.setdefault("max_batch_size", 0)

    def as_dict(self):
        return self._config

    def _add(self, kind, tensor):
        for key in ("name", "data_type", "dims"):
            if key not in tensor:
                raise ValueError(f"{kind} '{tensor.get('name', '?')}' in auto-complete-config function for model "
                                 f"'{self._config.get('name', '')}' is missing '{key}' property.")
        existing = next((t for t in self._config[kind] if t["name"] == tensor["name"]), None)
        if existing is None:
            self._config[kind].append(dict(tensor))
            return
        for key in ("data_type", "dims"):
            if key in existing and list(np.atleast_1d(existing[key])) != list(np.atleast_1d(tensor[key])):
                raise ValueError(f"model '{self._config.get('name', '')}': {kind} '{tensor['name']}' has {key} "
                                 f"{existing[key]} in its configuration and {tensor[key]} in auto-complete-config")

    def add_input(self, input):  # noqa: A002 (Triton's name)
        self._add("input", input)

    def add_output(self, output):
        self._add("output", output)

    def set_max_batch_size(self, max_batch_size):
        current = self._config.get("max_batch_size", 0)
        if current not in (0, max_batch_size):
            raise ValueError(f"configuration specified max_batch_size {current}, but in auto-complete-config "
                             f"function for model '{self._config.get('name', '')}' specified max_batch_size "
                             f"{max_batch_size}")
        self._config["max_batch_size"] = max_batch_size

    def set_dynamic_batching(self):
        self._config.setdefault("dynamic_batching", {})

    def set_model_transaction_policy(self, transaction_policy_dict):
        self._config["model_transaction_policy"] = dict(transaction_policy_dict)
