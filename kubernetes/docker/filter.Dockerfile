# The ewma-balancer filter as an OCI image in Istio's "compat" layout: a single layer
# holding plugin.wasm at the root. Istio's WasmPlugin pulls it (url: oci://…), and a
# Kubernetes image volume mounts it (kubernetes/greeter-client-with-envoy-static.yaml:
# /etc/envoy/wasm/plugin.wasm). Build the module first, then the image from the
# repository root:
#
#   make wasm
#   docker build -f kubernetes/docker/filter.Dockerfile -t registry.example.com/ewma-balancer/filter:0.1.0 .
#   docker push registry.example.com/ewma-balancer/filter:0.1.0
#
# Not built in this repository's CI (no container engine there); see docs/deployment.md.
FROM scratch
COPY target/wasm32-wasip1/release/ewma_balancer.wasm ./plugin.wasm
