"""BYTES, FP16, BF16 and the classification extension through `corral serve` with
tritonclient (HTTP binary and JSON, gRPC), on the models of typed_models.py.

usage: serve_typed.py HTTP_PORT GRPC_PORT
"""

import asyncio
import sys

import ml_dtypes
import numpy as np
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from checks import check, fails

http_port, grpc_port = sys.argv[1:3]
http = thttp.InferenceServerClient(f"127.0.0.1:{http_port}")
grpc = tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
ways = [("HTTP binary", thttp, http, True), ("HTTP JSON", thttp, http, False), ("gRPC", tgrpc, grpc, True)]


def call(module, client, binary, model, tensors, outputs=None):
    """Infers `tensors` (name -> (datatype, array)); `outputs` (name -> class_count)."""
    inputs = []
    for name, (datatype, array) in tensors.items():
        i = module.InferInput(name, list(array.shape), datatype)
        if module is thttp:
            i.set_data_from_numpy(array, binary_data=binary)
        else:
            i.set_data_from_numpy(array)
        inputs.append(i)
    wanted = None
    if outputs is not None:
        if module is thttp:
            wanted = [module.InferRequestedOutput(n, binary_data=binary, class_count=k) for n, k in outputs.items()]
        else:
            wanted = [module.InferRequestedOutput(n, class_count=k) for n, k in outputs.items()]
    return client.infer(model, inputs, outputs=wanted)


def as_bytes(array):
    # tritonclient hands JSON strings back as str, binary ones as bytes.
    return [e.encode() if isinstance(e, str) else bytes(e) for e in array.reshape(-1)]


texts = np.array([b"hello", b"", "na\u00efve caf\u00e9".encode(), b"two words", b"x" * 300], dtype=np.object_)
for how, module, client, binary in ways:
    out = call(module, client, binary, "strings", {"TEXT": ("BYTES", texts)}).as_numpy("TEXT_OUT")
    check(f"{how}: a string identity model echoes every element", as_bytes(out) == list(texts), out)
    empty = call(module, client, binary, "strings", {"TEXT": ("BYTES", np.array([], dtype=np.object_))})
    check(f"{how}: no strings in, none out", empty.as_numpy("TEXT_OUT").size == 0)
    numbers = np.array([1, -20, 300], np.int64)
    out = call(module, client, binary, "texts", {"N": ("INT64", numbers)}).as_numpy("TEXT")
    check(f"{how}: a string-output model answers BYTES", as_bytes(out) == [b"1", b"-20", b"300"], out)

halves = np.array([0.5, -2.0, 65504.0, 0.000061035156], np.float16)
brains = np.array([1.0, -0.15625, 3.0e38, 0.0], ml_dtypes.bfloat16)
for how, module, client, binary in ways:
    if binary:
        result = call(module, client, binary, "halves", {"H": ("FP16", halves), "B": ("BF16", brains)})
    else:
        # JSON carries FP16 as numbers; tritonclient sends BF16 in binary only, so it goes beside.
        h = thttp.InferInput("H", [4], "FP16")
        h.set_data_from_numpy(halves, binary_data=False)
        b = thttp.InferInput("B", [4], "BF16")
        b.set_data_from_numpy(brains, binary_data=True)
        outs = [thttp.InferRequestedOutput("H_OUT", binary_data=False), thttp.InferRequestedOutput("B_OUT")]
        result = http.infer("halves", [h, b], outputs=outs)
    h_out, b_out = result.as_numpy("H_OUT"), result.as_numpy("B_OUT")
    check(f"{how}: FP16 round-trips", h_out.dtype == np.float16 and np.array_equal(h_out, halves), h_out)
    check(f"{how}: BF16 round-trips", np.array_equal(b_out.astype(np.float32), brains.astype(np.float32)), b_out)

