#!/usr/bin/env bash
# Sets the greeter cluster's endpoints of the dynamic Envoy (envoy-configs/dynamic):
#   scripts/scale-greeter.sh 50051,50052,50053,50054        (or: make scale PORTS=...)
# Writes a new ClusterLoadAssignment beside endpoints/greeter.yaml and renames it over
# that path: Envoy applies only renames atomically (it watches the directory for moves).
# HOST (default 127.0.0.1) is the endpoints' address; DYNAMIC_DIR the config directory.
set -euo pipefail
ports=${1:?usage: $0 PORT[,PORT...]}
host=${HOST:-127.0.0.1}
dir=${DYNAMIC_DIR:-envoy-configs/dynamic}/endpoints
[[ $ports =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "ports must be like 50051,50052 (got '$ports')" >&2; exit 2; }
tmp=$(mktemp "$dir/.greeter.yaml.XXXXXX")
trap 'rm -f "$tmp"' EXIT
{
  echo "# The greeter cluster's endpoints, written by scripts/scale-greeter.sh ($ports)."
  echo "resources:"
  echo "- \"@type\": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
  echo "  cluster_name: greeter"
  echo "  endpoints:"
  echo "  - lb_endpoints:"
  for port in ${ports//,/ }; do
    (( port > 0 && port < 65536 )) || { echo "port out of range: $port" >&2; exit 2; }
    echo "    - endpoint: { address: { socket_address: { address: $host, port_value: $port } } }"
  done
} > "$tmp"
chmod 644 "$tmp"
mv -f "$tmp" "$dir/greeter.yaml"
trap - EXIT
echo "greeter endpoints: ${ports//,/ } (on $host)"
