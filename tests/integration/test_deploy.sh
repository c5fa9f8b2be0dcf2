#!/usr/bin/env bash
# The deployment files, checked offline with the tools that run them:
#   systemd/effdetd@.service   systemd-analyze verify (no warnings) and security <= 2.0
#   deploy/nginx/effdetd.conf  nginx -t on the config deploy/cluster.sh writes from it
#   deploy/prometheus.yml      promtool check config; our /metrics: promtool check metrics
#   deploy/k8s/*.yaml          yamllint; kubectl (client only, no cluster) decodes every
#                              object, the Deployment and Services into their typed
#                              structs; tests/integration/deploy_check.py checks they fit together
# A tool that is not installed is skipped with a NOTICE (CI installs them all:
# .ci/packages.txt; kubectl is not a Debian 12 package, .ci/run installs
# kubernetes-client when no kubectl is present).
set -eu
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
ok=0 skipped=0
have() { command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ]; }
skip() { echo "NOTICE: $1 not installed; skipping $2"; skipped=$((skipped + 1)); }

# ------------------------------------------------------------------ systemd
if have systemd-analyze; then
  sed "s|/usr/local/bin/effdetd|$PWD/$BUILD/effdetd|" systemd/effdetd@.service >"$tmp/effdetd@.service"
  # verify exits 0 on most unit-file mistakes and only prints them: any output fails.
  out=$(cd "$tmp" && systemd-analyze verify --man=no ./effdetd@cam1.service 2>&1) || { echo "$out"; exit 1; }
  [ -z "$out" ] || { echo "systemd-analyze verify effdetd@cam1.service:"; echo "$out"; exit 1; }
  score=$(cd "$tmp" && systemd-analyze security --offline=yes ./effdetd@cam1.service 2>&1 |
    sed -n 's/.*Overall exposure level.*: \([0-9.]*\) .*/\1/p')
  awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 2.0) }' || { echo "effdetd@: exposure '$score' > 2.0"; exit 1; }
  echo "systemd effdetd@.service: verify ok, exposure $score"
  ok=$((ok + 1))
else
  skip systemd-analyze "the template unit"
fi

# -------------------------------------------------------------------- nginx
if have nginx; then
  ngx=$(command -v nginx || echo /usr/sbin/nginx)
  deploy/cluster.sh conf "$tmp/nginx" 127.0.0.1:0 18081 18082 18083 >/dev/null
  # Port 0 is refused by nginx -t: test the rewritten file on a real (unused) port.
  sed -i 's|listen 127.0.0.1:0;|listen 127.0.0.1:65079;|' "$tmp/nginx/effdetd.conf"
  "$ngx" -t -q -p "$tmp/nginx" -e "$tmp/nginx/logs/error.log" -c "$tmp/nginx/nginx.conf"
  # The directives the deployment depends on are still there after the rewrite.
  for d in "least_conn;" "keepalive 32;" "max_fails=3 fail_timeout=2s;" \
    "proxy_next_upstream error timeout http_503 non_idempotent;" "proxy_next_upstream_tries 3;" \
    "client_max_body_size 16m;" "proxy_set_header X-Request-Id \$effdetd_request_id;"; do
    grep -qF "$d" "$tmp/nginx/effdetd.conf" || { echo "nginx: '$d' missing"; exit 1; }
  done
  [ "$(grep -c '^    server 127.0.0.1:1808[123] ' "$tmp/nginx/effdetd.conf")" = 3 ] || { echo "nginx: upstream"; exit 1; }
  echo "nginx: deploy/nginx/effdetd.conf ok"
  ok=$((ok + 1))
else
  skip nginx "deploy/nginx/effdetd.conf"
fi

# --------------------------------------------------------------- prometheus
if have promtool; then
  promtool check config deploy/prometheus.yml
  "$BUILD/effdetd" --model tests/fixtures/weights.safetensors --listen 127.0.0.1:0 \
    --port-file "$tmp/port" --workers 1 --access-log no 2>"$tmp/effdetd.log" &
  pid=$!
  for _ in $(seq 300); do
    [ -s "$tmp/port" ] && curl -fs -o /dev/null "http://127.0.0.1:$(cat "$tmp/port")/readyz" && break
    sleep 0.1
  done
  port=$(cat "$tmp/port")
  # Every series present: one detection, one error, one 404 first.
  curl -fs -o /dev/null -H 'Content-Type: image/jpeg' --data-binary @tests/fixtures/input.jpg "http://127.0.0.1:$port/detect"
  curl -s -o /dev/null -H 'Content-Type: image/jpeg' --data-binary 'not a jpeg' "http://127.0.0.1:$port/detect"
  curl -s -o /dev/null "http://127.0.0.1:$port/nope"
  curl -fs "http://127.0.0.1:$port/metrics" >"$tmp/metrics.txt"
  kill "$pid"
  wait "$pid" || { echo "effdetd exited non-zero"; cat "$tmp/effdetd.log"; exit 1; }
  pid=
  # promtool prints lint problems and exits 1 on them.
  promtool check metrics <"$tmp/metrics.txt"
  grep -q '^effdetd_requests_total{instance="[^"]*:'"$port"'",endpoint="/detect",status="400"} 1$' \
    "$tmp/metrics.txt" || { echo "metrics: no instance-labelled 400 sample"; exit 1; }
  echo "prometheus: config and metrics ok ($(grep -vc '^#' "$tmp/metrics.txt") samples)"
  ok=$((ok + 1))
else
  skip promtool "deploy/prometheus.yml and promtool check metrics"
fi

# --------------------------------------------------------------- kubernetes
if have yamllint; then
  yamllint -s -c deploy/.yamllint deploy/k8s deploy/prometheus.yml
  echo "yamllint: ok"
  ok=$((ok + 1))
else
  skip yamllint "the YAML lint"
fi
if have kubectl; then
  # KUBECONFIG=/dev/null: no cluster, and never kubectl's default of localhost:8080
  # (where `make cluster` may be listening).
  k() { KUBECONFIG=/dev/null kubectl "$@"; }
  names=$(k annotate --local -f deploy/k8s/ -o name checked=yes)
  echo "$names" | sort >"$tmp/names"
  printf '%s\n' configmap/effdetd-config deployment.apps/effdetd horizontalpodautoscaler.autoscaling/effdetd \
    namespace/effdetd persistentvolumeclaim/effdetd-models poddisruptionbudget.policy/effdetd \
    service/effdetd service/effdetd-pods | sort | diff - "$tmp/names"
  # Typed decoding: a wrong type (replicas: "3", a port as text) fails here.
  k set env --local -f deploy/k8s/deployment.yaml -o name CHECK=1 >/dev/null
  k set selector --local -f deploy/k8s/service.yaml app.kubernetes.io/name=effdetd -o name >/dev/null
  python3 -B tests/integration/deploy_check.py
  echo "kubectl: deploy/k8s ok"
  ok=$((ok + 1))
else
  skip kubectl "the Kubernetes manifests (apt-get install kubernetes-client)"
fi
echo "deploy: $ok checks passed, $skipped skipped"
