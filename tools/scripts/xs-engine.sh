#!/usr/bin/env bash
# Builds the XS engine's xsnap worker for the firmware simulator from the @agoric/xsnap
# tarball pinned in firmware/sim/engine/xs-engine.json: fetched with `npm pack` (the
# registry, through npm's cache), its sha512 checked against the pin, unpacked and
# compiled with the package's own makefile into .local/xs/<version>/. Idempotent.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PIN=firmware/sim/engine/xs-engine.json
pkg="$(node -p "require('./$PIN').package")"
version="$(node -p "require('./$PIN').version")"
integrity="$(node -p "require('./$PIN').integrity")"
dest=".local/xs/$version"
worker="$dest/xsnap-native/xsnap/build/bin/lin/release/xsnap-worker"

[ -x "$worker" ] && [ "$(cat "$dest/.integrity" 2>/dev/null)" = "$integrity" ] && exit 0

printf '\033[1;34msetup:\033[0m %s\n' "building the XS engine ($pkg@$version sources, ~1 min)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack "$pkg@$version" --silent >/dev/null)
tarball="$(ls "$work"/*.tgz)"
got="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [ "$got" != "$integrity" ]; then
  printf '\033[1;31msetup: %s\033[0m\n' "$pkg@$version tarball integrity $got does not match the pin in $PIN" >&2
  exit 1
fi
tar -xzf "$tarball" -C "$work"
rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
mv "$work/package" "$dest"
make -C "$dest/xsnap-native/xsnap/makefiles/lin" -f xsnap-worker.mk \
  MODDABLE="$ROOT/$dest/moddable" GOAL=release XSNAP_VERSION="$version" \
  -j"$(nproc)" >/dev/null
[ -x "$worker" ] || { printf '\033[1;31msetup: %s\033[0m\n' "the XS worker was not built ($worker)" >&2; exit 1; }
echo "$integrity" > "$dest/.integrity"
