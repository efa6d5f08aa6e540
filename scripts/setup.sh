#!/usr/bin/env bash
# Creates .venv and installs nmt with its test extras. On a CPU-only machine the constraints
# file pins torch 2.13.0 (the local CPU build); GPU users can `pip install -e .` without it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -c constraints.txt torch==2.13.0
.venv/bin/pip install -q -c constraints.txt -e '.[dev,plot,serve]'
