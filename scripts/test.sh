#!/usr/bin/env bash
# The test suite, in two workers (pytest-xdist), each test file in one of them so that a file's
# fixtures are made once.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/python -m pytest tests -n 2 --dist loadfile "$@"
