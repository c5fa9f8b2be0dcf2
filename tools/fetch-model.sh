#!/usr/bin/env bash
# fetch-model.sh NAME OUTDIR [--from FILE.pth] [-- CONVERT_ARGS...]
#
# Downloads the released effdet checkpoint NAME (tf_efficientdet_d0..d7, efficientdet_d0/d1:
# `tools/effdet-convert --list`) from release v0.1 of rwightman/efficientdet-pytorch,
# checks that the first 8 hex digits of its SHA-256 equal the hash in its file name
# (effdet's naming convention: <name>[_<epoch>]-<sha8>.pth), converts it with effdet-convert
# into OUTDIR/NAME.safetensors, and does nothing when that file already exists.
#
# --from FILE (or FETCH_FROM=FILE) uses a checkpoint already on disk instead of
# downloading; its name must still end in -<sha8>.pth and the hash is still checked.
# Arguments after `--` replace the converter's default `--name NAME` (e.g. --config).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)

die() { echo "fetch-model: $*" >&2; exit 1; }

# The release URL of NAME: the converter holds the one table of release files.
release_url() {
    "$here/effdet-convert" --release-url "$1" 2>/dev/null
}

# The 8 hex digits between the last '-' and '.pth' of a checkpoint's file name.
name_hash() {
    local base
    base=$(basename "$1")
    [[ "$base" =~ -([0-9a-f]{8})\.pth$ ]] || return 1
    echo "${BASH_REMATCH[1]}"
}

# Prints the problem and fails when the file's SHA-256 does not start with its name's hash.
verify_hash() {
    local file=$1 want got
    want=$(name_hash "$file") || { echo "$file: file name has no -<8 hex digits>.pth hash to verify against"; return 1; }
    got=$(sha256sum "$file" | cut -c1-8)
    [ "$got" = "$want" ] || { echo "$file: SHA-256 starts with $got but the file name says $want (corrupt or wrong file)"; return 1; }
}

download() {
    local url=$1 dest=$2
    if command -v curl >/dev/null; then
        curl -fL --connect-timeout 20 --retry 3 -o "$dest" "$url"
    elif command -v wget >/dev/null; then
        wget --timeout=20 --tries=3 -O "$dest" "$url"
    else
        die "neither curl nor wget is installed"
    fi
}

[ $# -ge 2 ] || die "usage: fetch-model.sh NAME OUTDIR [--from FILE.pth] [-- CONVERT_ARGS...]"
name=$1 outdir=$2
shift 2
from=${FETCH_FROM:-}
convert_args=(--name "$name")
while [ $# -gt 0 ]; do
    case "$1" in
    --from) [ $# -ge 2 ] || die "--from needs a file"; from=$2; shift 2 ;;
    --) shift; convert_args=("$@"); break ;;
    *) die "unknown argument $1" ;;
    esac
done

out="$outdir/$name.safetensors"
if [ -e "$out" ]; then
    echo "fetch-model: $out already exists, nothing to do"
    exit 0
fi
mkdir -p "$outdir"

if [ -n "$from" ]; then
    [ -f "$from" ] || die "$from: no such file"
    checkpoint=$from
else
    url=$(release_url "$name") || die "unknown model '$name' (released: see tools/effdet-convert --list)"
    file=$(basename "$url")
    checkpoint="$outdir/$file"
    if [ ! -f "$checkpoint" ]; then
        echo "fetch-model: downloading $url"
        download "$url" "$checkpoint.part" || { rm -f "$checkpoint.part"; die "download of $file failed"; }
        mv "$checkpoint.part" "$checkpoint"
    fi
fi
if ! problem=$(verify_hash "$checkpoint"); then
    # A bad download must not be kept: the next run would find it and fail again.
    [ -n "$from" ] || rm -f "$checkpoint"
    die "$problem"
fi

# Convert next to the destination and rename: an interrupted run never leaves a
# half-written model that the next run would skip as "already there".
tmp=$(mktemp --suffix=.safetensors "$outdir/.$name.XXXXXX")
trap 'rm -f "$tmp"' EXIT
"$here/effdet-convert" "$checkpoint" "$tmp" "${convert_args[@]}"
mv "$tmp" "$out"
trap - EXIT
echo "fetch-model: wrote $out"
