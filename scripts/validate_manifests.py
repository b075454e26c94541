#!/usr/bin/env python3
"""Offline validation of the Kubernetes, Istio and Envoy Gateway manifests (`make validate-manifests`).

What is checked, per YAML document under kubernetes/ and istio/:

* Kubernetes kinds: strict schema validation for Kubernetes 1.33 with PyPI
  `kubernetes-validate` (`-k 1.33.0 --strict`: unknown fields are errors). A kind it has
  no schema for is an error.
* Custom resources: JSON Schema validation of the whole document against the
  openAPIV3Schema of the published CRD (scripts/schemas/: Istio 1.30.3 for `*.istio.io`,
  Envoy Gateway v1.9.0 for `gateway.envoyproxy.io`, the Gateway API v1.6.1 it bundles for
  `gateway.networking.k8s.io`), made strict: every object schema that lists `properties`
  and does not say `x-kubernetes-preserve-unknown-fields` gets `additionalProperties:
  false`, as the API server's strict field validation would reject unknown fields.
  `metadata` is checked against Kubernetes 1.33's ObjectMeta. Of the CRDs' CEL rules
  (`x-kubernetes-validations`), which only an API server evaluates, the two shapes these
  manifests depend on are evaluated here (a union: `self.f == 'V' ? has(self.g) :
  !has(self.g)`; allowed target kinds and groups: `has(self.targetRefs) ?
  self.targetRefs.all(ref, ref.kind in [...]) : true`); the others are not.
* What `kubectl apply -f istio/` and `kubectl apply -f kubernetes/envoy-gateway/` read
  (every *.yaml, *.yml and *.json directly in the directory, not in subdirectories): each
  document a complete resource (apiVersion, kind, metadata.name). Patches live in
  istio/patches/, the CRD schemas in scripts/schemas/.
* Envoy configurations inside ConfigMaps (`data.envoy.yaml`): `envoy --mode validate`
  with the module path (/etc/envoy/wasm/plugin.wasm) mapped to the local build
  (target/wasm32-wasip1/release/ewma_balancer.wasm). STRICT_DNS names are not resolved
  in validate mode.
* The EnvoyFilter's CLUSTER patches: each patch value merged into a cluster shaped like
  the one Istio generates by default (lb_policy LEAST_REQUEST, common_lb_config, circuit
  breakers), then `envoy --mode validate`.
* The filter's configuration: the WasmPlugin's pluginConfig, the EnvoyExtensionPolicy's
  config and the ConfigMap's plugin configuration name exactly the fields of
  filter/src/config.rs (`FIELDS`) and are equal.
* The filter's image: every manifest names the one image `make image` pushes
  (registry.example.com/ewma-balancer/filter:<filter crate version>; WasmPlugin url,
  EnvoyExtensionPolicy image url, image volume reference); a sha256 is 64 lowercase hex
  digits (what istiod and Envoy Gateway compare with the image manifest's digest).
* istio/patches/proxy-config.yaml (a Deployment patch) is merged into a Deployment and
  validated; the meshed clients' annotations must equal its annotations (plus
  holdApplicationUntilProxyStarts); sidecar.istio.io/statsEvictionInterval is a multiple
  of the stats flush interval (istio-agent drops it otherwise).

`--self-test` breaks copies of the manifests on purpose (an unknown field in a Deployment,
a bad enum in the WasmPlugin, an unknown field in an Istio or Envoy Gateway spec, a CEL
rule broken, a typo in the Envoy config, an unknown pluginConfig field, a bad EnvoyFilter
patch, the patch among the applied files, another image name, …) and fails unless every
broken copy is rejected, so the validator cannot pass vacuously.

Exit status 0 when everything passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import jsonschema
import kubernetes_validate
import yaml

sys.dont_write_bytecode = True  # no scripts/__pycache__ from the import below
from build_image import REPOSITORY, crate_version  # noqa: E402  (scripts/build_image.py)

ROOT = Path(__file__).resolve().parent.parent
K8S_VERSION = "1.33.0"
MANIFEST_DIRS = [ROOT / "kubernetes", ROOT / "istio"]
# Directories whose README or manifests say `kubectl apply -f <dir>/`.
APPLY_DIRS = [ROOT / "istio", ROOT / "kubernetes" / "envoy-gateway"]
# The file extensions kubectl reads from a directory (-f dir, without -R).
KUBECTL_EXTENSIONS = (".yaml", ".yml", ".json")
SCHEMA_ROOT = ROOT / "scripts" / "schemas"
# CRD schema directory and source, by API group (suffix).
CRD_SCHEMAS = [
    (".istio.io", SCHEMA_ROOT / "istio", "Istio 1.30.3"),
    ("gateway.envoyproxy.io", SCHEMA_ROOT / "envoy-gateway", "Envoy Gateway v1.9.0"),
    ("gateway.networking.k8s.io", SCHEMA_ROOT / "gateway-api", "Gateway API v1.6.1 (Envoy Gateway v1.9.0)"),
]
PATCH_DIR = ROOT / "istio" / "patches"
PROXY_CONFIG = PATCH_DIR / "proxy-config.yaml"
IMAGE_SHA256 = ROOT / "target" / "image" / "sha256.txt"
# Istio's default stats flush interval (ProxyConfig statsFlushInterval, annotation
# sidecar.istio.io/statsFlushInterval); the eviction interval must be a multiple of it.
STATS_FLUSH_INTERVAL_S = 5
WASM_IN_POD = "/etc/envoy/wasm/plugin.wasm"
WASM_LOCAL = ROOT / "target" / "wasm32-wasip1" / "release" / "ewma_balancer.wasm"
CONFIG_RS = ROOT / "filter" / "src" / "config.rs"


class Failure(Exception):
    """One check failed; the message says which and why."""


# ---------------------------------------------------------------- loading


def manifest_files() -> list[Path]:
    """Every manifest and patch (patches are loaded too: checked apart, see is_patch)."""
    files = []
    for directory in MANIFEST_DIRS:
        files.extend(path for path in sorted(directory.rglob("*")) if path.suffix in KUBECTL_EXTENSIONS)
    return files


def is_patch(path: Path) -> bool:
    return PATCH_DIR in path.parents


def load_documents(path: Path) -> list[dict]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def describe(doc: dict) -> str:
    return f"{doc.get('kind', '?')}/{doc.get('metadata', {}).get('name', '?')}"


# ---------------------------------------------------------------- Kubernetes


def validate_kubernetes(doc: dict) -> None:
    if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
        raise Failure("not a Kubernetes resource: apiVersion and kind are required")
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = "/".join(str(p) for p in error.path)
        raise Failure(f"Kubernetes {K8S_VERSION} schema: {path}: {error.message}") from None
    except kubernetes_validate.SchemaNotFoundError as error:
        raise Failure(f"no Kubernetes {K8S_VERSION} schema: {error}") from None


def object_meta_schema() -> dict:
    """Kubernetes 1.33's strict ObjectMeta schema, as shipped by kubernetes-validate."""
    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    path = base / f"v{K8S_VERSION}-local-strict" / "objectmeta-meta-v1.json"
    with path.open() as f:
        return json.load(f)


