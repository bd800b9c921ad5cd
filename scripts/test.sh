#!/usr/bin/env bash
# Second command of the README: install (with test tools and PostgreSQL),
# lint, type-check, check the layer contracts, then run every test tier.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh --test
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
.venv/bin/lint-imports --no-cache --no-logo  # layer contracts: [tool.importlinter] in pyproject.toml
exec .venv/bin/pytest -q "$@"
