#!/usr/bin/env bash
# Installs everything the project needs into ./.venv (and, with --test, the
# Debian packages the test suite runs against). Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
extra=""
if [ "${1:-}" = "--test" ]; then
  extra="[test]"
  need=()
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
  # Real S3 clients of the e2e tests (tests/e2e/s3_clients.py); rclone is
  # also bench/sync.py's yardstick. The AWS CLI comes with pip (test extras).
  command -v rclone >/dev/null 2>&1 || need+=(rclone)
  command -v s3cmd >/dev/null 2>&1 || need+=(s3cmd)
  command -v restic >/dev/null 2>&1 || need+=(restic)
  # Node.js runs the AWS SDK for JavaScript of the e2e tests (tests/e2e/js).
  command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
  # The browser tests (tests/share/test_share_browser.py) drive Debian's
  # Chromium through Playwright (test extras); never `playwright install`.
  [ -x /usr/bin/chromium ] || need+=(chromium)
  if [ ${#need[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".${extra}"
if [ "${1:-}" = "--test" ]; then
  # The AWS SDK for JavaScript v3, pinned by tests/e2e/js/package-lock.json.
  npm ci --prefix tests/e2e/js --silent --no-audit --no-fund
fi