# ---------------------------------------------------------------- custom resources


def strict(schema: Any) -> Any:
    """Copy of an openAPIV3Schema where objects with listed properties refuse others."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_source(doc: dict) -> tuple[Path, str] | None:
    """(schema directory, source) for a custom resource's API group, None for core kinds."""
    group = doc.get("apiVersion", "").partition("/")[0]
    for suffix, directory, source in CRD_SCHEMAS:
        if group.endswith(suffix):
            return directory, source
    return None


def crd_schema(doc: dict) -> tuple[dict, dict, str]:
    """(schema, its strict copy, file name) for a custom resource."""
    group, _, version = doc.get("apiVersion", "").partition("/")
    kind = doc.get("kind", "")
    directory, _ = crd_source(doc)
    path = directory / f"{kind.lower()}.{group}_{version}.json"
    if not path.exists():
        raise Failure(f"no CRD schema for {doc.get('apiVersion')} {kind} ({path.relative_to(ROOT)})")
    return (*load_crd_schema(path), path.name)


@functools.lru_cache(maxsize=None)
def load_crd_schema(path: Path) -> tuple[dict, dict]:
    """Read once per run (the self-test validates every document some 30 times)."""
    with path.open() as f:
        schema = json.load(f)
    schema.pop("x-source", None)
    return schema, strict(schema)


# The two shapes of CEL rule these manifests depend on (see the module docstring).
UNION_RULE = re.compile(r"^self\.(\w+) == '([^']*)' \? has\(self\.(\w+)\) : !has\(self\.\3\)$")
TARGETS_RULE = re.compile(
    r"^has\(self\.(targetRefs?)\) \? (?:self\.targetRefs\.all\(ref, ref\.(kind|group) (?:in \[([^\]]*)\]|== '([^']*)')\)"
    r"|self\.targetRef\.(kind|group) (?:in \[([^\]]*)\]|== '([^']*)')) : true$")


