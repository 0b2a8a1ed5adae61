#!/usr/bin/env bash
# On the GPU machine (the `device` tool: python3 is its PyTorch venv with pytest, PyTorch and
# CuPy; no internet): the sample project through the local backend, then through the Modal
# backend with a PyTorch registry image against the local Modal server (../shared/modal-mock,
# copied to .gpu-carry/modal-mock) started with --build-images: the image recipe's layers are
# built for real, offline, from carried wheels, and the registry image is this machine itself
# (--registry 'nvcr.io/nvidia/pytorch=host': its root and its PyTorch Python), so the GPU tests
# run in the Python the recipe resolved, on the machine's GPU.
#
# Carry:  .whl                 the client and the server: modal 1.5.4 and its dependencies,
#                              pytest-asyncio, PyJWT, junitparser, defusedxml, pathspec, packaging
#         .gpu-carry/wheels    what the recipe installs: pytest, hatchling, editables and
#                              hatchling's dependencies (the server passes UV_FIND_LINKS and
#                              PIP_FIND_LINKS to every build step and container)
#         .gpu-carry/modal-mock
#   device run: bash benchmarks/gpu_machine.sh   (carry: .whl, .gpu-carry)
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 MODAL_GPU_ACTION_PYTHON=python3
sample=examples/sample-project
image=nvcr.io/nvidia/pytorch:25.01-py3
wheels=$PWD/.gpu-carry/wheels
# Image layers live on another filesystem than an overlay root (the server says why).
cache=/tmp/modal-images; findmnt -n -o FSTYPE / | grep -q overlay && cache=/dev/shm/modal-images

echo "=== nvidia-smi"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import sys, torch, cupy, pytest; print(sys.executable, sys.version.split()[0], "torch", torch.__version__, "cupy", cupy.__version__, "pytest", pytest.__version__)'
echo "=== local backend"
time python3 -m modal_gpu_action run --backend local --working-directory $sample \
  --junit-xml /tmp/local-junit.xml --summary-file /tmp/local-summary.md
echo "exit code: $?"

echo "=== local Modal server, images built (registry image -> this machine)"
UV_OFFLINE=1 UV_FIND_LINKS=$wheels PIP_NO_INDEX=1 PIP_FIND_LINKS=$wheels \
  python3 .gpu-carry/modal-mock/modal_mock.py --state "$OUT/modal-state.json" --seconds 900 \
  --build-images --image-cache "$cache" --registry 'nvcr.io/nvidia/pytorch=host' \
  > /tmp/mock.json 2>/tmp/mock.err &
for _ in $(seq 150); do [ -s /tmp/mock.json ] && break; sleep 0.2; done
read -r url token_id token_secret < <(python3 -c 'import json; d=json.load(open("/tmp/mock.json")); print(d["url"], d["token_id"], d["token_secret"])') || { cat /tmp/mock.err; exit 1; }
export MODAL_SERVER_URL=$url MODAL_TOKEN_ID=$token_id MODAL_TOKEN_SECRET=$token_secret

modal_run() {  # the README's Modal example for a GPU library: the image, its GPU extras
  python3 -m modal_gpu_action run --backend modal --gpu H200 --image $image --extras torch,cupy \
    --working-directory $sample "$@"
}
echo "=== Modal backend, --image $image --extras torch,cupy (cold: layers built)"
time modal_run --junit-xml "$OUT/modal-junit.xml" --summary-file "$OUT/modal-summary.md" \
  --comment-file "$OUT/modal-comment.md"
echo "exit code: $?"
echo "=== the same after a code-only change (layers cached), shards: 2 on the one GPU"
echo "# a code-only change" >> $sample/src/sample_gpu_lib/__init__.py
time modal_run --shards 2 --junit-xml /tmp/modal-shards-junit.xml --summary-file /tmp/modal-shards-summary.md
echo "exit code: $?"
kill %1; wait
python3 - "$OUT/modal-state.json" <<'PY'
import json, sys
state = json.load(open(sys.argv[1]))
print("functions:", {k: {"gpu": v["gpu"], "timeout_secs": v["timeout_secs"], "retries": v["retries"]} for k, v in state["functions"].items()})
for key, img in state["images"].items():
    print(f"image {key}: built={img.get('built')!r} {img.get('build_seconds')} s python={img.get('python')}")
    for command in img["dockerfile_commands"]:
        print("   ", command[:160])
    for note in img.get("notes") or []:
        print("    note:", note[:160])
print("calls:", [c for c in state["calls"]])
PY
tail -5 /tmp/mock.err
