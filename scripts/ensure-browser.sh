#!/usr/bin/env bash
# What the headless UI test needs, installed only when missing (idempotent, no browser downloads):
#   - Debian's chromium (/usr/bin/chromium) and fonts from Debian's packages;
#   - the `playwright` Python package in the venv (PyPI, pinned by constraints.txt).
# Never `playwright install`: the test drives /usr/bin/chromium through executable_path.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"

need_apt=()
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
dpkg -s fonts-liberation >/dev/null 2>&1 || need_apt+=(fonts-liberation)

if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "installing from Debian's packages: ${need_apt[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! "$VENV/bin/python" -c "import playwright.sync_api" >/dev/null 2>&1; then
  pin="$(grep -E '^playwright==' constraints.txt || echo playwright)"
  echo "installing $pin into $VENV from PyPI"
  uv pip install -q -p "$VENV" "$pin"
fi

/usr/bin/chromium --version >/dev/null 2>&1 || { echo "chromium does not start" >&2; exit 1; }
