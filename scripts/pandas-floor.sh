#!/usr/bin/env bash
# The operator tests under the oldest pandas the operators extra accepts: pandas 1.3.5, what
# the ModelArts base image pins (no wheel of it exists for Python 3.11 or newer, so this
# needs a Python 3.10), with its numpy and the oldest pyarrow the extra accepts.
#
#   bash scripts/pandas-floor.sh [PYTHON3.10]     default: python3.10 on the PATH
#
# Builds a throwaway virtual environment (PANDAS_FLOOR_VENV, default /tmp/pandas-floor),
# runs tests/templates/adapters/test_modelarts.py and tests/templates/adapters/test_clearml.py with the
# checkout on PYTHONPATH; tests of the torch backbone skip (no torch there).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${1:-python3.10}
VENV=${PANDAS_FLOOR_VENV:-/tmp/pandas-floor}
command -v "$PYTHON" > /dev/null || { echo "pandas-floor: $PYTHON not found" >&2; exit 2; }

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q "pandas==1.3.5" "numpy==1.21.6" "pyarrow==14.0.2" \
    omegaconf pyyaml xxhash tqdm pillow pytest pytest-timeout hypothesis
"$VENV/bin/python" -c 'import pandas, pyarrow; print("pandas", pandas.__version__, "pyarrow", pyarrow.__version__)'
PYTHONPATH="$PWD" "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
    tests/templates/adapters/test_modelarts.py tests/templates/adapters/test_clearml.py
