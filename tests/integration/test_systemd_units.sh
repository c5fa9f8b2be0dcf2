#!/usr/bin/env bash
# systemd units: `systemd-analyze verify` passes, and the sandbox keeps the exposure
# score of `systemd-analyze security` at or below 2.0 ("OK"). Skipped (loudly) when
# systemd-analyze is not installed (apt-get install systemd).
set -eu
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
if ! command -v systemd-analyze >/dev/null; then
  echo "NOTICE: systemd-analyze not installed; skipping unit checks"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# verify checks that ExecStart's binary exists: point it at the build.
sed "s|/usr/local/bin/effdetd|$PWD/$BUILD/effdetd|" systemd/effdetd.service >"$tmp/effdetd.service"
cp systemd/effdetd.socket "$tmp/"
(cd "$tmp" && systemd-analyze verify --man=no ./effdetd.service ./effdetd.socket)
echo "verify: ok"
out=$(cd "$tmp" && systemd-analyze security --offline=yes ./effdetd.service 2>&1 | grep 'Overall exposure')
echo "$out"
score=$(echo "$out" | sed -n 's/.*: \([0-9.]*\) .*/\1/p')
awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 2.0) }' || { echo "exposure $score > 2.0"; exit 1; }
echo "security: ok"
