#!/usr/bin/env bash
# Install speed (issue 14): the locked app dependencies (requirements.txt) into a new venv, with
# pip (what `make install` used before) and with uv (what it uses now), both with empty caches,
# alternated in one run. Usage: bash bench/install_speed.sh [ROUNDS]   (default 1)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-1}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/uv-bootstrap"
"$work/uv-bootstrap/bin/python" -m pip install -q "uv==$(sed -n 's/^UV_VERSION := //p' Makefile)"
uv="$work/uv-bootstrap/bin/uv"
for round in $(seq "$rounds"); do
  for tool in pip uv; do
    rm -rf "$work/venv" && python3 -m venv "$work/venv"
    start=$(date +%s.%N)
    if [ "$tool" = pip ]; then
      "$work/venv/bin/python" -m pip install -q --no-cache-dir -r requirements.txt 2>&1 | grep -v '^WARNING: Location' || true
    else
      "$uv" pip install -q --no-cache --python "$work/venv/bin/python" -r requirements.txt
    fi
    end=$(date +%s.%N)
    printf 'round %s  %-3s  %6.1f s  (load %s)\n' "$round" "$tool" "$(echo "$end - $start" | bc)" "$(cut -d' ' -f1 /proc/loadavg)"
  done
done
