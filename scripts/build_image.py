#!/usr/bin/env python3
"""The filter's OCI image, without a container engine (`make image`).

Writes the module as an OCI image layout directory (default target/image/oci, tag = the
filter crate's version) in the layout Istio's Wasm fetcher accepts, then checks it:

* one image manifest (`application/vnd.oci.image.manifest.v1+json`), not an index: no
  attestation index, no multi-platform index;
* an image config (`application/vnd.oci.image.config.v1+json`) for linux/amd64, whose
  `rootfs.diff_ids` is the digest of the uncompressed layer;
* a single layer `application/vnd.oci.image.layer.v1.tar+gzip` whose only file is
  `plugin.wasm` (mode 0644, owner 0:0), the module byte for byte.

What Istio does with it (pkg/wasm/imagefetcher.go and cache.go, read in istio/istio):
istio-agent resolves the reference to an image (go-containerregistry; an index would be
resolved to its linux/amd64 entry), takes the manifest's digest as the module's
checksum, and, because the manifest is not Docker's schema 2, reads it as the "compat"
variant: the last layer must be `application/vnd.oci.image.layer.v1.tar+gzip`, and the
file whose base name is `plugin.wasm` in that tar.gz is the module. The WasmPlugin's
`sha256` (64 lowercase hex digits, no `sha256:` prefix) is compared with that
**manifest digest**, not with the module's own sha256 (which is what it is compared with
for `https://` URLs). Envoy Gateway's fetcher (internal/wasm) does the same.

Reproducible: the same module gives the same digest (tar entry mtime 0, owner 0:0, no
user names, USTAR; gzip mtime 0 and no file name; JSON with sorted keys and no spaces; no
creation time in the config). The gzip stream comes from the local zlib at level 9: a
different zlib may compress differently, so compare digests made on the same toolchain.

`--skopeo` also reads the layout back with `skopeo inspect` (an independent OCI reader)
and requires its digest, platform and layer media type to be ours, then copies it with
`skopeo copy --preserve-digests` (the push command, to a local layout) and checks the
copy again. `--self-test` checks
the checker: it builds twice (same digest), with one byte changed (another digest), and
breaks copies of a layout in every way the fetcher would refuse, each of which must be
rejected.

Exit status 0 when the image is built and every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
WASM = ROOT / "target" / "wasm32-wasip1" / "release" / "ewma_balancer.wasm"
OUT = ROOT / "target" / "image" / "oci"
FILTER_CARGO_TOML = ROOT / "filter" / "Cargo.toml"
# Where the image is pushed in every manifest of this repository (istio/wasm-plugin.yaml,
# kubernetes/greeter-client-with-envoy-static.yaml, kubernetes/envoy-gateway/): one name.
REPOSITORY = "registry.example.com/ewma-balancer/filter"

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
REF_NAME = "org.opencontainers.image.ref.name"
WASM_FILE = "plugin.wasm"
WASM_MAGIC = b"\0asm"


class Failure(Exception):
    """The layout is not what Istio's fetcher accepts; the message says why."""


# ---------------------------------------------------------------- writing


def canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(module: bytes) -> bytes:
    """An uncompressed tar holding only plugin.wasm, with nothing that varies per build."""
    info = tarfile.TarInfo(WASM_FILE)
    info.size = len(module)
    info.mode = 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(module))
    return out.getvalue()


def write_blob(layout: Path, data: bytes) -> dict:
    digest = digest_of(data)
    path = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
    path.write_bytes(data)
    return {"digest": digest, "size": len(data)}


