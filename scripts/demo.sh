#!/usr/bin/env bash
# The demo: HAProxy with config/haproxy.cfg, mapbridge with config/mapbridge.yaml and an embedded
# Kafka broker, a few events published, and HAProxy routing by them. Everything runs from a
# temporary directory and stops at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then export PATH=/opt/swift/usr/bin:$PATH; fi
scripts/install-dependencies.sh

echo "== building mapbridge"
swift build --product mapbridge 2>&1 | tail -1
bin=$(swift build --show-bin-path)/mapbridge

work=$(mktemp -d /tmp/mapbridge-demo-XXXXXX)
mkdir -p "$work/maps"
cp config/maps/*.map config/maps/*.acl "$work/maps/"
port=${DEMO_HTTP_PORT:-8080}
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then port=18080; fi
metrics_port=${DEMO_METRICS_PORT:-9464}
if (exec 3<>"/dev/tcp/127.0.0.1/$metrics_port") 2>/dev/null; then metrics_port=19464; fi
haproxy_pid=""
bridge_pid=""
cleanup() {
    [ -n "$bridge_pid" ] && kill "$bridge_pid" 2>/dev/null || true
    [ -n "$haproxy_pid" ] && kill "$haproxy_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Waits up to $1 seconds for the command after it to succeed.
wait_for() {
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then echo "timed out waiting for: $*" >&2; return 1; fi
        sleep 0.2
    done
}
route() { curl -s -H "Host: $1" "http://127.0.0.1:$port/"; }

echo "== starting HAProxy with config/haproxy.cfg on 127.0.0.1:$port"
HAPROXY_RUN_DIR=$work MAPS_DIR=$work/maps HTTP_BIND=127.0.0.1:$port haproxy -db -f config/haproxy.cfg 2>"$work/haproxy.log" &
haproxy_pid=$!
wait_for 10 test -S "$work/admin.sock"

echo "== starting mapbridge with config/mapbridge.yaml and an embedded Kafka broker"
export MAPBRIDGE_HAPROXY_SOCKET="unix://$work/admin.sock"
export MAPBRIDGE_MAPS_HOSTS_PATH="$work/maps/hosts.map"
export MAPBRIDGE_MAPS_BLOCKLIST_PATH="$work/maps/blocklist.map"
export MAPBRIDGE_ACLS_ADMIN_ALLOWLIST_PATH="$work/maps/admin-allowlist.acl"
export MAPBRIDGE_STATE_DIRECTORY="$work/state"
export MAPBRIDGE_HTTP_LISTEN="127.0.0.1:$metrics_port"
"$bin" run --config config/mapbridge.yaml --embedded-broker --bootstrap-file "$work/bootstrap" 2>"$work/mapbridge.log" &
bridge_pid=$!
wait_for 30 test -s "$work/bootstrap"
brokers=$(cat "$work/bootstrap")
echo "   embedded broker: $brokers (logs: $work/mapbridge.log)"

echo "== before any event"
for host in www.example.com api.example.com static.example.com; do printf '   %-20s -> %s' "$host" "$(route $host)"; echo; done

echo "== publishing: api.example.com -> be_api, static.example.com -> be_static"
printf 'api.example.com be_api\nstatic.example.com be_static\n' | "$bin" publish --config config/mapbridge.yaml --map hosts --brokers "$brokers"
wait_for 30 sh -c "curl -s -H 'Host: static.example.com' http://127.0.0.1:$port/ | grep -q be_static"
wait_for 30 sh -c "curl -s -H 'Host: api.example.com' http://127.0.0.1:$port/ | grep -q be_api"
for host in www.example.com api.example.com static.example.com; do printf '   %-20s -> %s' "$host" "$(route $host)"; echo; done

echo "== publishing: delete static.example.com"
echo '-static.example.com' | "$bin" publish --config config/mapbridge.yaml --map hosts --brokers "$brokers"
wait_for 30 sh -c "curl -s -H 'Host: static.example.com' http://127.0.0.1:$port/ | grep -q 'no route'"
printf '   %-20s -> %s' static.example.com "$(route static.example.com)"; echo

echo "== /admin is for the admin allowlist (an ACL file) only"
printf '   %-20s -> %s\n' "/admin" "$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: www.example.com' "http://127.0.0.1:$port/admin")"
echo "== publishing to the ACL: add 127.0.0.1"
echo '127.0.0.1' | "$bin" publish --config config/mapbridge.yaml --map admin_allowlist --brokers "$brokers"
wait_for 30 sh -c "curl -s -H 'Host: www.example.com' http://127.0.0.1:$port/admin | grep -q be_web"
printf '   %-20s -> %s' "/admin" "$(curl -s -H 'Host: www.example.com' "http://127.0.0.1:$port/admin")"; echo

echo "== HAProxy's hosts map now (show map):"
echo "show map $work/maps/hosts.map" | socat stdio "unix-connect:$work/admin.sock" | sed -e '/^$/d' -e 's/^/   /'

echo "== mapbridge's own view: /readyz and a few of its metrics (http://127.0.0.1:$metrics_port/metrics)"
printf '   readyz: %s\n' "$(curl -s "http://127.0.0.1:$metrics_port/readyz")"
curl -s "http://127.0.0.1:$metrics_port/metrics" | grep -E '^mapbridge_(events_consumed_total|changes_applied_total|offsets_committed_total|haproxy_in_sync) ' | sed 's/^/   /' || true

echo "== stopping mapbridge (SIGTERM: finish, commit, leave the group)"
kill -TERM "$bridge_pid"
status=0; wait "$bridge_pid" || status=$?
bridge_pid=""
echo "   mapbridge exited with status $status"
grep -E "stopped cleanly|committed" "$work/mapbridge.log" | sed 's/^/   log: /' | tail -3 || true
[ "$status" -eq 0 ]
echo "== done"