def cel_failures(value: Any, schema: dict, where: str = "") -> list[str]:
    """Evaluates the CEL rules of the recognised shapes on `value`, recursively."""
    failures = []
    if isinstance(value, dict):
        for rule in schema.get("x-kubernetes-validations", []):
            text = rule.get("rule", "").strip()
            ok = True
            if union := UNION_RULE.match(text):
                field, wanted, member = union.groups()
                ok = (member in value) == (value.get(field) == wanted)
            elif targets := TARGETS_RULE.match(text):
                many, attr_many, in_many, eq_many, attr_one, in_one, eq_one = targets.groups()
                refs = value.get(many, []) if many == "targetRefs" else [value[many]] if many in value else []
                attr, allowed, equal = (attr_many, in_many, eq_many) if attr_many else (attr_one, in_one, eq_one)
                names = re.findall(r"'([^']*)'", allowed) if allowed is not None else [equal]
                ok = all(ref.get(attr) in names for ref in refs)
            if not ok:
                failures.append(f"{where or '/'}: CEL rule {text!r}: {rule.get('message', '')}")
        for key, child in value.items():
            child_schema = schema.get("properties", {}).get(key)
            if isinstance(child_schema, dict):
                failures += cel_failures(child, child_schema, f"{where}/{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            failures += cel_failures(item, schema["items"], f"{where}/{i}")
    return failures


def validate_custom_resource(doc: dict, meta_schema: dict) -> None:
    schema, strict_schema, name = crd_schema(doc)
    body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
    errors = sorted(
        jsonschema.Draft7Validator(strict_schema).iter_errors(body), key=lambda e: list(e.path)
    )
    if errors:
        first = errors[0]
        path = "/".join(str(p) for p in first.absolute_path)
        raise Failure(f"{name}: {path}: {first.message}")
    cel = cel_failures(body, schema)
    if cel:
        raise Failure(f"{name}: {cel[0]}")
    meta_errors = list(jsonschema.Draft7Validator(meta_schema).iter_errors(doc.get("metadata", {})))
    if meta_errors:
        raise Failure(f"metadata: {meta_errors[0].message}")
    if "name" not in doc.get("metadata", {}):
        raise Failure("metadata: name is required")


# ---------------------------------------------------------------- Envoy


def envoy_bin() -> Path:
    path = Path(os.environ.get("ENVOY_BIN") or ROOT / ".venv" / "envoy")
    if not path.is_file():
        raise Failure(f"no Envoy binary at {path}: run `make venv` or set ENVOY_BIN")
    return path


def envoy_validate(config_text: str, label: str) -> None:
    """`envoy --mode validate`; a config text already accepted in this run is not run again."""
    if config_text in ENVOY_ACCEPTED:
        return
    if WASM_IN_POD in config_text and not WASM_LOCAL.is_file():
        raise Failure(f"{WASM_LOCAL} is missing: run `make wasm` first")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(config_text.replace(WASM_IN_POD, str(WASM_LOCAL)))
        path = f.name
    try:
        result = subprocess.run(
            [str(envoy_bin()), "--mode", "validate", "-c", path,
             "--base-id", str(os.getpid() % 100000 + 7), "--log-level", "error"],
            capture_output=True, text=True, timeout=120, cwd=ROOT,
        )
    finally:
        os.unlink(path)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        raise Failure(f"envoy --mode validate rejects {label}: " + " | ".join(output[-6:]))
    ENVOY_ACCEPTED.add(config_text)


# Config texts Envoy accepted in this run (the module file does not change during a run).
ENVOY_ACCEPTED: set[str] = set()


def istio_like_bootstrap(cluster_patch: dict) -> str:
    """A bootstrap with one cluster shaped like Istio's outbound clusters, patched."""
    cluster = {
        "name": "outbound|8000||greeter-server-istio.default.svc.cluster.local",
        "type": "STATIC",
        "connect_timeout": "10s",
        "lb_policy": "LEAST_REQUEST",
        # Istio adds locality_weighted_lb_config only for locality failover/distribute
        # settings (or ENABLE_LOCALITY_WEIGHTED_LB_CONFIG); Envoy refuses it next to
        # load_balancing_policy. See docs/deployment.md.
        "common_lb_config": {"healthy_panic_threshold": {"value": 50}},
        "circuit_breakers": {"thresholds": [{"max_connections": 4294967295,
                                             "max_pending_requests": 4294967295,
                                             "max_requests": 4294967295,
                                             "max_retries": 4294967295}]},
        "load_assignment": {
            "cluster_name": "outbound|8000||greeter-server-istio.default.svc.cluster.local",
            "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 8000}}}},
                {"endpoint": {"address": {"socket_address": {"address": "10.0.0.2", "port_value": 8000}}}},
            ]}],
        },
    }
    merge(cluster, cluster_patch)
    return yaml.safe_dump({"static_resources": {"clusters": [cluster]}})


