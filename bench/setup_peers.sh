#!/usr/bin/env bash
# Install the peers the worker benchmark compares against into their own venv
# (bench/.venv-peers, git-ignored), never into the project's .venv.
#
#     bash bench/setup_peers.sh            # then: .venv/bin/python bench/bench_worker.py
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-peers"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "huey>=2.5"
"$venv/bin/python" -c "import huey; print('huey', huey.__version__, 'in', '$venv')"
