#!/usr/bin/env bash
# Benchmarks: scripts/bench.sh [geo] [sigueme bench geo options...]
#
# Sets up the .venv (scripts/setup.sh), starts throw-away PostgreSQL/PostGIS and
# Redis like the test command does (unless SIGUEME_TEST_POSTGRES_DSN is set), runs
# `sigueme bench geo --postgres-dsn ...` and stops the servers.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh >&2
what="${1:-geo}"
[[ $# -gt 0 ]] && shift
if [[ -z "${SIGUEME_TEST_POSTGRES_DSN:-}" ]]; then
    # shellcheck source=scripts/services.sh
    source scripts/services.sh
    trap 'sigueme_services_stop' EXIT
    sigueme_services_start
fi
.venv/bin/sigueme bench "$what" --postgres-dsn "$SIGUEME_TEST_POSTGRES_DSN" "$@"