def istio_like_listener(http_filter_patch: dict, operation: str, anchor: str | None = None) -> str:
    """A bootstrap with an outbound HTTP listener shaped like a sidecar's (a Wasm filter
    where Istio puts a WasmPlugin's, then the router), the patch applied as Istio would:
    INSERT_FIRST at the head of the chain, INSERT_BEFORE ahead of the filter named
    `anchor` (the patch's match.listener.filterChain.filter.subFilter.name)."""
    wasm = {"name": "extensions.istio.io/wasmplugin/default.ewma-balancer",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                             "config": {"name": "ewma-balancer",
                                        "vm_config": {"runtime": "envoy.wasm.runtime.v8",
                                                      "code": {"local": {"filename": WASM_IN_POD}}}}}}
    router = {"name": "envoy.filters.http.router",
              "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
    filters = [wasm, router]
    if operation == "INSERT_FIRST":
        filters.insert(0, copy.deepcopy(http_filter_patch))
    elif operation == "INSERT_BEFORE":
        at = next((i for i, f in enumerate(filters) if f["name"] == anchor), None)
        if at is None:
            raise Failure(f"INSERT_BEFORE anchor {anchor!r} is not a filter of the sidecar's chain "
                          f"({', '.join(f['name'] for f in filters)}): the patch would do nothing")
        filters.insert(at, copy.deepcopy(http_filter_patch))
    else:
        raise Failure(f"HTTP_FILTER patch operation {operation} is not checked here")
    hcm = {"name": "envoy.filters.network.http_connection_manager",
           "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "outbound_0.0.0.0_8000",
                            "route_config": {"name": "8000", "virtual_hosts": [
                                {"name": "greeter", "domains": ["*"],
                                 "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "greeter"}}]}]},
                            "http_filters": filters}}
    listener = {"name": "0.0.0.0_8000",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 18000}},
                "filter_chains": [{"filters": [hcm]}]}
    cluster = {"name": "greeter", "type": "STATIC", "connect_timeout": "1s",
               "load_assignment": {"cluster_name": "greeter", "endpoints": []}}
    return yaml.safe_dump({"static_resources": {"listeners": [listener], "clusters": [cluster]}})


def merge(base: dict, patch: dict) -> None:
    """Envoy/Istio MERGE semantics, enough for these patches: maps merge, lists append."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        elif isinstance(value, list) and isinstance(base.get(key), list):
            base[key] = base[key] + value
        else:
            base[key] = copy.deepcopy(value)


# ---------------------------------------------------------------- the filter's config


def filter_fields() -> list[str]:
    text = CONFIG_RS.read_text()
    match = re.search(r"pub const FIELDS: \[&str; \d+\] = \[(.*?)\];", text, re.S)
    if not match:
        raise Failure(f"cannot find FIELDS in {CONFIG_RS}")
    return re.findall(r'"([A-Za-z]+)"', match.group(1))


def plugin_configs(docs: list[tuple[Path, dict]]) -> list[tuple[str, dict]]:
    """(where, config) for every WasmPlugin pluginConfig, EnvoyExtensionPolicy Wasm config
    and ConfigMap plugin config."""
    found = []
    for path, doc in docs:
        if doc.get("kind") == "WasmPlugin":
            found.append((f"{path.name} {describe(doc)}", doc.get("spec", {}).get("pluginConfig", {})))
        if doc.get("kind") == "EnvoyExtensionPolicy":
            for i, wasm in enumerate(doc.get("spec", {}).get("wasm", [])):
                found.append((f"{path.name} {describe(doc)} wasm[{i}]", wasm.get("config", {})))
        if doc.get("kind") == "ConfigMap" and "envoy.yaml" in doc.get("data", {}):
            bootstrap = yaml.safe_load(doc["data"]["envoy.yaml"])
            for listener in bootstrap.get("static_resources", {}).get("listeners", []):
                for chain in listener.get("filter_chains", []):
                    for net_filter in chain.get("filters", []):
                        hcm = net_filter.get("typed_config", {})
                        for http_filter in hcm.get("http_filters", []):
                            if http_filter.get("name") == "envoy.filters.http.wasm":
                                value = http_filter["typed_config"]["config"]["configuration"]["value"]
                                found.append((f"{path.name} {describe(doc)}", json.loads(value)))
    return found


def check_plugin_configs(docs: list[tuple[Path, dict]]) -> list[str]:
    fields = filter_fields()
    configs = plugin_configs(docs)
    if len(configs) < 3:
        raise Failure(f"expected the WasmPlugin's, the EnvoyExtensionPolicy's and the ConfigMap's plugin config, found {len(configs)}")
    for where, config in configs:
        if list(config) != fields:
            raise Failure(f"{where}: plugin config fields {list(config)} != filter/src/config.rs FIELDS {fields}")
    first_where, first = configs[0]
    for where, config in configs[1:]:
        if config != first:
            raise Failure(f"{where}: plugin config differs from {first_where}")
    return [where for where, _ in configs]


# ---------------------------------------------------------------- proxy config


def duration_seconds(text: str) -> float:
    """A Go duration as istio-agent parses annotations (`60s`, `1m30s`, `500ms`)."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise Failure(f"{text!r} is not a duration like 60s")
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


def check_proxy_config(docs: list[tuple[Path, dict]]) -> None:
    patches = [doc for path, doc in docs if path == PROXY_CONFIG]
    if len(patches) != 1:
        raise Failure(f"{PROXY_CONFIG.relative_to(ROOT)}: expected one document, found {len(patches)}")
    patch = patches[0]
    annotations = patch["spec"]["template"]["metadata"]["annotations"]
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "client"},
        "spec": {"selector": {"matchLabels": {"app": "client"}},
                 "template": {"metadata": {"labels": {"app": "client"}},
                              "spec": {"containers": [{"name": "client", "image": "client"}]}}},
    }
    merge(deployment, patch)
    validate_kubernetes(deployment)
    eviction = annotations.get("sidecar.istio.io/statsEvictionInterval")
    if eviction is not None:
        flush = duration_seconds(annotations.get("sidecar.istio.io/statsFlushInterval", f"{STATS_FLUSH_INTERVAL_S}s"))
        if duration_seconds(eviction) % flush != 0:
            raise Failure(f"sidecar.istio.io/statsEvictionInterval {eviction} is not a multiple of the stats "
                          f"flush interval ({flush:g}s): istio-agent would leave it out")
    expected_config = yaml.safe_load(annotations["proxy.istio.io/config"])
    meshed = [(p, d) for p, d in docs
              if d.get("kind") == "Deployment"
              and d["spec"]["template"]["metadata"].get("labels", {}).get("ewma-balancer") == "enabled"]
    if not meshed:
        raise Failure("no Deployment labelled ewma-balancer: enabled")
    source = PROXY_CONFIG.relative_to(ROOT)
    for path, doc in meshed:
        got = doc["spec"]["template"]["metadata"].get("annotations", {})
        got_config = yaml.safe_load(got.get("proxy.istio.io/config", "{}")) or {}
        got_config.pop("holdApplicationUntilProxyStarts", None)
        if got_config != expected_config:
            raise Failure(f"{path.name} {describe(doc)}: proxy.istio.io/config differs from {source}")
        for key, value in annotations.items():
            if key != "proxy.istio.io/config" and got.get(key) != value:
                raise Failure(f"{path.name} {describe(doc)}: annotation {key} differs from {source}")