def write_layout(layout: Path, module: bytes, tag: str) -> str:
    """Writes a fresh OCI layout for `module` under `tag`; returns the manifest digest."""
    if not module.startswith(WASM_MAGIC):
        raise Failure("the module does not start with the Wasm magic \\0asm")
    if layout.exists():
        shutil.rmtree(layout)
    (layout / "blobs" / "sha256").mkdir(parents=True)
    tar = layer_tar(module)
    layer = {"mediaType": LAYER_TYPE, **write_blob(layout, gzip.compress(tar, compresslevel=9, mtime=0))}
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [digest_of(tar)]},
    }
    config_desc = {"mediaType": CONFIG_TYPE, **write_blob(layout, canonical_json(config))}
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "config": config_desc, "layers": [layer]}
    manifest_desc = {"mediaType": MANIFEST_TYPE, **write_blob(layout, canonical_json(manifest)),
                     "platform": {"architecture": "amd64", "os": "linux"},
                     "annotations": {REF_NAME: tag}}
    index = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [manifest_desc]}
    (layout / "index.json").write_bytes(canonical_json(index))
    (layout / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    return manifest_desc["digest"]


# ---------------------------------------------------------------- checking


def read_blob(layout: Path, desc: dict, what: str) -> bytes:
    digest = desc.get("digest", "")
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise Failure(f"{what}: digest {digest!r} is not sha256:<64 hex>")
    path = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
    if not path.is_file():
        raise Failure(f"{what}: blob {digest} is missing")
    data = path.read_bytes()
    if digest_of(data) != digest:
        raise Failure(f"{what}: blob {digest} holds content of digest {digest_of(data)}")
    if desc.get("size") != len(data):
        raise Failure(f"{what}: descriptor size {desc.get('size')} != blob size {len(data)}")
    return data


def verify_layout(layout: Path, tag: str, module: bytes) -> str:
    """Checks the layout as Istio's fetcher reads it; returns the manifest digest."""
    try:
        if json.loads((layout / "oci-layout").read_text()) != {"imageLayoutVersion": "1.0.0"}:
            raise Failure("oci-layout is not {\"imageLayoutVersion\": \"1.0.0\"}")
        index = json.loads((layout / "index.json").read_text())
    except (OSError, ValueError) as error:
        raise Failure(f"not an OCI layout: {error}") from None
    tagged = [d for d in index.get("manifests", []) if d.get("annotations", {}).get(REF_NAME) == tag]
    if len(tagged) != 1:
        raise Failure(f"index.json: {len(tagged)} entries tagged {tag!r}, expected 1")
    desc = tagged[0]
    if desc.get("mediaType") != MANIFEST_TYPE:
        # An index here (multi-platform, or with attestation manifests) is what the
        # fetcher would have to resolve by platform; we ship a plain image manifest.
        raise Failure(f"tag {tag} points to {desc.get('mediaType')}, expected an image manifest {MANIFEST_TYPE}")
    manifest = json.loads(read_blob(layout, desc, "manifest"))
    if manifest.get("schemaVersion") != 2 or manifest.get("mediaType") != MANIFEST_TYPE:
        raise Failure(f"manifest: schemaVersion {manifest.get('schemaVersion')}, mediaType "
                      f"{manifest.get('mediaType')}; expected 2, {MANIFEST_TYPE} (not {DOCKER_MANIFEST_TYPE})")
    config_desc = manifest.get("config", {})
    if config_desc.get("mediaType") != CONFIG_TYPE:
        raise Failure(f"config mediaType {config_desc.get('mediaType')}, expected {CONFIG_TYPE}")
    config = json.loads(read_blob(layout, config_desc, "config"))
    if (config.get("os"), config.get("architecture")) != ("linux", "amd64"):
        raise Failure(f"config platform {config.get('os')}/{config.get('architecture')}, expected linux/amd64")
    layers = manifest.get("layers", [])
    if len(layers) != 1:
        raise Failure(f"{len(layers)} layers, expected exactly 1")
    if layers[0].get("mediaType") != LAYER_TYPE:
        raise Failure(f"layer mediaType {layers[0].get('mediaType')}, expected {LAYER_TYPE}")
    compressed = read_blob(layout, layers[0], "layer")
    try:
        tar_bytes = gzip.decompress(compressed)
    except (OSError, EOFError) as error:
        raise Failure(f"layer is not gzip: {error}") from None
    if config.get("rootfs") != {"type": "layers", "diff_ids": [digest_of(tar_bytes)]}:
        raise Failure(f"config rootfs {config.get('rootfs')} does not name the uncompressed layer {digest_of(tar_bytes)}")
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        members = tar.getmembers()
        if [m.name for m in members] != [WASM_FILE]:
            raise Failure(f"layer holds {[m.name for m in members]}, expected only {WASM_FILE}")
        member = members[0]
        if not member.isreg() or member.mode != 0o644 or (member.uid, member.gid) != (0, 0):
            raise Failure(f"{WASM_FILE}: type {member.type!r} mode {oct(member.mode)} owner "
                          f"{member.uid}:{member.gid}, expected a regular file 0o644 0:0")
        extracted = tar.extractfile(member).read()
    if extracted != module:
        raise Failure(f"{WASM_FILE} in the layer ({len(extracted)} bytes) is not the module ({len(module)} bytes)")
    if not extracted.startswith(WASM_MAGIC):
        raise Failure(f"{WASM_FILE} does not start with the Wasm magic")
    return desc["digest"]


def skopeo_check(layout: Path, tag: str, digest: str, module: bytes) -> None:
    """skopeo's reading of the layout must agree with ours."""
    source = f"oci:{layout}:{tag}"
    try:
        raw = subprocess.run(["skopeo", "inspect", "--raw", source], check=True, capture_output=True).stdout
        seen = json.loads(subprocess.run(["skopeo", "inspect", source], check=True,
                                         capture_output=True, text=True).stdout)
    except FileNotFoundError:
        raise Failure("skopeo is not installed (`make image` installs it: apt-get install -y skopeo)") from None
    except subprocess.CalledProcessError as error:
        raise Failure(f"skopeo inspect {source} failed: {error.stderr.decode(errors='replace').strip()}") from None
    if digest_of(raw) != digest:
        raise Failure(f"skopeo inspect --raw: the manifest it reads has digest {digest_of(raw)}, not {digest}")
    layers = json.loads(raw).get("layers", [])
    got = (seen.get("Digest"), seen.get("Os"), seen.get("Architecture"), seen.get("Layers"),
           [layer.get("mediaType") for layer in layers])
    want = (digest, "linux", "amd64", [layer.get("digest") for layer in layers][:1], [LAYER_TYPE])
    if got != want:
        raise Failure(f"skopeo inspect sees (digest, os, arch, layers, layer types) {got}, expected {want}")
    # What the push command in the output does, to a local layout instead of a registry:
    # the copy must keep the digest and still pass every check.
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "copy"
        try:
            subprocess.run(["skopeo", "copy", "--quiet", "--preserve-digests", source, f"oci:{copy}:{tag}"],
                           check=True, capture_output=True)
        except subprocess.CalledProcessError as error:
            raise Failure(f"skopeo copy {source} failed: {error.stderr.decode(errors='replace').strip()}") from None
        copied = verify_layout(copy, tag, module)
        if copied != digest:
            raise Failure(f"skopeo copy --preserve-digests changed the digest to {copied}")


# ---------------------------------------------------------------- self-test


def edit_manifest(layout: Path, tag: str, change: Callable[[dict, Path], None]) -> None:
    """Rewrites the tagged manifest after `change(manifest, layout)` and re-points the index."""
    index = json.loads((layout / "index.json").read_text())
    desc = index["manifests"][0]
    manifest = json.loads(read_blob(layout, desc, "manifest"))
    change(manifest, layout)
    desc.update(write_blob(layout, canonical_json(manifest)))
    (layout / "index.json").write_bytes(canonical_json(index))


def replace_config(change: Callable[[dict], None]) -> Callable[[dict, Path], None]:
    def apply(manifest: dict, layout: Path) -> None:
        config = json.loads(read_blob(layout, manifest["config"], "config"))
        change(config)
        manifest["config"].update(write_blob(layout, canonical_json(config)))
    return apply


def replace_layer(tar_entries: list[tuple[str, bytes]], media_type: str = LAYER_TYPE,
                  compress: bool = True) -> Callable[[dict, Path], None]:
    def apply(manifest: dict, layout: Path) -> None:
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name, data in tar_entries:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
        tar_bytes = out.getvalue()
        blob = gzip.compress(tar_bytes, mtime=0) if compress else tar_bytes
        manifest["layers"] = [{"mediaType": media_type, **write_blob(layout, blob)}]
        config = json.loads(read_blob(layout, manifest["config"], "config"))
        config["rootfs"]["diff_ids"] = [digest_of(tar_bytes)]
        manifest["config"].update(write_blob(layout, canonical_json(config)))
    return apply


def wrap_in_index(layout: Path, tag: str) -> None:
    """The tag points to an index holding the image and an attestation manifest, as
    `docker buildx` makes by default."""
    index = json.loads((layout / "index.json").read_text())
    image = index["manifests"][0]
    attestation = {"mediaType": MANIFEST_TYPE, **write_blob(layout, b'{"attestation":true}'),
                   "platform": {"architecture": "unknown", "os": "unknown"}}
    inner = {"schemaVersion": 2, "mediaType": INDEX_TYPE,
             "manifests": [{k: v for k, v in image.items() if k != "annotations"}, attestation]}
    index["manifests"] = [{"mediaType": INDEX_TYPE, **write_blob(layout, canonical_json(inner)),
                           "annotations": {REF_NAME: tag}}]
    (layout / "index.json").write_bytes(canonical_json(index))


def breakages(module: bytes) -> list[tuple[str, Callable[[Path, str], None]]]:
    def manifest(change):
        return lambda layout, tag: edit_manifest(layout, tag, change)

    def docker_media_type(m, _):
        m["mediaType"] = DOCKER_MANIFEST_TYPE

    def second_layer(m, layout):
        m["layers"].append(dict(m["layers"][0]))

    def tampered_blob(layout, tag):
        index = json.loads((layout / "index.json").read_text())
        manifest_ = json.loads(read_blob(layout, index["manifests"][0], "manifest"))
        path = layout / "blobs" / "sha256" / manifest_["layers"][0]["digest"].removeprefix("sha256:")
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))

    return [
        ("the tag points to an index with an attestation manifest", wrap_in_index),
        ("a Docker schema 2 manifest", manifest(docker_media_type)),
        ("an arm64 config", manifest(replace_config(lambda c: c.update(architecture="arm64")))),
        ("config rootfs not naming the layer", manifest(replace_config(lambda c: c["rootfs"].update(diff_ids=[])))),
        ("two layers", manifest(second_layer)),
        ("an uncompressed tar layer", manifest(replace_layer([(WASM_FILE, module)],
                                                             "application/vnd.oci.image.layer.v1.tar", False))),
        ("a gzip media type on an uncompressed layer", manifest(replace_layer([(WASM_FILE, module)], compress=False))),
        ("the module named filter.wasm", manifest(replace_layer([("filter.wasm", module)]))),
        ("a second file beside plugin.wasm", manifest(replace_layer([(WASM_FILE, module), ("README", b"x")]))),
        ("a plugin.wasm that is not the module", manifest(replace_layer([(WASM_FILE, module + b"\0")]))),
        ("a layer blob whose content does not match its digest", tampered_blob),
    ]


