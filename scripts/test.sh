#!/usr/bin/env bash
# Install everything into .venv and run the whole test suite (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services.sh
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
.venv/bin/ruff check .
# The layers of docs/architecture.md, and no import cycles (contracts in .importlinter).
.venv/bin/lint-imports --no-logo --no-cache

set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "tests: pytest collected no tests - that is a failure here" >&2
  exit 1
fi
exit "$status"
