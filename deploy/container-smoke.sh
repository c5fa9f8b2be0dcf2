#!/usr/bin/env bash
# deploy/container-smoke.sh — build deploy/Containerfile with podman, run it, check
# /readyz, POST /detect, the HEALTHCHECK and a clean stop (the drain, exit 0).
#
#   deploy/container-smoke.sh MODEL.safetensors [BASE_IMAGE]
#
# BASE_IMAGE defaults to docker.io/library/debian:12-slim. Without a registry, make a
# base from Debian's archive first (docs/scaling.md):
#   mmdebstrap --variant=minbase bookworm debian12.tar && podman import debian12.tar localhost/debian:12
# PODMAN_FLAGS is passed to every podman call; in a sandbox without setrlimit and with
# hybrid cgroups this took  PODMAN_FLAGS="--runtime runc"  plus
# CONTAINERS_CONF pointing at a containers.conf with  [containers] default_ulimits = [].
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: $0 MODEL.safetensors [BASE_IMAGE]}
base=${2:-docker.io/library/debian:12-slim}
port=${PORT:-18890}
image=localhost/effdetd:smoke
name=effdetd-smoke-$$
# shellcheck disable=SC2086  # PODMAN_FLAGS is a list of flags
p() { podman ${PODMAN_FLAGS:-} "$@"; }
models=$(mktemp -d)
cleanup() { p rm -f "$name" >/dev/null 2>&1 || true; rm -rf "$models"; }
trap cleanup EXIT
cp "$model" "$models/$(basename "$model")"
chmod 755 "$models" && chmod 644 "$models"/*

p build --format docker --network host --build-arg BASE="$base" -f deploy/Containerfile -t "$image" .
p run -d --name "$name" -p "127.0.0.1:$port:8080" -v "$models:/models:ro" "$image" >/dev/null
for _ in $(seq 600); do
  curl -fs -o /dev/null "http://127.0.0.1:$port/readyz" && break
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$port/readyz"; echo
[ "$(p exec "$name" id -u)" = 10001 ] || { echo "not running as uid 10001"; exit 1; }
curl -fsS -H 'Content-Type: image/jpeg' -H 'X-Request-Id: smoke-1' --data-binary @tests/fixtures/input.jpg \
  "http://127.0.0.1:$port/detect" | head -c 200; echo
p healthcheck run "$name" && echo "healthcheck: ok"
p stop -t 45 "$name" >/dev/null
rc=$(p inspect "$name" --format '{{.State.ExitCode}}')
p logs "$name" 2>&1 | tail -3
[ "$rc" = 0 ] || { echo "effdetd exited $rc"; exit 1; }
echo "container smoke: ok ($(p image inspect "$image" --format '{{.Size}}') bytes)"
