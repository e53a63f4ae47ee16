"""Checks every manifest under deploy/ offline, with the schemas' owners' own code:

- KServe kinds (ServingRuntime, InferenceService) are built field by field into the kserve
  SDK's models (V1alpha1ServingRuntime, V1beta1InferenceService, and the kubernetes client's
  models below them, as the SDK's openapi_types name them): an unknown field, a wrong type or
  a missing required field fails. Their containers are also checked as a Pod's.
- Built-in kinds (Deployment, Service, DaemonSet, Pod) are validated with kubernetes-validate
  against Kubernetes' JSON schemas, strictly (no unknown fields), for an older and the newest
  Kubernetes version the package knows.

Prints one JSON object: the ServingRuntime and InferenceService as parsed (for the Rust test
that runs the runtime's command) and a line per document checked.

usage: deploy_check.py DEPLOY_DIR
"""

import datetime
import glob
import json
import os
import sys

import kserve
import kubernetes.client
import kubernetes_validate
import yaml

OLDEST = "1.30"
PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float)}


def build(data, kind, path):
    """`data` (from YAML) as an instance of the SDK type named `kind`, or an error naming `path`."""
    # The SDKs spell containers both ways: `list[X]` / `dict(str, X)` and `List[X]` / `Dict[str, X]`.
    if kind.startswith(("list[", "List[")):
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a list, found {data!r}")
        return [build(item, kind[5:-1], f"{path}[{i}]") for i, item in enumerate(data)]
    if kind.startswith(("dict(", "Dict[")):
        value_kind = kind[5:-1].split(", ", 1)[1]
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a map, found {data!r}")
        return {k: build(v, value_kind, f"{path}.{k}") for k, v in data.items()}
    if kind == "object":
        return data
    if kind == "datetime":
        if not isinstance(data, (str, datetime.datetime)):
            raise ValueError(f"{path}: expected a time, found {data!r}")
        return data
    if kind in PRIMITIVES:
        if isinstance(data, bool) and kind != "bool" or not isinstance(data, PRIMITIVES[kind]):
            raise ValueError(f"{path}: expected {kind}, found {data!r}")
        return data
    model = getattr(kserve.models, kind, None) or getattr(kubernetes.client.models, kind)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a {kind} object, found {data!r}")
    by_key = {key: attr for attr, key in model.attribute_map.items()}
    unknown = sorted(set(data) - set(by_key))
    if unknown:
        raise ValueError(f"{path}: {kind} has no field {', '.join(unknown)}")
    fields = {by_key[k]: build(v, model.openapi_types[by_key[k]], f"{path}.{k}") for k, v in data.items()}
    try:
        return model(**fields)  # the SDK's own checks: required fields, enums
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def validate(doc, where):
    for version in (OLDEST, kubernetes_validate.latest_version()):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            raise ValueError(f"{where} (Kubernetes {version}): {error.message} at {list(error.path)}") from None
    return f"kubernetes {OLDEST} and {version}, strict"


def as_pod(containers, where):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"}, "spec": {"containers": containers}}
    return validate(pod, where)


def main():
    deploy = sys.argv[1]
    checked, out = [], {}
    for path in sorted(glob.glob(f"{deploy}/**/*.yaml", recursive=True)):
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        for doc in docs:
            where = f"{os.path.relpath(path, deploy)}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            if doc["kind"] == "ServingRuntime":
                runtime = build(doc, "V1alpha1ServingRuntime", where)
                assert runtime.api_version == "serving.kserve.io/v1alpha1", where
                as_pod(doc["spec"]["containers"], where + " containers")
                out["servingruntime"] = doc
                checked.append(f"{where}: kserve.V1alpha1ServingRuntime, containers as a Pod's")
            elif doc["kind"] == "InferenceService":
                service = build(doc, "V1beta1InferenceService", where)
                assert service.api_version == "serving.kserve.io/v1beta1", where
                model = dict(doc["spec"]["predictor"]["model"])
                # The model spec is a container less its name and image (KServe fills them).
                container = {k: v for k, v in model.items() if k in ("resources", "env", "args", "ports")}
                as_pod([{"name": "kserve-container", "image": "placeholder", **container}], where + " model")
                out["inferenceservice"] = doc
                checked.append(f"{where}: kserve.V1beta1InferenceService, model resources as a Pod's")
            else:
                how = validate(doc, where)
                checked.append(f"{where}: {how}")
    out["checked"] = checked
    print(json.dumps(out))


if __name__ == "__main__":
    try:
        main()
    except ValueError as error:
        sys.exit(f"invalid manifest: {error}")
