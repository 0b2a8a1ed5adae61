#!/bin/bash
# The GPU memory peak, the cheaper-GPU hint and the cost cap on a real GPU (benchmarks/README.md,
# "GPU memory peak and cost cap on an H200"). Run from the repository root on a machine with an
# NVIDIA GPU and a `python3` that has pytest and PyTorch; the tool's own dependencies
# (junitparser, defusedxml, packaging) must be importable too, from that Python or from DEPS (a
# folder). Copies the summaries and the comment to OUT (default: they stay in a temporary folder).
set -u
repo=$PWD
work=$(mktemp -d)
out=${OUT:-$work}
export PYTHONPATH="$repo/src${DEPS:+:$DEPS}"
mkdir -p "$work/ctx/tests" "$work/proj/tests" "$work/slow/tests"
cat > "$work/ctx/tests/test_context.py" <<'PY'
import time

import torch


def test_cuda_context_only():
    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    time.sleep(2)
PY
cat > "$work/proj/tests/test_alloc.py" <<'PY'
import time

import torch


def test_allocates_6_gib():
    block = torch.empty(6 * 2**30, dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
    time.sleep(2)
    assert block.numel() == 6 * 2**30
PY
cat > "$work/slow/tests/test_slow.py" <<'PY'
import time


def test_quick():
    pass


def test_slow():
    time.sleep(30)
PY
cd "$work" || exit 1
python3 --version
nvidia-smi --query-gpu=index,name,memory.total,memory.used --format=csv
echo "== one memory poll, 5 times"
for _ in 1 2 3 4 5; do
  /usr/bin/time -f "%e s" nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits
done
run() {
  echo
  echo "== \$ python3 -m modal_gpu_action run --backend local $*"
  python3 -m modal_gpu_action run --backend local "$@" 2>&1 \
    | sed -n '/^GPU tests:/,$p'
  echo "exit ${PIPESTATUS[0]}"
}
run --working-directory ctx --junit-xml ctx.xml
run --working-directory proj --junit-xml proj.xml --summary-file summary.md \
  --comment-file comment.md
run --working-directory proj --junit-xml off.xml --gpu-memory off
run --working-directory slow --junit-xml slow.xml --gpu H200 --max-cost-usd 0.005 \
  --summary-file slow-summary.md
cp summary.md comment.md slow-summary.md "$out/" 2>/dev/null || true