# ---------------------------------------------------------------- what kubectl apply -f <dir> reads


def check_apply_sets(docs: list[tuple[Path, dict]]) -> list[str]:
    """Every document kubectl would read from an APPLY_DIRS directory is a complete resource."""
    checked = []
    for directory in APPLY_DIRS:
        applied = [(path, doc) for path, doc in docs
                   if path.parent == directory and path.suffix in KUBECTL_EXTENSIONS]
        if not applied:
            raise Failure(f"kubectl apply -f {directory.relative_to(ROOT)}/ would read nothing")
        for path, doc in applied:
            missing = [key for key in ("apiVersion", "kind") if not doc.get(key)]
            if not (doc.get("metadata") or {}).get("name"):
                missing.append("metadata.name")
            if missing:
                raise Failure(f"kubectl apply -f {directory.relative_to(ROOT)}/ reads {path.name}, which is "
                              f"not a complete resource (no {', '.join(missing)}): move patches to "
                              f"{PATCH_DIR.relative_to(ROOT)}/, data out of the directory")
        names = sorted({f"{path.name}" for path, _ in applied})
        checked.append(f"{directory.relative_to(ROOT)}/: {', '.join(names)}")
    return checked


# ---------------------------------------------------------------- the filter's image


def check_image_names(docs: list[tuple[Path, dict]]) -> list[str]:
    """One image name everywhere, and sha256 values in the form istiod and Envoy Gateway take."""
    expected = f"{REPOSITORY}:{crate_version()}"
    refs, sha256s = [], []
    for path, doc in docs:
        where = f"{path.name} {describe(doc)}"
        spec = doc.get("spec", {}) or {}
        if doc.get("kind") == "WasmPlugin":
            refs.append((where, spec.get("url", "").removeprefix("oci://")))
            if "sha256" in spec:
                sha256s.append((where, spec["sha256"]))
        if doc.get("kind") == "EnvoyExtensionPolicy":
            for wasm in spec.get("wasm", []):
                image = wasm.get("code", {}).get("image")
                if image:
                    refs.append((where, image.get("url", "").removeprefix("oci://")))
                    if "sha256" in image:
                        sha256s.append((where, image["sha256"]))
        if doc.get("kind") == "Deployment":
            for volume in spec.get("template", {}).get("spec", {}).get("volumes", []):
                if "image" in volume:
                    refs.append((f"{where} volume {volume.get('name')}", volume["image"].get("reference", "")))
    if len(refs) < 3:
        raise Failure(f"expected the filter image in the WasmPlugin, the EnvoyExtensionPolicy and the image volume, found {len(refs)}")
    for where, ref in refs:
        if ref != expected:
            raise Failure(f"{where}: image {ref!r}, expected {expected!r} (the one `make image` prints)")
    built = IMAGE_SHA256.read_text().strip() if IMAGE_SHA256.is_file() else None
    for where, value in sha256s:
        if not re.fullmatch(r"[a-f0-9]{64}", str(value)):
            raise Failure(f"{where}: sha256 {value!r} is not 64 lowercase hex digits (the manifest digest without sha256:)")
        if built and value != built:
            print(f"note  {where}: sha256 is not the local build's ({built}, {IMAGE_SHA256.relative_to(ROOT)}): "
                  "put the digest of the image you push")
    return [where for where, _ in refs]


