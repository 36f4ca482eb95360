#!/usr/bin/env bash
# The test command: installs what it needs into .venv, lints and type-checks, then runs the
# whole suite.
# Needs redis-server (the tests start their own) and chromium (the browser tests).
GLIMPSE_EXTRAS="${GLIMPSE_EXTRAS-dev,peers,torch,bench}" GLIMPSE_DEBS="redis-server chromium" \
  source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest -q "$@"
