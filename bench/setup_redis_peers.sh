#!/usr/bin/env bash
# Install the Redis peers bench/bench_redis.py compares against into their own venv
# (bench/.venv-redis, git-ignored), never into the project's .venv.
#
#     bash bench/setup_redis_peers.sh      # then: bench/.venv-redis/bin/python bench/bench_redis.py
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-redis"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -e "$here/.." "redis[hiredis]>=5" \
    "rq>=2.0" "dramatiq[redis]>=1.17" "arq>=0.26" "saq>=0.22" "celery[redis]>=5.4" \
    "taskiq>=0.11,<0.13" "taskiq-redis>=1.0" "huey>=2.5" "kombu>=5.4,<5.5" packaging
# arq and taskiq-redis 1.0 cap redis-py below 6, kombu 5.5+ wants 6.4+ for its Redis transport:
# kombu stays at 5.4, and taskiq below 0.13 to match the taskiq-redis the resolver keeps.
"$venv/bin/python" - <<'PY'
from importlib.metadata import version
for name in ["redis", "rq", "dramatiq", "arq", "saq", "celery", "taskiq", "taskiq-redis", "huey"]:
    print(f"{name} {version(name)}")
PY