# ---------------------------------------------------------------- one document


def check_document(doc: dict, meta_schema: dict) -> list[str]:
    """Validates one document; returns what was checked."""
    checked = []
    if crd := crd_source(doc):
        validate_custom_resource(doc, meta_schema)
        checked.append(f"{crd[1]} CRD schema")
    else:
        validate_kubernetes(doc)
        checked.append(f"Kubernetes {K8S_VERSION} strict")
    if doc.get("kind") == "ConfigMap" and "envoy.yaml" in doc.get("data", {}):
        envoy_validate(doc["data"]["envoy.yaml"], describe(doc))
        checked.append("envoy --mode validate")
    if doc.get("kind") == "EnvoyFilter":
        for i, patch in enumerate(doc["spec"].get("configPatches", [])):
            if patch.get("applyTo") == "CLUSTER":
                envoy_validate(istio_like_bootstrap(patch["patch"]["value"]),
                               f"{describe(doc)} configPatches[{i}] merged into an Istio-like cluster")
            elif patch.get("applyTo") == "HTTP_FILTER":
                anchor = (patch.get("match", {}).get("listener", {}).get("filterChain", {})
                          .get("filter", {}).get("subFilter", {}).get("name"))
                envoy_validate(istio_like_listener(patch["patch"]["value"], patch["patch"]["operation"], anchor),
                               f"{describe(doc)} configPatches[{i}] inserted into an Istio-like listener")
        checked.append("CLUSTER and HTTP_FILTER patches: envoy --mode validate")
    return checked


def validate_all(docs: list[tuple[Path, dict]]) -> list[str]:
    """Every check; returns the failures (empty: all passed)."""
    failures = []
    meta_schema = object_meta_schema()
    for path, doc in docs:
        where = f"{path.relative_to(ROOT)} {describe(doc)}"
        if is_patch(path):
            continue  # a patch, not a resource: check_proxy_config checks it
        try:
            checked = check_document(doc, meta_schema)
            print(f"ok    {where}: {', '.join(checked)}")
        except Failure as failure:
            failures.append(f"{where}: {failure}")
            print(f"FAIL  {where}: {failure}")
    for label, check, says in [
        ("plugin configs", check_plugin_configs, "equal, fields = filter/src/config.rs FIELDS"),
        ("proxy config", check_proxy_config, ""),
        ("kubectl apply -f <dir>/", check_apply_sets, "complete resources"),
        ("filter image", check_image_names, f"name {REPOSITORY}:{crate_version()}"),
    ]:
        try:
            result = check(docs)
            print(f"ok    {label}" + (f": {'; '.join(result)}: {says}" if result else ""))
        except Failure as failure:
            failures.append(f"{label}: {failure}")
            print(f"FAIL  {label}: {failure}")
    return failures


# ---------------------------------------------------------------- self-test


def find(docs: list[tuple[Path, dict]], kind: str, name: str | None = None) -> int:
    for i, (_, doc) in enumerate(docs):
        if doc.get("kind") == kind and (name is None or doc["metadata"]["name"] == name):
            return i
    raise Failure(f"self-test: no {kind} {name or ''} in the manifests")


