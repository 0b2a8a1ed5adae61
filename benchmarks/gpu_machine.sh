#!/usr/bin/env bash
# On the GPU machine (the `device` tool: Python 3.12 with pytest, PyTorch and CuPy; no internet):
# the sample project through the local backend, then through the Modal backend against the local
# Modal server (../shared/modal-mock, copied to .gpu-carry/modal-mock), whose emulated containers
# see the machine's GPU. Wheels travel in .whl (modal 1.5.4 and friends, junitparser, defusedxml)
# and .gpu-carry/build-wheels (hatchling, editables: the container installs the sample project).
#   device run: bash benchmarks/gpu_machine.sh   (carry: .whl, .gpu-carry)
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
  .gpu-carry/build-wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 MODAL_GPU_ACTION_PYTHON=python3
sample=examples/sample-project
# The emulated container installs the sample project (uv pip install --no-deps -e) with no
# network: it builds with the hatchling on PYTHONPATH instead of fetching one. The container gets
# these through the `env` input (a Modal secret), as a user's settings would.
offline="UV_OFFLINE=1
UV_NO_BUILD_ISOLATION=1"

echo "=== nvidia-smi"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "=== local backend"
time python3 -m modal_gpu_action run --backend local --working-directory $sample \
  --junit-xml /tmp/local-junit.xml --summary-file "$OUT/local-summary.md" --comment-file "$OUT/local-comment.md"
echo "exit code: $?"

echo "=== Modal backend against the local Modal server"
python3 .gpu-carry/modal-mock/modal_mock.py --state "$OUT/modal-state.json" --seconds 600 > /tmp/mock.json 2>/tmp/mock.err &
for _ in $(seq 100); do [ -s /tmp/mock.json ] && break; sleep 0.2; done
read -r url token_id token_secret < <(python3 -c 'import json,sys; d=json.load(open("/tmp/mock.json")); print(d["url"], d["token_id"], d["token_secret"])')
export MODAL_SERVER_URL=$url MODAL_TOKEN_ID=$token_id MODAL_TOKEN_SECRET=$token_secret
time python3 -m modal_gpu_action run --backend modal --gpu H100 --working-directory $sample --env "$offline" \
  --junit-xml "$OUT/modal-junit.xml" --summary-file "$OUT/modal-summary.md" --comment-file "$OUT/modal-comment.md"
echo "exit code: $?"
echo "=== Modal backend, shards: 2 (two containers at once on the one GPU)"
time python3 -m modal_gpu_action run --backend modal --gpu H100 --shards 2 --working-directory $sample --env "$offline" \
  --junit-xml /tmp/modal-shards-junit.xml --summary-file /tmp/modal-shards-summary.md
echo "exit code: $?"
python3 - "$OUT/modal-state.json" <<'PY'
import json, sys
state = json.load(open(sys.argv[1]))
print("functions:", {k: {"gpu": v["gpu"], "timeout_secs": v["timeout_secs"], "retries": v["retries"]} for k, v in state["functions"].items()})
print("calls:", state["calls"])
PY
tail -3 /tmp/mock.err
