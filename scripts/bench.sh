#!/usr/bin/env bash
# Benchmarks: scripts/bench.sh [geo|store|live|alerts] [options of that sigueme bench command...]
#
#   scripts/bench.sh geo      fixes/s through the geo core, beside PostGIS per fix
#   scripts/bench.sh store    fixes/s written into PostGIS and SQLite
#   scripts/bench.sh live     fixes/s and ack latency of one `sigueme serve` worker on
#                             PostGIS and Redis, driven by simulated phones on websockets
#   scripts/bench.sh alerts   under that load, fix to alert on the police stream and on a
#                             dispatcher's feed, signal loss after its timeout, and the
#                             monitor's false and missed off_route on simulated trips
#
# Sets up the .venv (scripts/setup.sh), starts throw-away PostgreSQL/PostGIS and
# Redis like the test command does (unless SIGUEME_TEST_POSTGRES_DSN is set), runs
# `sigueme bench WHAT --postgres-dsn ...` and stops the servers. `store`, `live` and
# `alerts` create their own database on that server and drop it afterwards.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh >&2
what="${1:-geo}"
[[ $# -gt 0 ]] && shift
case "$what" in
geo | store | live | alerts) ;;
*)
    echo "usage: scripts/bench.sh [geo|store|live|alerts] [options...]" >&2
    exit 2
    ;;
esac
if [[ -z "${SIGUEME_TEST_POSTGRES_DSN:-}" ]]; then
    # shellcheck source=scripts/services.sh
    source scripts/services.sh
    trap 'sigueme_services_stop' EXIT
    sigueme_services_start
fi
if [[ "$what" == live || "$what" == alerts ]]; then
    set -- --redis-url "${SIGUEME_TEST_REDIS_URL:?SIGUEME_TEST_REDIS_URL is not set}" "$@"
fi
.venv/bin/sigueme bench "$what" --postgres-dsn "$SIGUEME_TEST_POSTGRES_DSN" "$@"