def breakages(docs: list[tuple[Path, dict]]) -> list[tuple]:
    """(label, break it[, a fragment the rejection must contain])."""
    def deployment_unknown_field(d):
        d[find(d, "Deployment", "greeter-server")][1]["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"

    def service_bad_type(d):
        d[find(d, "Service", "greeter-server")][1]["spec"]["ports"][0]["port"] = "eight thousand"

    def wasmplugin_bad_enum(d):
        d[find(d, "WasmPlugin")][1]["spec"]["failStrategy"] = "FAIL_SOMETIMES"

    def wasmplugin_unknown_field(d):
        d[find(d, "WasmPlugin")][1]["spec"]["phaze"] = "STATS"

    def virtualservice_unknown_field(d):
        d[find(d, "VirtualService")][1]["spec"]["http"][0]["fault"]["delay"]["fixedDelai"] = "1s"

    def destinationrule_missing_host(d):
        del d[find(d, "DestinationRule")][1]["spec"]["host"]

    def istio_metadata_unknown_field(d):
        d[find(d, "EnvoyFilter")][1]["metadata"]["labelz"] = {"a": "b"}

    def envoy_config_typo(d):
        cm = d[find(d, "ConfigMap", "greeter-envoy-sidecar")][1]
        cm["data"]["envoy.yaml"] = cm["data"]["envoy.yaml"].replace("dns_refresh_rate:", "dns_refresh_rat:")

    def envoy_config_missing_module(d):
        cm = d[find(d, "ConfigMap", "greeter-envoy-sidecar")][1]
        cm["data"]["envoy.yaml"] = cm["data"]["envoy.yaml"].replace(WASM_IN_POD, "/nonexistent/plugin.wasm")

    def plugin_config_unknown_field(d):
        d[find(d, "WasmPlugin")][1]["spec"]["pluginConfig"]["decayy"] = "10s"

    def envoyfilter_bad_patch(d):
        patch = d[find(d, "EnvoyFilter")][1]["spec"]["configPatches"][0]["patch"]
        patch["value"] = copy.deepcopy(patch["value"])
        policy = patch["value"]["load_balancing_policy"]["policies"][0]["typed_extension_config"]["typed_config"]
        policy["override_host_sources"] = [{"headr": "x-ewma-balancer-host"}]

    def envoyfilter_bad_header_strip(d):
        patches = d[find(d, "EnvoyFilter")][1]["spec"]["configPatches"]
        patch = next(p for p in patches if p["applyTo"] == "HTTP_FILTER")["patch"]
        patch["value"] = copy.deepcopy(patch["value"])
        patch["value"]["typed_config"]["mutations"]["request_mutations"] = [{"remov": "x-ewma-balancer-host"}]

    def envoyfilter_resolve_route_anchor_misspelt(d):
        patches = d[find(d, "EnvoyFilter")][1]["spec"]["configPatches"]
        patch = next(p for p in patches if p["patch"]["operation"] == "INSERT_BEFORE")
        patch["match"] = copy.deepcopy(patch["match"])
        patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"] = "extensions.istio.io/wasmplugin/ewma-balancer"

    def proxy_config_drift(d):
        meta = d[find(d, "Deployment", "greeter-client-istio")][1]["spec"]["template"]["metadata"]
        meta["annotations"]["proxy.istio.io/config"] = "extraStatTags: [cluster]\n"

    def eviction_not_multiple_of_flush(d):
        for _, doc in d:
            annotations = doc.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations", {})
            if "sidecar.istio.io/statsEvictionInterval" in annotations:
                annotations["sidecar.istio.io/statsEvictionInterval"] = "61s"

    def patch_among_applied_files(d):
        i = next(i for i, (path, _) in enumerate(d) if path == PROXY_CONFIG)
        d[i] = (ROOT / "istio" / "proxy-config.yaml", d[i][1])

    def image_name_mismatch(d):
        for _, doc in d:
            for volume in doc.get("spec", {}).get("template", {}).get("spec", {}).get("volumes", []):
                if "image" in volume:
                    volume["image"]["reference"] = "ewma-balancer/filter:0.1.0"

    def eep_wasm(d):
        return d[find(d, "EnvoyExtensionPolicy")][1]["spec"]["wasm"][0]

    def eep_unknown_field(d):
        eep_wasm(d)["failopen"] = True

    def eep_code_union(d):
        eep_wasm(d)["code"]["type"] = "HTTP"

    def eep_target_kind(d):
        d[find(d, "EnvoyExtensionPolicy")][1]["spec"]["targetRefs"][0]["kind"] = "Service"

    def eep_sha256_prefixed(d):
        image = eep_wasm(d)["code"]["image"]
        image["sha256"] = "sha256:" + image["sha256"]

    def eep_config_drift(d):
        eep_wasm(d)["config"]["decay"] = "3s"

    def btp_unknown_field(d):
        lb = d[find(d, "BackendTrafficPolicy")][1]["spec"]["loadBalancer"]
        lb["endpointOverride"]["extractFrom"] = [{"headr": "x-ewma-balancer-host"}]

    def ctp_target_kind(d):
        d[find(d, "ClientTrafficPolicy")][1]["spec"]["targetRefs"][0]["kind"] = "GRPCRoute"

    def grpcroute_unknown_field(d):
        d[find(d, "GRPCRoute")][1]["spec"]["rules"][0]["backendRefs"][0]["prot"] = 8000

    return [
        ("unknown field in a Deployment container", deployment_unknown_field),
        ("string port in a Service", service_bad_type),
        ("bad failStrategy enum in the WasmPlugin", wasmplugin_bad_enum),
        ("unknown field in the WasmPlugin spec", wasmplugin_unknown_field),
        ("unknown field in a VirtualService fault", virtualservice_unknown_field),
        ("DestinationRule without host", destinationrule_missing_host),
        ("unknown field in an Istio resource's metadata", istio_metadata_unknown_field),
        ("typo in the sidecar's Envoy config", envoy_config_typo),
        ("Envoy config naming a missing module", envoy_config_missing_module),
        ("unknown field in the pluginConfig", plugin_config_unknown_field),
        ("bad field in the EnvoyFilter's cluster patch", envoyfilter_bad_patch),
        ("bad field in the EnvoyFilter's header-stripping filter", envoyfilter_bad_header_strip),
        ("the resolve-route filter anchored on a name the chain lacks", envoyfilter_resolve_route_anchor_misspelt),
        ("meshed client's proxy config drifted from istio/patches/proxy-config.yaml", proxy_config_drift),
        ("statsEvictionInterval not a multiple of the 5 s flush interval", eviction_not_multiple_of_flush, "not a multiple"),
        ("the Deployment patch among the files kubectl apply -f istio/ reads", patch_among_applied_files,
         "not a complete resource"),
        ("another filter image name in the image volume", image_name_mismatch, "expected 'registry.example.com"),
        ("unknown field in the EnvoyExtensionPolicy's wasm", eep_unknown_field),
        ("EnvoyExtensionPolicy code type HTTP with an image (CEL union rule)", eep_code_union, "CEL rule"),
        ("EnvoyExtensionPolicy targeting a Service (CEL target rule)", eep_target_kind, "CEL rule"),
        ("EnvoyExtensionPolicy sha256 with a sha256: prefix", eep_sha256_prefixed, "64 lowercase hex"),
        ("EnvoyExtensionPolicy config differing from the WasmPlugin's", eep_config_drift, "plugin config differs"),
        ("unknown field in the BackendTrafficPolicy's endpointOverride", btp_unknown_field),
        ("ClientTrafficPolicy targeting a GRPCRoute (CEL target rule)", ctp_target_kind, "CEL rule"),
        ("unknown field in the GRPCRoute's backendRefs", grpcroute_unknown_field),
    ]


def quietly_validate(docs: list[tuple[Path, dict]]) -> list[str]:
    """`validate_all` without its progress lines (the self-test prints its own)."""
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        return validate_all(docs)


def self_test(docs: list[tuple[Path, dict]]) -> list[str]:
    # The unbroken manifests must pass, so each rejection below is the breakage's doing.
    baseline = quietly_validate(docs)
    if baseline:
        return [f"self-test: the unbroken manifests fail already: {baseline[0]}"]
    failures = []
    for label, breaks, *expect in breakages(docs):
        broken = copy.deepcopy(docs)
        breaks(broken)
        print(f"--- self-test: {label}", flush=True)
        found = quietly_validate(broken)
        # Where the breakage says what must catch it, a rejection for another reason
        # does not count.
        caught = [f for f in found if not expect or expect[0] in f]
        if caught:
            print(f"ok    rejected: {caught[0]}")
        else:
            failures.append(f"self-test: a manifest with {label} was accepted"
                            + (f" (rejections: {found})" if found else ""))
            print(f"FAIL  accepted: {label}")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--self-test", action="store_true",
                        help="check that deliberately broken copies are rejected")
    args = parser.parse_args()
    docs = [(path, doc) for path in manifest_files() for doc in load_documents(path)]
    if not docs:
        print("no manifests found", file=sys.stderr)
        return 1
    failures = self_test(docs) if args.self_test else validate_all(docs)
    if failures:
        print(f"\n{len(failures)} failure(s):", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        return 1
    resources = sum(1 for path, _ in docs if not is_patch(path))
    print(f"\nall {'broken copies rejected' if args.self_test else f'{resources} documents valid'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
