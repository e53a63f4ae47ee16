"""System shared memory with tritonclient's own utilities, over HTTP and gRPC, against a
running `corral serve` with the `add` model (x + y, FP32 [3, 4, 5]): register regions,
infer with inputs and outputs in them, status, unregister; a bad offset, a region whose file
shrank or was removed, an unknown region, and CUDA shared memory each get a clear error, and
the server keeps serving. Prints one line per check.

usage: serve_shm.py HTTP_PORT GRPC_PORT
"""

import os
import sys

import numpy as np
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
import tritonclient.utils.shared_memory as shm
from checks import check, fails


http_port, grpc_port = sys.argv[1:3]
x = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
y = np.full((3, 4, 5), 0.5, dtype=np.float32)
size = x.nbytes
pid = os.getpid()

for kind, module, client in (
    ("HTTP", thttp, thttp.InferenceServerClient(f"127.0.0.1:{http_port}")),
    ("gRPC", tgrpc, tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")),
):
    client.unregister_system_shared_memory()
    inputs_key, outputs_key = f"/corral_in_{kind}_{pid}", f"/corral_out_{kind}_{pid}"
    ins = shm.create_shared_memory_region("in", inputs_key, 2 * size)
    outs = shm.create_shared_memory_region("out", outputs_key, size)
    try:
        shm.set_shared_memory_region(ins, [x, y])
        client.register_system_shared_memory("in", inputs_key, 2 * size)
        client.register_system_shared_memory("out", outputs_key, size)
        status = client.get_system_shared_memory_status()
        names = sorted(r["name"] for r in status) if kind == "HTTP" else sorted(status.regions)
        check(f"{kind}: status lists both regions", names == ["in", "out"], status)

        def request(x_offset=0, out_size=size):
            a, b = module.InferInput("x", [3, 4, 5], "FP32"), module.InferInput("y", [3, 4, 5], "FP32")
            a.set_shared_memory("in", size, offset=x_offset)
            b.set_shared_memory("in", size, offset=size)
            out = module.InferRequestedOutput("sum") if kind == "gRPC" else module.InferRequestedOutput("sum", binary_data=True)
            out.set_shared_memory("out", out_size)
            return [a, b], [out]

        def call(**options):
            inputs, outputs = request(**options)
            return client.infer("add", inputs, outputs=outputs)

        result = call()
        written = shm.get_contents_as_numpy(outs, np.float32, [3, 4, 5])
        check(f"{kind}: the answer is in the output region", np.array_equal(written, x + y), written)
        meta = result.get_output("sum")
        if kind == "HTTP":
            check("HTTP: the answer carries no data for it, as Triton's", "data" not in meta and "parameters" not in meta, meta)
        else:
            check("gRPC: the answer names its region", meta.parameters["shared_memory_region"].string_param == "out", meta)

        fails(f"{kind}: an offset past the region", lambda: call(x_offset=size + 4),
              "Invalid offset + byte size for shared memory region: 'in'")
        fails(f"{kind}: an output region too small", lambda: call(out_size=size // 2),
              f"shared memory size specified with the request for output 'sum' ({size // 2} bytes) should be at least 240 bytes to hold the results")
        fails(f"{kind}: an unknown key", lambda: client.register_system_shared_memory("bad", f"/nope_{pid}", 4),
              f"Unable to open shared memory region: '/nope_{pid}'")
        os.truncate(f"/dev/shm{inputs_key}", size)
        fails(f"{kind}: a region whose file shrank", lambda: call(), "shrank")
        shm.destroy_shared_memory_region(ins)
        ins = None
        fails(f"{kind}: a region whose file was removed", lambda: call(), "was removed")
        client.unregister_system_shared_memory("in")
        fails(f"{kind}: an unregistered region", lambda: call(), "Unable to find shared memory region: 'in'")
        fails(f"{kind}: the status of an unregistered region", lambda: client.get_system_shared_memory_status("in"),
              "Unable to find system shared memory region: 'in'")
        client.unregister_system_shared_memory()
        status = client.get_system_shared_memory_status()
        check(f"{kind}: unregister all empties the status", (status == []) if kind == "HTTP" else not status.regions)
        a, b = module.InferInput("x", [3, 4, 5], "FP32"), module.InferInput("y", [3, 4, 5], "FP32")
        a.set_data_from_numpy(x)
        b.set_data_from_numpy(y)
        check(f"{kind}: still serving", np.array_equal(client.infer("add", [a, b]).as_numpy("sum"), x + y))
    finally:
        for region in (ins, outs):
            if region is not None:
                shm.destroy_shared_memory_region(region)
print("all checks passed")
