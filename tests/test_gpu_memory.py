"""The GPU memory peak and the cheaper-GPU hint: container/gpu_memory.py against a fake nvidia-smi
that prints scripted memory figures, settings/gpu.py's choice of a cheaper type, and the real
`python -m modal_gpu_action run --backend local` reporting them (console, summary, comment,
outputs), with the `gpu-memory` switch off, and with no nvidia-smi at all."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modal_gpu_action.backends.base import BackendResult
from modal_gpu_action.container.gpu_memory import POLL_TIMEOUT_SECONDS, GpuMemorySampler
from modal_gpu_action.container.probe import probe_gpu
from modal_gpu_action.container.protocol import Ending, Gpu, GpuFacts, GpuMemoryPeak, RunResult
from modal_gpu_action.gpu_usage import gpu_usage
from modal_gpu_action.settings import load_settings
from modal_gpu_action.settings.gpu import GpuChoice, cheaper_gpu, modal_type_named

# A fake nvidia-smi. Its script (JSON beside it): the GPUs (name, MiB) and the memory.used
# figures each query prints in turn, one list per GPU index, the last repeated. It counts the
# memory queries it answered in `memory_queries` (the test project waits on that count), one
# per sample of its `-lms` loop too; `loop_fails` makes the loop fail at once (single queries
# take over), `loop_ignores_sigterm` makes it ignore SIGTERM; each loop started adds a character
# to `loops`.
FAKE_NVIDIA_SMI = """#!{python}
import json, os, sys, time
here = os.path.dirname(os.path.abspath(__file__))
script = json.load(open(os.path.join(here, "script.json")))
args = sys.argv[1:]
gpus = script["gpus"]
if any(a.startswith("--query-gpu=index,uuid") for a in args):
    for i, (name, total) in enumerate(gpus):
        print(f"{{i}}, GPU-{{i:04d}}aaaa-0000, {{name}}, {{total}}, 580.159.04")
elif "--query-gpu=index,memory.used" in args:
    if script.get("memory_fails"):
        sys.exit(9)

    def sample():
        counter = os.path.join(here, "memory_queries")
        n = int(open(counter).read()) if os.path.exists(counter) else 0
        with open(counter + ".tmp", "w") as f:  # replaced whole: the test reads it meanwhile
            f.write(str(n + 1))
        os.replace(counter + ".tmp", counter)
        figures = script["used"]
        row = figures[min(n, len(figures) - 1)]
        for i, used in enumerate(row):
            print(f"{{i}}, {{used}}", flush=True)

    if "-lms" in args:  # nvidia-smi's own loop: a sample every N ms until stopped
        if script.get("loop_fails"):
            sys.exit(2)
        if script.get("loop_ignores_sigterm"):  # as slow to end as it likes
            import signal
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with open(os.path.join(here, "loops"), "a") as f:
            f.write("1")
        while True:
            time.sleep(int(args[args.index("-lms") + 1]) / 1000)
            sample()
    sample()
elif "--query-gpu=index" in args:
    for i in range(len(gpus)):
        print(i)
elif not args:
    print("| NVIDIA-SMI 580.159.04     Driver Version: 580.159.04     CUDA Version: 13.0     |")
else:
    sys.exit(2)
