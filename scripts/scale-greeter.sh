#!/usr/bin/env bash
# Sets the greeter cluster's endpoints of the dynamic Envoy (envoy-configs/dynamic):
#   scripts/scale-greeter.sh 50051,50052,50053,50054        (or: make scale PORTS=...)
#   scripts/scale-greeter.sh 50051,50052,50053:UNHEALTHY    (an EDS health_status per port:
#     HEALTHY, UNHEALTHY, DRAINING, TIMEOUT or DEGRADED)
# Writes a new ClusterLoadAssignment beside endpoints/greeter.yaml and renames it over
# that path: Envoy applies only renames atomically (it watches the directory for moves).
# HOST (default 127.0.0.1) is the endpoints' address; DYNAMIC_DIR the config directory.
set -euo pipefail
ports=${1:?usage: $0 PORT[,PORT...]}
host=${HOST:-127.0.0.1}
dir=${DYNAMIC_DIR:-envoy-configs/dynamic}/endpoints
status='(:(HEALTHY|UNHEALTHY|DRAINING|TIMEOUT|DEGRADED))?'
[[ $ports =~ ^[0-9]+$status(,[0-9]+$status)*$ ]] || {
  echo "ports must be like 50051,50052:UNHEALTHY (got '$ports')" >&2; exit 2; }
tmp=$(mktemp "$dir/.greeter.yaml.XXXXXX")
trap 'rm -f "$tmp"' EXIT
{
  echo "# The greeter cluster's endpoints, written by scripts/scale-greeter.sh ($ports)."
  echo "resources:"
  echo "- \"@type\": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
  echo "  cluster_name: greeter"
  echo "  endpoints:"
  echo "  - lb_endpoints:"
  for entry in ${ports//,/ }; do
    port=${entry%%:*}
    (( port > 0 && port < 65536 )) || { echo "port out of range: $port" >&2; exit 2; }
    health=""
    [[ $entry == *:* ]] && health=", health_status: ${entry#*:}"
    echo "    - { endpoint: { address: { socket_address: { address: $host, port_value: $port } } }$health }"
  done
} > "$tmp"
chmod 644 "$tmp"
mv -f "$tmp" "$dir/greeter.yaml"
trap - EXIT
echo "greeter endpoints: ${ports//,/ } (on $host)"
