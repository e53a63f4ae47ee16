"""UINT16, UINT32 and UINT64 tensors through `corral serve` with tritonclient: HTTP binary and
JSON, and gRPC, each value at its type's extremes coming back unchanged.

usage: serve_unsigned.py HTTP_PORT GRPC_PORT
"""

import sys

import numpy as np
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from checks import check

http_port, grpc_port = sys.argv[1:3]
values = {
    "U16": np.array([0, 1, 40000, 65535], np.uint16),
    "U32": np.array([0, 1, 3_000_000_000, 4_294_967_295], np.uint32),
    "U64": np.array([0, 1, 2**63 + 5, 2**64 - 1], np.uint64),
}
kind = {np.uint16: "UINT16", np.uint32: "UINT32", np.uint64: "UINT64"}
for protocol, module, client in (
    ("HTTP", thttp, thttp.InferenceServerClient(f"127.0.0.1:{http_port}")),
    ("gRPC", tgrpc, tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")),
):
    for binary in ((True, False) if protocol == "HTTP" else (True,)):
        inputs = []
        for name, v in values.items():
            i = module.InferInput(name, [4], kind[v.dtype.type])
            if protocol == "HTTP":
                i.set_data_from_numpy(v, binary_data=binary)
            else:
                i.set_data_from_numpy(v)
            inputs.append(i)
        result = client.infer("unsigned", inputs)
        for name, v in values.items():
            got = result.as_numpy(f"{name}_OUT")
            how = f"{protocol} {'binary' if binary else 'JSON'}"
            check(f"{how}: {name} round-trips", got is not None and got.dtype == v.dtype and np.array_equal(got, v), got)
meta = thttp.InferenceServerClient(f"127.0.0.1:{http_port}").get_model_metadata("unsigned")
check("metadata names the types", [i["datatype"] for i in meta["inputs"]] == ["UINT16", "UINT32", "UINT64"], meta)
print("all checks passed")
