#!/usr/bin/env bash
# Builds the simulator's XS worker with our native modules: the stock xsnap-worker's objects (built
# by xs-engine.sh from the pinned @agoric/xsnap sources, unchanged) linked with the wasm3 core
# (wasm3.sh), the plugin host's native half (firmware/native/wasm) and the glue that hands their C
# functions to the simulator (firmware/sim/engine/worker), through `-Wl,--wrap=fxCreateMachine`,
# and the artifact signature check (firmware/native/signature) with Debian's mbedTLS (setup.sh).
# One binary serves every simulated device. Idempotent: rebuilt when any input changes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
xs_version="$(node -p "require('./firmware/sim/engine/xs-engine.json').version")"
wasm3_version="$(node -p "require('./firmware/native/wasm/wasm3.json').version")"
XS=".local/xs/$xs_version"
WASM3=".local/wasm3/$wasm3_version/wasm3"
STOCK_OBJECTS="$XS/xsnap-native/xsnap/build/tmp/lin/release/xsnap-worker"
OUT=".local/xs/kestrel-worker"
worker="$OUT/kestrel-xsnap-worker"
OURS=(firmware/native/*/*.c firmware/native/*/*.h firmware/sim/engine/worker/*.c)

inputs_hash="$({ cat "$XS/.integrity" "$(dirname "$WASM3")/.sha256" "${OURS[@]}" "${BASH_SOURCE[0]}"; } | sha256sum | cut -d' ' -f1)"
[ -x "$worker" ] && [ "$(cat "$OUT/.inputs" 2>/dev/null)" = "$inputs_hash" ] && exit 0

die() { printf '\033[1;31msetup: %s\033[0m\n' "$*" >&2; exit 1; }
[ -f "$STOCK_OBJECTS/xsnap-worker.o" ] || die "the stock XS worker's objects are missing ($STOCK_OBJECTS): run tools/scripts/xs-engine.sh"
[ -f /usr/include/mbedtls/ecdsa.h ] || die "mbedTLS is missing: install Debian's libmbedtls-dev (setup.sh does when root)"
[ -f "$WASM3/wasm3.h" ] || die "the wasm3 sources are missing ($WASM3): run tools/scripts/wasm3.sh"
printf '\033[1;34msetup:\033[0m %s\n' "building the simulator's XS worker with the wasm3 plugin host (~20 s)"

rm -rf "$OUT"
mkdir -p "$OUT/obj"
# The same flags the stock worker's makefile compiles XS with, so our objects see the same machine.
XS_FLAGS=(
  -fno-common -DINCLUDE_XSPLATFORM '-DXSPLATFORM="xsnapPlatform.h"' -DmxLockdown=1 -DmxMetering=1 -DmxDebug=1
  -UmxInstrument -DmxNoConsole=1 -DmxBoundsCheck=1 -DmxParse=1 -DmxRun=1 -DmxSloppy=1 -DmxSnapshot=1
  -DmxRegExpUnicodePropertyEscapes=1 -DmxStringNormalize=1 -DmxMinusZero=1 -O3
  -I"$XS/moddable/xs/includes" -I"$XS/moddable/xs/platforms" -I"$XS/moddable/xs/sources"
  -I"$XS/xsnap-native/xsnap/sources"
)
WASM3_FLAGS=(-std=gnu11 -O2 -Dd_m3HasWASI=0 -Dd_m3HasTracer=0 -I"$WASM3")
compile() { # compile OBJECT SOURCE FLAGS...
  local object="$1" source="$2"
  shift 2
  cc "$@" -c "$source" -o "$object"
}
pids=()
for source in "$WASM3"/*.c; do
  compile "$OUT/obj/wasm3-$(basename "$source" .c).o" "$source" "${WASM3_FLAGS[@]}" -w &
  pids+=($!)
  if [ "${#pids[@]}" -ge "$(nproc)" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
for pid in "${pids[@]}"; do wait "$pid"; done
for source in firmware/native/*/*.c; do
  compile "$OUT/obj/$(basename "$source" .c).o" "$source" "${WASM3_FLAGS[@]}" "${XS_FLAGS[@]}" -Wall -Wextra -Wno-unused-parameter -Wno-format-truncation -Werror
done
compile "$OUT/obj/kestrel-natives.o" firmware/sim/engine/worker/kestrel-natives.c "${XS_FLAGS[@]}" -Wall -Werror
cc -rdynamic -Wl,--wrap=fxCreateMachine "$STOCK_OBJECTS"/*.o "$OUT"/obj/*.o -l:libmbedcrypto.a -ldl -lm -lpthread -o "$worker"
[ -x "$worker" ] || die "the simulator's XS worker was not built ($worker)"
echo "$inputs_hash" > "$OUT/.inputs"
