#!/usr/bin/env bash
# Fetches the wasm3 interpreter's C sources for the plugin host: the pywasm3 source distribution
# pinned in firmware/native/wasm/wasm3.json, downloaded from PyPI with pip, its sha256 checked, its
# wasm3/ folder unpacked into .local/wasm3/<version>/ (what the simulator's worker and the ESP32
# manifest compile). Idempotent.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PIN=firmware/native/wasm/wasm3.json
field() { node -p "require('./$PIN').$1"; }
package="$(field package)"
version="$(field version)"
file="$(field file)"
sha256="$(field sha256)"
dest=".local/wasm3/$version"

[ -f "$dest/wasm3/wasm3.h" ] && [ "$(cat "$dest/.sha256" 2>/dev/null)" = "$sha256" ] && exit 0

die() { printf '\033[1;31msetup: %s\033[0m\n' "$*" >&2; exit 1; }
python=""
for candidate in python3 python; do
  if command -v "$candidate" >/dev/null && "$candidate" -m pip --version >/dev/null 2>&1; then python="$candidate"; break; fi
done
[ -n "$python" ] || die "pip is needed to fetch the wasm3 sources ($package==$version from PyPI); install python3-pip"

printf '\033[1;34msetup:\033[0m %s\n' "fetching the wasm3 sources ($package==$version from PyPI)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$python" -m pip download --quiet --no-binary :all: --no-deps "$package==$version" -d "$work" >/dev/null
[ -f "$work/$file" ] || die "pip did not download $file"
got="$(sha256sum "$work/$file" | cut -d' ' -f1)"
[ "$got" = "$sha256" ] || die "$file sha256 $got does not match the pin in $PIN"
tar -xzf "$work/$file" -C "$work"
rm -rf "$dest"
mkdir -p "$dest"
mv "$work/$package-$version/wasm3" "$dest/wasm3"
cp "$work/$package-$version/LICENSE" "$dest/LICENSE"
echo "$sha256" > "$dest/.sha256"