"""

H100 = ["NVIDIA H100 80GB HBM3", 81559]
A100_80 = ["NVIDIA A100-SXM4-80GB", 81920]


def fake_nvidia_smi(
    folder: Path, gpus: list[list[object]], used: list[list[int]], **more: object
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "script.json").write_text(json.dumps({"gpus": gpus, "used": used, **more}))
    script = folder / "nvidia-smi"
    script.write_text(FAKE_NVIDIA_SMI.format(python=sys.executable))
    script.chmod(0o755)
    return folder


def memory_queries(folder: Path) -> int:
    counter = folder / "memory_queries"
    return int(counter.read_text()) if counter.exists() else 0


# -- the sampler --------------------------------------------------------------------------------


def sample(env: dict[str, str], folder: Path, polls: int) -> list[GpuMemoryPeak] | None:
    sampler = GpuMemorySampler.start(env, probe_gpu(env))
    if sampler is None:
        return None
    deadline = time.monotonic() + 10
    while memory_queries(folder) < polls and time.monotonic() < deadline:
        time.sleep(0.05)
    return sampler.stop()


def test_the_peak_is_reported_above_the_memory_in_use_before_the_tests(tmp_path: Path) -> None:
    bin_ = fake_nvidia_smi(tmp_path / "bin", [H100], [[700], [2000], [9700], [4000]])
    peaks = sample({"PATH": str(bin_)}, bin_, polls=5)
    assert peaks == [
        GpuMemoryPeak(index=0, peak_mib=9000, baseline_mib=700, samples=peaks[0].samples)
    ]
    assert peaks[0].samples >= 4


def test_one_nvidia_smi_loop_serves_the_whole_run_and_is_gone_after_stop(tmp_path: Path) -> None:
    bin_ = fake_nvidia_smi(tmp_path / "bin", [H100], [[700], [2000], [9700], [4000]])
    peaks = sample({"PATH": str(bin_)}, bin_, polls=6)
    assert peaks is not None and peaks[0].peak_mib == 9000
    assert (bin_ / "loops").read_text() == "1"  # one process, not one per sample
    settled = memory_queries(bin_)  # stopped with the sampler: no sample after it
    time.sleep(0.5)
    assert memory_queries(bin_) == settled
    running = [
        entry.name
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _runs_from(entry, bin_)
    ]
    assert running == []


def test_stop_does_not_wait_for_nvidia_smi_to_end_its_loop(tmp_path: Path) -> None:
    # The real nvidia-smi took its interval to end on SIGTERM (0.16 s on an H200, after every
    # run); this one never ends on it. stop() kills it: nothing waits for a graceful end.
    bin_ = fake_nvidia_smi(tmp_path / "bin", [H100], [[700], [2000]], loop_ignores_sigterm=True)
    env = {"PATH": str(bin_)}
    sampler = GpuMemorySampler.start(env, probe_gpu(env))
    assert sampler is not None
    deadline = time.monotonic() + 10
    while memory_queries(bin_) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    peaks = sampler.stop()
    assert time.monotonic() - started < POLL_TIMEOUT_SECONDS  # SIGTERM's wait is that long
    assert peaks[0].peak_mib == 1300
    assert not [e for e in Path("/proc").iterdir() if e.name.isdigit() and _runs_from(e, bin_)]


def _runs_from(entry: Path, folder: Path) -> bool:
    """Whether the process `entry` (a /proc folder) runs a program from `folder`."""
    try:
        words = (entry / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(word.startswith(str(folder).encode()) for word in words)


def test_single_queries_take_over_when_nvidia_smi_cannot_loop(tmp_path: Path) -> None:
    bin_ = fake_nvidia_smi(
        tmp_path / "bin", [H100], [[700], [2000], [9700], [4000]], loop_fails=True
    )
    peaks = sample({"PATH": str(bin_)}, bin_, polls=5)
    assert peaks == [
        GpuMemoryPeak(index=0, peak_mib=9000, baseline_mib=700, samples=peaks[0].samples)
    ]
    assert peaks[0].samples >= 3


def test_each_visible_gpu_has_its_own_peak_and_hidden_ones_none(tmp_path: Path) -> None:
    bin_ = fake_nvidia_smi(
        tmp_path / "bin", [H100, H100, H100], [[0, 100, 50], [5000, 300, 99999], [100, 8100, 0]]
    )
    peaks = sample({"PATH": str(bin_), "CUDA_VISIBLE_DEVICES": "1,0"}, bin_, polls=4)
    assert peaks is not None
    # CUDA's order (the probe's), each less its own baseline; GPU 2 is not pytest's.
    assert [(p.index, p.peak_mib, p.baseline_mib) for p in peaks] == [(1, 8000, 100), (0, 5000, 0)]


def test_no_sampler_without_nvidia_smi_a_gpu_or_a_working_memory_query(tmp_path: Path) -> None:
    assert (
        GpuMemorySampler.start({"PATH": str(tmp_path)}, probe_gpu({"PATH": str(tmp_path)})) is None
    )
    bin_ = fake_nvidia_smi(tmp_path / "bin", [H100], [[1]])
    hidden = {"PATH": str(bin_), "CUDA_VISIBLE_DEVICES": "-1"}
    assert GpuMemorySampler.start(hidden, probe_gpu(hidden)) is None
    failing = fake_nvidia_smi(tmp_path / "failing", [H100], [[1]], memory_fails=True)
    env = {"PATH": str(failing)}
    assert GpuMemorySampler.start(env, probe_gpu(env)) is None
    no_gpu = GpuFacts(False, [], None, "no GPU visible")
    assert GpuMemorySampler.start({"PATH": str(bin_)}, no_gpu) is None


def test_the_peaks_travel_in_the_run_result() -> None:
    result = RunResult(
        junit_xml=b"", exit_code=0, duration_seconds=1.0,
        gpu=GpuFacts(False, [], None, "n"), ending=Ending.FINISHED, output_tail="",
        gpu_memory=[GpuMemoryPeak(index=0, peak_mib=6671, baseline_mib=3, samples=9)],
    )  # fmt: skip
    again = RunResult.from_dict(json.loads(result.to_json()))
    assert again == result
    older = {k: v for k, v in result.to_dict().items() if k != "gpu_memory"}
    assert RunResult.from_dict(older).gpu_memory == []


# -- the cheaper type ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("card", "expected"),
    [
        ("Tesla T4", "T4"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA A10G", "A10G"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA A100-SXM4-40GB", "A100-40GB"),
        ("NVIDIA A100 80GB PCIe", "A100-80GB"),
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA B200", "B200"),
        ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "RTX-PRO-6000"),
        ("NVIDIA GeForce RTX 4090", None),
        ("NVIDIA A40", None),
    ],
)
def test_cards_are_named_as_modal_types(card: str, expected: str | None) -> None:
    assert modal_type_named(card) == expected


@pytest.mark.parametrize(
    ("peak", "current", "expected"),
    [
        (6671, GpuChoice("H200"), "T4"),  # 8,005 MiB with the margin: the cheapest card holds it
        (12_900, GpuChoice("H200"), "L4"),  # 15,480 > T4's 15,360: L4 (cheaper than A10G)
        (20_000, GpuChoice("H100"), "L40S"),  # 24,000: past L4 and A10G; L40S below A100-40GB
        (70_000, GpuChoice("H200"), "RTX-PRO-6000"),  # 84,000: past the 80 GB cards
        (70_000, GpuChoice("A100-80GB"), None),  # what holds 84,000 MiB all cost more
        (1_000, GpuChoice("T4"), None),  # nothing is cheaper than T4
        (17_000, GpuChoice("H100", 8), "L4:8"),  # the count stays
        (200_000, GpuChoice("B200"), None),  # nothing holds it
    ],
)
def test_the_cheapest_type_that_holds_the_peak_plus_20_percent(
    peak: int, current: GpuChoice, expected: str | None
) -> None:
    found = cheaper_gpu(peak, current)
    assert (str(found) if found else None) == expected


# -- the real command ---------------------------------------------------------------------------

# The test waits until the sampler has polled a few times: the figures are then certain.
WAITING_TEST = """
import os, time