probs = np.array([[0.1, 0.7, 0.05, 0.9, 0.2], [3.0, 1.0, 2.0, 0.0, -1.0]], np.float32)
for how, module, client, binary in ways:
    result = call(module, client, binary, "classes", {"X": ("FP32", probs)}, outputs={"PROBS": 3})
    classes = result.as_numpy("PROBS")
    want = [[b"0.900000:3:fox", b"0.700000:1:dog", b"0.200000:4:gnu"],
            [b"3.000000:0:cat", b"2.000000:2:emu", b"1.000000:1:dog"]]
    check(f"{how}: class_count 3 gives the labelled top 3 of each row",
          classes.shape == (2, 3) and as_bytes(classes) == [c for row in want for c in row], classes)
    plain = call(module, client, binary, "classes", {"X": ("FP32", probs)}, outputs={"PROBS": 0})
    check(f"{how}: class_count 0 is the tensor itself", np.array_equal(plain.as_numpy("PROBS"), probs))
    fails(f"{how}: classes of a BYTES output are Triton's error",
          lambda: call(module, client, binary, "strings", {"TEXT": ("BYTES", texts)}, outputs={"TEXT_OUT": 2}),
          "class result not available for output due to unsupported type 'BYTES'")

config = http.get_model_config("classes")
check("HTTP config carries label_filename", config["output"][0].get("label_filename") == "labels.txt", config)
check("HTTP config carries the input format", config["input"][0].get("format") == "FORMAT_NONE", config)
gconfig = grpc.get_model_config("classes", as_json=True)["config"]
check("gRPC config carries label_filename", gconfig["output"][0].get("label_filename") == "labels.txt", gconfig)
sconfig = http.get_model_config("strings")
check("a string model's config says TYPE_STRING", sconfig["input"][0]["data_type"] == "TYPE_STRING", sconfig)
check("server metadata lists classification", "classification" in http.get_server_metadata()["extensions"])
meta = http.get_model_metadata("strings")
check("metadata says BYTES", meta["inputs"][0]["datatype"] == "BYTES", meta)



async def with_asyncio():
    """The asyncio clients: a string round trip and labelled classes, over HTTP and gRPC."""
    import tritonclient.grpc.aio as agrpc
    import tritonclient.http.aio as ahttp

    for how, module, client in (
        ("asyncio HTTP", ahttp, ahttp.InferenceServerClient(f"127.0.0.1:{http_port}")),
        ("asyncio gRPC", agrpc, agrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")),
    ):
        text = module.InferInput("TEXT", [len(texts)], "BYTES")
        text.set_data_from_numpy(texts)
        out = (await client.infer("strings", [text])).as_numpy("TEXT_OUT")
        check(f"{how}: strings echo", as_bytes(out) == list(texts), out)
        x = module.InferInput("X", list(probs.shape), "FP32")
        x.set_data_from_numpy(probs)
        wanted = [module.InferRequestedOutput("PROBS", class_count=1)]
        classes = (await client.infer("classes", [x], outputs=wanted)).as_numpy("PROBS")
        check(f"{how}: top class of each row", as_bytes(classes) == [b"0.900000:3:fox", b"3.000000:0:cat"], classes)
        await client.close()


asyncio.run(with_asyncio())

# Triton's string examples: an element with a NUL inside, and binary blobs, echo exactly.
blobs = np.array([b"he\x00llo", b"\x00\x01\x02\x03", b"\xff\xfe not UTF-8", b""], dtype=np.object_)
for how, module, client, binary in ways:
    if not binary:
        # JSON carries text: the UTF-8 elements, NULs included.
        sent = blobs[:2]
    else:
        sent = blobs
    out = call(module, client, binary, "strings", {"TEXT": ("BYTES", sent)}).as_numpy("TEXT_OUT")
    check(f"{how}: NULs and binary blobs echo byte for byte", as_bytes(out) == list(sent), out)
fails("model control is off: load is refused in Triton's words", lambda: http.load_model("strings"),
      "explicit model load / unload is not allowed if polling is enabled")
try:
    grpc.unload_model("strings")
    check("gRPC unload with control off fails", False)
except Exception as e:  # noqa: BLE001
    check("gRPC unload with control off: UNAVAILABLE", "UNAVAILABLE" in str(e.status()), e)
print("all checks passed")
