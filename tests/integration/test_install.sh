#!/usr/bin/env bash
# `make install` / `make uninstall` with DESTDIR and PREFIX: every file lands where the
# unit file and the man pages say, the installed configuration parses and points at
# the service's models directory, and uninstall leaves only the configuration.
set -eu
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
make --no-print-directory -s install BUILD="$BUILD" -o "$BUILD/effdetd" -o "$BUILD/effdet-detect" -o "$BUILD/effdet-eval" DESTDIR="$dest" PREFIX=/usr >/dev/null
for f in usr/bin/effdetd usr/bin/effdet-detect usr/bin/effdet-eval usr/share/man/man1/effdet-eval.1 etc/effdetd/effdetd.conf usr/share/effdetd/coco-labels.txt \
  usr/lib/systemd/system/effdetd.service usr/lib/systemd/system/effdetd.socket \
  usr/share/man/man8/effdetd.8 usr/share/man/man5/effdetd.conf.5; do
  [ -f "$dest/$f" ] || { echo "missing $f"; exit 1; }
done
grep -q '^ExecStart=/usr/bin/effdetd --config /etc/effdetd/effdetd.conf$' "$dest/usr/lib/systemd/system/effdetd.service"
grep -q '^models_dir /var/lib/effdetd/models$' "$dest/etc/effdetd/effdetd.conf"
models=$(mktemp -d)
cp tests/fixtures/weights.safetensors "$models/"
"$dest/usr/bin/effdetd" --config "$dest/etc/effdetd/effdetd.conf" --models-dir "$models" --check-config >/dev/null
rm -rf "$models"
echo "modified" >>"$dest/etc/effdetd/effdetd.conf"
make --no-print-directory -s install BUILD="$BUILD" -o "$BUILD/effdetd" -o "$BUILD/effdet-detect" -o "$BUILD/effdet-eval" DESTDIR="$dest" PREFIX=/usr >/dev/null
tail -1 "$dest/etc/effdetd/effdetd.conf" | grep -q modified # an existing config is kept
make --no-print-directory -s uninstall DESTDIR="$dest" PREFIX=/usr >/dev/null
left=$(cd "$dest" && find . -type f | sort)
[ "$left" = "./etc/effdetd/effdetd.conf" ] || { echo "left behind: $left"; exit 1; }
echo "install/uninstall: ok"
