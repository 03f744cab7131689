#!/usr/bin/env bash
# Build bench/.venv-pg: disquette (editable, with psycopg) next to the PostgreSQL peers
# pgqueuer and procrastinate, so bench/bench_postgres.py measures them in the same run.
# Their dependencies (asyncpg, pydantic, ...) stay out of the project's own .venv.
#
#     bash bench/setup_postgres_peers.sh && bench/.venv-pg/bin/python bench/bench_postgres.py
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-pg"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet \
    -e "$here/.." \
    "psycopg[binary]>=3.1" "psycopg_pool>=3.2" \
    "pgqueuer>=0.19" "procrastinate>=3.0" "asyncpg>=0.29"
"$venv/bin/python" - <<'EOF'
from importlib.metadata import version
for name in ("disquette", "psycopg", "pgqueuer", "procrastinate", "asyncpg"):
    print(f"{name:14} {version(name)}")
EOF
