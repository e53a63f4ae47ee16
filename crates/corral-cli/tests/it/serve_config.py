"""config.pbtxt read as Triton reads it, seen through tritonclient (HTTP and gRPC, the
blocking clients and the asyncio ones):

- READY declared as `bool_false_true: [ 0, 1 ]` (Triton's generators' form) and as
  `int32_false_true: [ 0, 1 ]`: each sequence request sees READY true, so the model answers the
  sum (a reader that took `1` for false answered 0);
- configurations with an unknown field or a value of the wrong type fail their load, naming
  the line and column in protobuf's words, while the rest of the repository serves;
- the configuration endpoints echo what was read, completed as Triton completes it.

usage: serve_config.py HTTP_PORT GRPC_PORT
"""

import asyncio
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

http_port, grpc_port = sys.argv[1], sys.argv[2]


def check(what, ok, detail=""):
    if not ok:
        raise SystemExit(f"FAILED: {what} {detail}")
    print(f"ok: {what}")


for name, module, client in [
    ("http", httpclient, httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")),
    ("grpc", grpcclient, grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")),
]:
    check(f"{name}: the server is ready though two configurations failed", client.is_server_ready())
    for model, sequence in [("ready_bool", 7), ("ready_int", 8)]:
        inputs = []
        for input_name, value in [("INPUT0", 2), ("INPUT1", 3)]:
            tensor = module.InferInput(input_name, [1], "INT32")
            tensor.set_data_from_numpy(np.array([value], dtype=np.int32))
            inputs.append(tensor)
        for start in (True, False):
            result = client.infer(model, inputs, sequence_id=sequence, sequence_start=start)
            got = result.as_numpy("OUTPUT").tolist()
            check(f"{name}: {model} sees READY true and answers the sum", got == [5], got)
    index = client.get_model_repository_index()
    if name == "grpc":
        index = [{"name": m.name, "state": m.state, "reason": m.reason} for m in index.models]
    entries = {entry["name"]: entry for entry in index}
    for model, says in [
        ("typo", '4:16: Message type "inference.ModelConfig" has no field named "max_batch_sizee".'),
        ("wrong_type", '2:17: Expected integer, got: "8"'),
    ]:
        entry = entries[model]
        reason = entry.get("reason", "")
        check(f"{name}: {model} is unavailable", entry.get("state") == "UNAVAILABLE", entry)
        check(f"{name}: {model}'s reason is Triton's with protobuf's detail", "failed to read text proto from " in reason and says in reason, reason)
    check(f"{name}: the others are ready", all(entries[m].get("state") == "READY" for m in ("ready_bool", "ready_int")), entries)

http = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
config = http.get_model_config("ready_bool")
control = config["sequence_batching"]["control_input"]
ready = [c for c in control if c["name"] == "READY"][0]["control"][0]
check("REST config echoes bool_false_true as read", ready["bool_false_true"] == [False, True], ready)
check("REST config names the control kind", ready["kind"] == "CONTROL_SEQUENCE_READY", ready)
check("REST config keeps the idle time as a number", config["sequence_batching"]["max_sequence_idle_microseconds"] == 5000000, config)
check("REST config keeps parameters as read", config["parameters"]["note"] == {"string_value": "as written"}, config["parameters"])
check("REST config adds corral's live parameters", config["parameters"]["corral.cores"] == {"string_value": "1"}, config["parameters"])
check("REST config completes the version policy", config["version_policy"] == {"latest": {"num_versions": 1}}, config)
check("REST config completes the instance group", config["instance_group"][0]["name"] == "ready_bool" and config["instance_group"][0]["kind"] == "KIND_CPU" and config["instance_group"][0]["count"] == 1, config["instance_group"])
check("REST config prints defaults", config["max_batch_size"] == 0 and config["input"][0]["is_shape_tensor"] is False, config)
check("REST config names the input's format", config["input"][0]["format"] == "FORMAT_NONE", config["input"])

grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
message = grpc.get_model_config("ready_bool").config
control = [c for c in message.sequence_batching.control_input if c.name == "READY"][0].control[0]
check("gRPC config carries the same bools", list(control.bool_false_true) == [False, True], control)
check("gRPC config carries the same parameters", message.parameters["note"].string_value == "as written", message.parameters)
check("gRPC config and REST config agree on the name and platform", (message.name, message.platform) == (config["name"], config["platform"]), message)


async def with_asyncio():
    """The asyncio clients: the READY sum, the failed loads' reasons and the echoed bools."""
    import tritonclient.grpc.aio as agrpc
    import tritonclient.http.aio as ahttp

    for how, module, client in (
        ("asyncio HTTP", ahttp, ahttp.InferenceServerClient(f"127.0.0.1:{http_port}")),
        ("asyncio gRPC", agrpc, agrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")),
    ):
        inputs = []
        for input_name, value in [("INPUT0", 4), ("INPUT1", 5)]:
            tensor = module.InferInput(input_name, [1], "INT32")
            tensor.set_data_from_numpy(np.array([value], dtype=np.int32))
            inputs.append(tensor)
        for start in (True, False):
            result = await client.infer("ready_bool", inputs, sequence_id=9, sequence_start=start)
            got = result.as_numpy("OUTPUT").tolist()
            check(f"{how}: ready_bool sees READY true and answers the sum", got == [9], got)
        index = await client.get_model_repository_index()
        if how == "asyncio gRPC":
            index = [{"name": m.name, "state": m.state, "reason": m.reason} for m in index.models]
        reason = {entry["name"]: entry for entry in index}["typo"].get("reason", "")
        check(f"{how}: typo's reason names the line and column", '4:16: Message type "inference.ModelConfig" has no field named "max_batch_sizee".' in reason, reason)
        config = await client.get_model_config("ready_bool")
        if how == "asyncio gRPC":
            control = [c for c in config.config.sequence_batching.control_input if c.name == "READY"][0].control[0]
            bools = list(control.bool_false_true)
        else:
            control = [c for c in config["sequence_batching"]["control_input"] if c["name"] == "READY"][0]["control"][0]
            bools = control["bool_false_true"]
        check(f"{how}: config echoes bool_false_true as read", bools == [False, True], control)
        await client.close()


asyncio.run(with_asyncio())
print("all checks passed")
