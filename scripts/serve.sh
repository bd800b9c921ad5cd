#!/usr/bin/env bash
# First command of the README: install, then run `jcs serve` on the embedded
# defaults (SQLite + a local user space under ./jcs-data, 127.0.0.1:7890).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
exec .venv/bin/jcs serve --data-dir "${JCS_DATA_DIR:-./jcs-data}" "$@"
