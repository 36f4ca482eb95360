#!/usr/bin/env bash
# The test command: installs what it needs into .venv, then runs the whole suite.
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
exec .venv/bin/python -m pytest -q "$@"
