#!/usr/bin/env bash
# The test command: scripts/test.sh [pytest arguments...]
#
#  1. scripts/setup.sh (Debian packages when root, the .venv).
#  2. Lint stages, each failing the run: ruff check, ruff format --check, mypy,
#     lint-imports. Skip them with SIGUEME_TEST_SKIP_LINT=1 for quick loops.
#  3. Servers: if SIGUEME_TEST_POSTGRES_DSN and SIGUEME_TEST_REDIS_URL are both
#     set, the tests use those servers; otherwise throw-away PostgreSQL/PostGIS
#     and Redis start on free loopback ports (scripts/services.sh) and are
#     stopped, and their directory removed, when this script exits for any reason.
#  4. pytest "$@"; the script exits with pytest's exit code (5, no tests
#     collected, is a failure too).

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

stage() { printf '\n===== %s =====\n' "$*"; }

stage "setup"
scripts/setup.sh

if [[ "${SIGUEME_TEST_SKIP_LINT:-0}" == "1" ]]; then
    stage "lint: skipped (SIGUEME_TEST_SKIP_LINT=1)"
else
    failed=()
    stage "lint: ruff check"
    .venv/bin/ruff check . || failed+=("ruff check")
    stage "lint: ruff format --check"
    .venv/bin/ruff format --check . || failed+=("ruff format --check")
    stage "types: mypy"
    .venv/bin/mypy || failed+=("mypy")
    stage "architecture: lint-imports"
    .venv/bin/lint-imports || failed+=("lint-imports")
    if ((${#failed[@]})); then
        stage "FAILED: ${failed[*]}"
        echo "Fix the stages above (ruff format . rewrites formatting), or set SIGUEME_TEST_SKIP_LINT=1 to skip them locally." >&2
        exit 1
    fi
fi

if [[ -n "${SIGUEME_TEST_POSTGRES_DSN:-}" && -n "${SIGUEME_TEST_REDIS_URL:-}" ]]; then
    stage "servers: using SIGUEME_TEST_POSTGRES_DSN and SIGUEME_TEST_REDIS_URL from the environment"
else
    if [[ -n "${SIGUEME_TEST_POSTGRES_DSN:-}${SIGUEME_TEST_REDIS_URL:-}" ]]; then
        echo "note: only one of SIGUEME_TEST_POSTGRES_DSN / SIGUEME_TEST_REDIS_URL is set; starting throw-away servers for both" >&2
    fi
    stage "servers: starting throw-away PostgreSQL/PostGIS and Redis"
    # shellcheck source=scripts/services.sh
    source scripts/services.sh
    # shellcheck disable=SC2329  # invoked by the EXIT trap
    on_exit() {
        local rc=$?
        trap - EXIT INT TERM
        stage "servers: stopping"
        sigueme_services_stop
        exit "$rc"
    }
    trap on_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    sigueme_services_start
fi

stage "tests: pytest $*"
rc=0
.venv/bin/python -m pytest "$@" || rc=$?
if ((rc == 5)); then
    echo "pytest collected no tests (exit code 5): that is a failure." >&2
fi
exit "$rc"
