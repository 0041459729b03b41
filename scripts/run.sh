#!/usr/bin/env bash
# The run command: scripts/run.sh [sigueme arguments...]
#
# Sets up the .venv and the web libraries (no Debian packages: the embedded default
# needs no servers)
# and runs `sigueme` with the arguments given. Without arguments it serves on the
# embedded default: SQLite in ./sigueme.db (migrated on start), in-process queues,
# http://127.0.0.1:8000. Examples:
#   scripts/run.sh                                   # the service
#   scripts/run.sh users add ana --role admin        # the first account and its token
#   scripts/run.sh replay ROUTE TRACE                # any other sigueme command
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh --no-system >&2
if [[ $# -eq 0 ]]; then
    set -- serve
fi
exec .venv/bin/sigueme "$@"
