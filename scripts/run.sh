#!/usr/bin/env bash
# The run command: scripts/run.sh [sigueme arguments...]
#
# Sets up the .venv (Python packages only: the embedded default needs no servers)
# and runs `sigueme` with the arguments given. Without arguments it replays the
# sample trip shipped with the package (a detour in Cuernavaca), so a newcomer sees
# the monitor at work.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh --python-only >&2
if [[ $# -eq 0 ]]; then
    samples=sigueme/replay/samples
    set -- replay "$samples/cuernavaca_route.geojson" "$samples/cuernavaca_detour.csv"
fi
exec .venv/bin/sigueme "$@"
