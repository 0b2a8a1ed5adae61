"""How much GPU memory the tests used: nvidia-smi polled while pytest runs.

    sampler = GpuMemorySampler.start(env, gpu)   # None without a GPU or a working nvidia-smi
    ...                                          # pytest runs
    peaks = sampler.stop() if sampler else []    # one GpuMemoryPeak per GPU pytest could see

Each poll is `nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits`, every
POLL_SECONDS, for the GPUs the probe found pytest can see. memory.used counts every process on
the GPU, so the peak is reported less the baseline: what each GPU had in use just before pytest
started (another job on a shared self-hosted GPU, or nothing on Modal). `--query-compute-apps`
would name the processes instead, but inside a container nvidia-smi cannot see them (another PID
namespace), which is where most runs are. What another process allocates while the tests run
still counts; so does a second shard on the same GPU.

A poll every 0.2 s misses an allocation shorter than that; PyTorch's and CuPy's caching
allocators keep memory until the process ends, so most suites' peaks are seen. The CUDA context
(a few hundred MiB per process and GPU) is in the figure: a cheaper GPU would need it too.
Never raises: a GPU that cannot be read is a run without a figure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Mapping

from .protocol import GpuFacts, GpuMemoryPeak

POLL_SECONDS = 0.2
POLL_TIMEOUT_SECONDS = 5.0
QUERY = ["--query-gpu=index,memory.used", "--format=csv,noheader,nounits"]


class GpuMemorySampler:
    """Polls nvidia-smi in a thread of its own until `stop`."""

    def __init__(self, exe: str, env: dict[str, str], baseline: dict[str, int]) -> None:
        self._command = [exe, *QUERY]
        self._env = env
        self._baseline = baseline
        self._peak = dict(baseline)
        self._samples = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="gpu-memory", daemon=True)

    @classmethod
    def start(cls, env: Mapping[str, str], gpu: GpuFacts) -> GpuMemorySampler | None:
        """A running sampler for the GPUs in `gpu`, or None when there is nothing to sample."""
        order = [str(g.index) for g in gpu.gpus]  # CUDA's order, as the probe lists them
        exe = shutil.which("nvidia-smi", path=env.get("PATH", os.defpath))
        if not gpu.visible or not order or exe is None:
            return None
        environ = dict(env)
        first = _query(exe, environ)
        baseline = {i: first[i] for i in order if i in first}
        if not baseline:
            return None
        sampler = cls(exe, environ, baseline)
        sampler._thread.start()
        return sampler

    def stop(self) -> list[GpuMemoryPeak]:
        """Stop polling; each GPU's peak above its baseline, in the probe's order."""
        self._stopping.set()
        self._thread.join(POLL_TIMEOUT_SECONDS + 1)
        return [
            GpuMemoryPeak(
                index=int(i) if i.isdigit() else i,
                peak_mib=max(0, self._peak[i] - used),
                baseline_mib=used,
                samples=self._samples,
            )
            for i, used in self._baseline.items()
        ]

    def _poll(self) -> None:
        while not self._stopping.wait(POLL_SECONDS):
            sample = _query(self._command[0], self._env)
            for index, used in sample.items():
                if index in self._peak:
                    self._peak[index] = max(self._peak[index], used)
            self._samples += bool(sample)


def _query(exe: str, env: dict[str, str]) -> dict[str, int]:
    """memory.used (MiB) by nvidia-smi index; {} when nvidia-smi fails or says nothing usable."""
    try:
        done = subprocess.run(
            [exe, *QUERY],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=POLL_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return {}
    if done.returncode != 0:
        return {}
    used: dict[str, int] = {}
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        index, _, value = (part.strip() for part in line.partition(","))
        if index and value.isdigit():  # "[N/A]" on some MIG set-ups: no figure
            used[index] = int(value)
    return used
