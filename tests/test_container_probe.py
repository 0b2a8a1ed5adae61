"""container/probe.py: what nvidia-smi says pytest will see (a fake nvidia-smi on PATH)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from modal_gpu_action.container.probe import probe_gpu
from modal_gpu_action.container.protocol import Gpu, GpuFacts

FAKE_NVIDIA_SMI = """#!{python}
import sys
args = sys.argv[1:]
if {fail!r}:
    print("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.")
    sys.exit(9)
if any(a.startswith("--query-gpu=index,uuid") for a in args):
    print("0, GPU-aaaa1111-0000, NVIDIA H100 80GB HBM3, 81559, 580.159.04")
    print("1, GPU-bbbb2222-0000, NVIDIA H100 80GB HBM3, 81559, 580.159.04")
elif "--query-gpu=index" in args:
    print("0")
    print("1")
elif not args:
    print("| NVIDIA-SMI 580.159.04     Driver Version: 580.159.04     CUDA Version: 13.0     |")
else:
    sys.exit(2)
"""


def fake_nvidia_smi(folder: Path, *, fail: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(FAKE_NVIDIA_SMI.format(python=sys.executable, fail=fail))
    script.chmod(0o755)
    return folder


def test_probe_reads_an_h100_from_nvidia_smi(tmp_path: Path) -> None:
    facts = probe_gpu({"PATH": str(fake_nvidia_smi(tmp_path))})

    assert facts.visible and facts.cuda_version == "13.0"
    assert facts.gpus[1] == Gpu(
        index=1, name="NVIDIA H100 80GB HBM3", memory_total_mib=81559, driver_version="580.159.04"
    )
    assert facts.describe() == "2x NVIDIA H100 80GB HBM3 (driver 580.159.04, CUDA 13.0)"
    assert facts.note.startswith("2 GPUs visible: ")


@pytest.mark.parametrize(("visible", "indices"), [("1", [1]), ("GPU-bbbb", [1]), ("1,0", [1, 0])])
def test_probe_honours_cuda_visible_devices(
    tmp_path: Path, visible: str, indices: list[int]
) -> None:
    env = {"PATH": str(fake_nvidia_smi(tmp_path)), "CUDA_VISIBLE_DEVICES": visible}
    facts = probe_gpu(env)
    assert [gpu.index for gpu in facts.gpus] == indices


@pytest.mark.parametrize("visible", ["", "-1", "NoDevFiles"])
def test_probe_sees_nothing_when_cuda_visible_devices_hides_every_gpu(
    tmp_path: Path, visible: str
) -> None:
    facts = probe_gpu({"PATH": str(fake_nvidia_smi(tmp_path)), "CUDA_VISIBLE_DEVICES": visible})
    assert not facts.visible and "hides every GPU" in facts.note


def test_probe_without_nvidia_smi_says_so(tmp_path: Path) -> None:
    facts = probe_gpu({"PATH": str(tmp_path)})
    assert facts == GpuFacts(False, [], None, "no GPU visible: nvidia-smi not found")
    assert facts.describe() == "no GPU visible: nvidia-smi not found"


def test_probe_with_a_failing_nvidia_smi_quotes_it(tmp_path: Path) -> None:
    facts = probe_gpu({"PATH": str(fake_nvidia_smi(tmp_path, fail=True))})
    assert not facts.visible
    assert facts.note == (
        "no GPU visible: nvidia-smi failed (exit 9): NVIDIA-SMI has failed because it couldn't"
        " communicate with the NVIDIA driver."
    )