def self_test(module: bytes, tag: str, use_skopeo: bool) -> list[str]:
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        first = write_layout(tmp_path / "a", module, tag)
        second = write_layout(tmp_path / "b", module, tag)
        changed = write_layout(tmp_path / "c", module[:-1] + bytes([module[-1] ^ 1]), tag)
        print(f"--- self-test: same module twice: {first} and {second}")
        if first != second:
            failures.append("self-test: the same module gave two digests (not reproducible)")
        if changed in (first, second):
            failures.append("self-test: a module with one byte changed gave the same digest")
        try:
            verify_layout(tmp_path / "a", tag, module)
            if use_skopeo:
                skopeo_check(tmp_path / "a", tag, first, module)
        except Failure as failure:
            failures.append(f"self-test: the unbroken layout fails already: {failure}")
            return failures
        for label, breaks in breakages(module):
            layout = tmp_path / "broken"
            write_layout(layout, module, tag)
            breaks(layout, tag)
            try:
                verify_layout(layout, tag, module)
            except Failure as failure:
                print(f"ok    rejected {label}: {failure}")
            else:
                print(f"FAIL  accepted {label}")
                failures.append(f"self-test: a layout with {label} was accepted")
    return failures


# ---------------------------------------------------------------- main


def crate_version() -> str:
    match = re.search(r'^version\s*=\s*"([^"]+)"', FILTER_CARGO_TOML.read_text(), re.M)
    if not match:
        raise Failure(f"no version in {FILTER_CARGO_TOML}")
    return match.group(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wasm", type=Path, default=WASM, help=f"the module (default {WASM.relative_to(ROOT)})")
    parser.add_argument("--out", type=Path, default=OUT, help=f"the OCI layout directory (default {OUT.relative_to(ROOT)})")
    parser.add_argument("--tag", help="the tag (default: the filter crate's version)")
    parser.add_argument("--skopeo", action="store_true", help="also read the layout back with skopeo inspect")
    parser.add_argument("--self-test", action="store_true",
                        help="check that builds are reproducible and broken layouts are rejected")
    args = parser.parse_args()
    try:
        tag = args.tag or crate_version()
        if args.self_test:
            module = WASM_MAGIC + b"\1\0\0\0" + bytes(range(256)) * 64
            failures = self_test(module, tag, args.skopeo)
            for failure in failures:
                print(failure, file=sys.stderr)
            print("\n" + (f"{len(failures)} failure(s)" if failures else "all broken layouts rejected"))
            return 1 if failures else 0
        if not args.wasm.is_file():
            raise Failure(f"{args.wasm} is missing: run `make wasm` first")
        module = args.wasm.read_bytes()
        out = args.out.resolve()
        digest = write_layout(out, module, tag)
        if verify_layout(out, tag, module) != digest:
            raise Failure("the layout's tag does not point to the manifest just written")
        if args.skopeo:
            skopeo_check(out, tag, digest, module)
        (out.parent / "sha256.txt").write_text(digest.removeprefix("sha256:") + "\n")
    except Failure as failure:
        print(f"build_image: {failure}", file=sys.stderr)
        return 1
    try:
        shown = out.relative_to(Path.cwd())
    except ValueError:
        shown = out
    hex_digest = digest.removeprefix("sha256:")
    print(f"built {shown}:{tag} from {args.wasm.name} ({len(module)} bytes): one layer {LAYER_TYPE} "
          f"holding only {WASM_FILE}, linux/amd64, an image manifest (no index)"
          + (", read back by skopeo inspect" if args.skopeo else ""))
    print(f"manifest digest: {digest}")
    print(f"WasmPlugin / EnvoyExtensionPolicy sha256: {hex_digest}")
    print("push it (skopeo keeps the digest):")
    print(f"  skopeo copy --preserve-digests oci:{shown}:{tag} docker://{REPOSITORY}:{tag}")
    print(f"  url: oci://{REPOSITORY}:{tag}   (or pinned: oci://{REPOSITORY}@{digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
