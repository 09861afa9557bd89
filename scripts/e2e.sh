#!/usr/bin/env bash
# End-to-end test of `hearth serve` with the official OpenAI Python SDK.
#
# Creates a virtualenv (pinned openai + pytest), builds the release binary,
# writes a random-weight test model with the real Qwen2 vocabulary, and runs
# tests/e2e with pytest. Environment:
#   E2E_VENV   where the virtualenv lives (default target/e2e-venv; reused)
#   PYTHON     interpreter used to create it (default python3)
#   HEARTH_BIN use this binary instead of building target/release/hearth
set -euo pipefail
cd "$(dirname "$0")/.."

OPENAI_VERSION=3.57.0
PYTEST_VERSION=9.2.0
VENV="${E2E_VENV:-target/e2e-venv}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "openai==$OPENAI_VERSION" "pytest==$PYTEST_VERSION"

if [ -z "${HEARTH_BIN:-}" ]; then
    cargo build --release -p hearth-cli
    HEARTH_BIN="$PWD/target/release/hearth"
fi
export HEARTH_BIN

MODEL_DIR="target/e2e-models"
mkdir -p "$MODEL_DIR"
export HEARTH_TEST_MODEL="$PWD/$MODEL_DIR/tiny-qwen2.gguf"
cargo run --release -q -p hearth-server --example make_test_model -- "$HEARTH_TEST_MODEL" tiny

exec "$VENV/bin/python" -m pytest -q tests/e2e "$@"
