# The ewma-balancer filter as an OCI image in Istio's "compat" layout: a single layer
# holding plugin.wasm at the root. Istio's WasmPlugin pulls it (url: oci://…), and a
# Kubernetes image volume mounts it (kubernetes/greeter-client-with-envoy-static.yaml:
# /etc/envoy/wasm/plugin.wasm). `make image` builds the same image without a container
# engine (scripts/build_image.py, an OCI layout in target/image/oci, pushed with
# `skopeo copy`); with Docker, build the module first, then the image from the
# repository root:
#
#   make wasm
#   docker build -f kubernetes/docker/filter.Dockerfile -t registry.example.com/ewma-balancer/filter:0.1.0 .
#   docker push registry.example.com/ewma-balancer/filter:0.1.0
#
# Mind `docker buildx`: by default it pushes an index (the image plus an attestation
# manifest; --provenance=false --sbom=false leave it out) for the builder's platform.
# istio-agent resolves an index to its linux/amd64 image (go-containerregistry's
# default), so an index from an arm64 machine without --platform linux/amd64 cannot be
# fetched, and the WasmPlugin's sha256 must be that image's manifest digest, not the
# index digest the registry shows for the tag.
#
# Not built in this repository's CI (no container engine there); see docs/deployment.md.
FROM scratch
COPY target/wasm32-wasip1/release/ewma_balancer.wasm ./plugin.wasm
