#!/usr/bin/env bash
# Install Debian's chromium for the headless UI test when it is missing (placeholder, see issue 4).
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
echo "installing Debian's chromium for the UI test"
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
