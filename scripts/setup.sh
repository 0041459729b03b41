#!/usr/bin/env bash
# Idempotent set-up of a development / CI machine for Sígueme.
#
#   scripts/setup.sh                 Debian packages (when root) + Python venv + web libraries
#   scripts/setup.sh --python-only   only the venv (.venv, pip install -e '.[test]')
#   scripts/setup.sh --system-only   only the Debian packages
#   scripts/setup.sh --node-only     only the web libraries (node_modules)
#   scripts/setup.sh --no-system     the venv and the web libraries, no Debian packages
#
# Debian packages: postgresql, postgresql-15-postgis-3, redis-server and
# docker-compose (the test command starts throw-away PostgreSQL/PostGIS and
# Redis servers; tests/test_compose.py validates docker-compose.yml); chromium,
# chromium-driver and fonts-liberation (the web pages' end-to-end tests drive
# headless Chromium; the font keeps their screenshots alike across machines).
# As root, missing ones are installed with apt-get; otherwise they are named.
#
# The venv step is skipped while .venv/.sigueme-setup.sha256 matches the
# sha256 of pyproject.toml (delete that file, or .venv, to force a reinstall).
# PYTHON picks the interpreter for a new venv (default: python3, >= 3.11).
#
# Web libraries: the browser libraries the service serves itself (Leaflet),
# pinned in package.json and package-lock.json, installed from the npm registry
# with `npm ci --omit=dev --ignore-scripts` into node_modules (needs Node.js and
# npm). Skipped while node_modules/.sigueme-setup.sha256 matches the lock file.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DEB_PACKAGES=(
    postgresql postgresql-15-postgis-3 redis-server docker-compose
    chromium chromium-driver fonts-liberation
)
VENV="$ROOT/.venv"
STAMP="$VENV/.sigueme-setup.sha256"
NODE_MODULES="$ROOT/node_modules"
NODE_STAMP="$NODE_MODULES/.sigueme-setup.sha256"

log() { printf 'setup: %s\n' "$*" >&2; }

setup_system() {
    if ! command -v dpkg-query >/dev/null; then
        log "WARNING: no dpkg-query (not Debian?): make sure these are installed: ${DEB_PACKAGES[*]}"
        return 0
    fi
    local missing=() pkg status
    for pkg in "${DEB_PACKAGES[@]}"; do
        status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
        [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        log "Debian packages present: ${DEB_PACKAGES[*]}"
        return 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
        log "WARNING: missing Debian packages: ${missing[*]}"
        log "         install them as root:  sudo apt-get install --no-install-recommends ${missing[*]}"
        log "         (the test command needs them unless SIGUEME_TEST_POSTGRES_DSN and SIGUEME_TEST_REDIS_URL point at servers you run)"
        return 0
    fi
    log "installing missing Debian packages: ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

setup_python() {
    local python="${PYTHON:-python3}"
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating $VENV with $("$python" --version 2>&1)"
        "$python" -m venv "$VENV"
    fi
    local want have=""
    want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
    [[ -f "$STAMP" ]] && have="$(cat "$STAMP")"
    if [[ "$want" == "$have" && -x "$VENV/bin/pytest" ]]; then
        log "Python environment up to date (pyproject.toml unchanged)"
        return 0
    fi
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    log "upgrading pip"
    "$VENV/bin/python" -m pip install --progress-bar off --upgrade pip
    log "installing -e '.[test]'"
    "$VENV/bin/python" -m pip install --progress-bar off -e '.[test]'
    printf '%s\n' "$want" >"$STAMP"
}

setup_node() {
    local want have=""
    want="$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)"
    [[ -f "$NODE_STAMP" ]] && have="$(cat "$NODE_STAMP")"
    if [[ "$want" == "$have" && -f "$NODE_MODULES/leaflet/dist/leaflet.js" ]]; then
        log "web libraries up to date (package-lock.json unchanged)"
        return 0
    fi
    if ! command -v npm >/dev/null; then
        log "ERROR: npm not found: install Node.js (>= 18) and npm, then run scripts/setup.sh again"
        log "       (the service serves Leaflet from node_modules; without it the map pages cannot draw)"
        return 1
    fi
    log "installing the web libraries (npm ci --omit=dev --ignore-scripts)"
    npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2
    printf '%s\n' "$want" >"$NODE_STAMP"
}

main() {
    local do_system=1 do_python=1 do_node=1
    case "${1:-}" in
    "") ;;
    --python-only) do_system=0 do_node=0 ;;
    --system-only) do_python=0 do_node=0 ;;
    --node-only) do_system=0 do_python=0 ;;
    --no-system) do_system=0 ;;
    -h | --help)
        sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        return 0
        ;;
    *)
        log "unknown option: $1 (try --help)"
        return 2
        ;;
    esac
    if ((do_system)); then setup_system; fi
    if ((do_python)); then setup_python; fi
    if ((do_node)); then setup_node; fi
}

main "$@"
