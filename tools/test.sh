#!/usr/bin/env bash
# Everything Spindle's tests need, installed on a fresh Debian machine (as
# root, with the apt, PyPI and npm registries reachable), then every test:
# the Rust workspace under cargo-nextest, and the interop suite in which real
# clients that others wrote (kcat, confluent-kafka/librdkafka, kafka-python,
# kafkajs) talk to a real `spindle serve` (tools/interop).
#
# Idempotent: each install step runs only when its result is missing, so a
# second run goes straight to the tests. Exits non-zero if any test failed;
# both runners run either way, so one run shows every failure.
#
#   bash tools/test.sh            # what CI runs (.ci/run)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/target/interop-venv"
JS_DIR="$ROOT/tools/interop/js"
APT_PACKAGES=(kcat librdkafka-dev python3-venv fio iproute2)

step() { printf '\n==> %s\n' "$*"; }

# --- system packages -------------------------------------------------------
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
    step "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- Python clients --------------------------------------------------------
if [[ ! -x "$VENV/bin/python" ]]; then
    step "python venv at target/interop-venv"
    mkdir -p "$ROOT/target"
    python3 -m venv "$VENV"
fi
# Already-satisfied pins are checked locally, without the network.
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r tools/interop/requirements.txt

# --- kafkajs ---------------------------------------------------------------
lock="$JS_DIR/package-lock.json"
stamp="$JS_DIR/node_modules/.spindle-lock"
if [[ ! -f "$stamp" ]] || ! cmp -s "$lock" "$stamp"; then
    step "npm ci in tools/interop/js"
    (cd "$JS_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$lock" "$stamp"
fi

# --- build -----------------------------------------------------------------
step "cargo build --release -p spindle-tools -p spindle-bench"
cargo build --release -p spindle-tools -p spindle-bench

if ! cargo nextest --version >/dev/null 2>&1; then
    step "cargo install cargo-nextest"
    cargo install cargo-nextest --locked
fi

# --- tests -----------------------------------------------------------------
status=0

step "cargo nextest run --workspace"
cargo nextest run --workspace --no-fail-fast || status=1

step "pytest tools/interop"
# Exit code 5 (no tests collected) is a failure too: the suite must run.
"$VENV/bin/pytest" -q tools/interop || status=1

if ((status)); then
    echo "tools/test.sh: FAILED (see the runners' summaries above)" >&2
else
    echo "tools/test.sh: all tests passed"
fi
exit "$status"