def test_uses_the_gpu():
    counter = os.path.join(os.environ["FAKE_SMI"], "memory_queries")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if os.path.exists(counter) and int(open(counter).read() or 0) >= 6:
            return
        time.sleep(0.05)
"""


def project(tmp_path: Path) -> Path:
    folder = tmp_path / "workspace"
    (folder / "tests").mkdir(parents=True)
    (folder / "tests" / "test_gpu.py").write_text(WAITING_TEST)
    return folder


def run_action(
    folder: Path, tmp_path: Path, smi: Path | None, *inputs: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """The real command in GitHub mode (a push, no comment), so that it writes its outputs."""
    (tmp_path / "output.txt").write_text("")
    (tmp_path / "summary.md").write_text("")
    (tmp_path / "event.json").write_text("{}")
    path = os.pathsep.join(p for p in (str(smi) if smi else "", "/usr/bin", "/bin") if p)
    env = {
        "PATH": path,
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_EVENT_PATH": str(tmp_path / "event.json"),
        "GITHUB_REPOSITORY": "octo/repo",
        "GITHUB_WORKSPACE": str(folder),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_OUTPUT": str(tmp_path / "output.txt"),
        "MODAL_GPU_ACTION_PYTHON": sys.executable,
        "FAKE_SMI": str(smi or tmp_path),
        "INPUT_BACKEND": "local",
        "INPUT_COMMENT": "off",
    }
    command = [sys.executable, "-m", "modal_gpu_action", "run", *inputs]
    command += ["--comment-file", str(folder / "comment.md")]
    done = subprocess.run(
        command, cwd=folder, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    return done, read_outputs(tmp_path / "output.txt")


def read_outputs(path: Path) -> dict[str, str]:
    """`name<<DELIMITER\\nvalue\\nDELIMITER` blocks, as $GITHUB_OUTPUT holds them."""
    found = re.findall(r"^([a-z-]+)<<(\S+)\n(.*?)\n\2$", path.read_text(), re.MULTILINE | re.DOTALL)
    return {name: value for name, _, value in found}


def test_the_run_reports_the_peak_and_a_cheaper_gpu_everywhere(tmp_path: Path) -> None:
    smi = fake_nvidia_smi(tmp_path / "bin", [H100], [[512], [3000], [8704], [6000]])
    folder = project(tmp_path)
    done, outputs = run_action(folder, tmp_path, smi)

    assert done.returncode == 0, done.stdout + done.stderr
    # 8,704 - 512 = 8,192 MiB; with 20 % it needs 9,830: T4's 15,360 holds it.
    console = done.stdout
    assert (
        "GPU memory peak: 8,192 MiB of 81,559 MiB (above the 512 MiB in use before the tests)"
        in console
    )
    assert "Cheaper GPU: T4 would do (15,360 MiB per GPU holds the peak + 20%)" in console
    assert "an estimate that ignores speed differences" in console
    summary = (tmp_path / "summary.md").read_text()
    comment = (folder / "comment.md").read_text()
    for text in (summary, comment):
        assert "GPU memory peak" in text and "8,192 MiB of 81,559 MiB" in text
        assert "T4 would do" in text
    assert outputs["gpu-memory-peak-mib"] == "8192"
    assert outputs["cheaper-gpu"] == "T4"
    assert outputs["stopped-at-cost-cap"] == "false"
    # the estimate: the run's GPU seconds at T4's price, against H100's
    match = re.search(r"about \$(\d+\.\d+) instead of \$(\d+\.\d+) on H100", console)
    assert match and float(match[2]) > 0
    assert float(match[1]) == pytest.approx(float(match[2]) * 0.000164 / 0.001097, abs=1e-4)


def test_no_hint_when_no_cheaper_gpu_holds_the_peak(tmp_path: Path) -> None:
    smi = fake_nvidia_smi(tmp_path / "bin", [A100_80], [[0], [70_000], [100]])
    folder = project(tmp_path)
    done, outputs = run_action(folder, tmp_path, smi)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "GPU memory peak: 70,000 MiB of 81,920 MiB" in done.stdout
    assert "Cheaper GPU" not in done.stdout
    assert "Cheaper GPU" not in (tmp_path / "summary.md").read_text()
    assert outputs["gpu-memory-peak-mib"] == "70000"
    assert outputs["cheaper-gpu"] == ""


def test_gpu_memory_off_never_queries_the_memory(tmp_path: Path) -> None:
    smi = fake_nvidia_smi(tmp_path / "bin", [H100], [[0], [9000]])
    folder = tmp_path / "workspace"
    (folder / "tests").mkdir(parents=True)
    (folder / "tests" / "test_quick.py").write_text("def test_quick():\n    pass\n")
    done, outputs = run_action(folder, tmp_path, smi, "--gpu-memory", "off")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "NVIDIA H100 80GB HBM3" in done.stdout  # the GPU is still probed
    assert memory_queries(smi) == 0
    assert "GPU memory peak" not in done.stdout
    assert "GPU memory peak" not in (tmp_path / "summary.md").read_text()
    assert outputs["gpu-memory-peak-mib"] == "" and outputs["cheaper-gpu"] == ""


def test_without_nvidia_smi_there_is_no_figure_no_hint_and_no_error(tmp_path: Path) -> None:
    folder = tmp_path / "workspace"
    (folder / "tests").mkdir(parents=True)
    (folder / "tests" / "test_quick.py").write_text("def test_quick():\n    pass\n")
    done, outputs = run_action(folder, tmp_path, None)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "no GPU visible: nvidia-smi not found" in done.stdout
    assert "GPU memory" not in done.stdout and "Cheaper GPU" not in done.stdout
    assert "warning" not in done.stdout.lower() and "error" not in done.stderr.lower()
    assert outputs["gpu-memory-peak-mib"] == ""


def test_a_bad_gpu_memory_value_exits_2_naming_the_input(tmp_path: Path) -> None:
    folder = project(tmp_path)
    done, _ = run_action(folder, tmp_path, None, "--gpu-memory", "sometimes")
    assert done.returncode == 2
    assert "invalid value 'sometimes' for input 'gpu-memory': expected one of on, off" in (
        done.stdout + done.stderr
    )


def test_each_shard_and_gpu_has_its_row_and_the_hint_keeps_the_gpu_count(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    settings = load_settings({"backend": "local", "shards": "2"}, {}, workspace=tmp_path)
    cards = [Gpu(0, "NVIDIA H100 80GB HBM3", 81559), Gpu(1, "NVIDIA H100 80GB HBM3", 81559)]

    def shard(index: int, peaks: list[tuple[int, int, int]]) -> RunResult:
        return RunResult(
            junit_xml=b"", exit_code=0, duration_seconds=10.0,
            gpu=GpuFacts(True, cards, "13.0", ""), ending=Ending.FINISHED, output_tail="",
            shard_index=index, shard_count=2,
            gpu_memory=[GpuMemoryPeak(i, peak, before) for i, peak, before in peaks],
        )  # fmt: skip

    result = BackendResult(
        backend="local",
        shards=[shard(0, [(0, 5000, 0), (1, 300, 0)]), shard(1, [(0, 17_000, 1024), (1, 0, 0)])],
        gpu_seconds=40.0,
    )
    usage = gpu_usage(result, settings)
    assert usage.facts[:2] == (
        (
            "GPU memory peak",
            "Shard 1/2: GPU 0: 5,000 MiB of 81,559 MiB, GPU 1: 300 MiB of 81,559 MiB",
        ),
        (
            "GPU memory peak",
            "Shard 2/2: GPU 0: 17,000 MiB of 81,559 MiB, GPU 1: 0 MiB of 81,559 MiB"
            " (above the 1,024 MiB in use before the tests)",
        ),
    )
    # 17,000 MiB + 20 % = 20,400: past T4, so L4, two of them as the shards had
    assert usage.peak_mib == 17_000 and str(usage.cheaper) == "L4:2"
    label, text = usage.facts[2]
    assert label == "Cheaper GPU" and text.startswith("L4:2 would do (23,034 MiB per GPU")
    # 40 GPU seconds at L4's and at H100's price per GPU
    assert f"about ${40 * 0.000222:.4f} instead of ${40 * 0.001097:.4f} on H100:2" in text
