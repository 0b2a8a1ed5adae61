"""How much GPU memory the tests used: nvidia-smi polled while pytest runs.

    sampler = GpuMemorySampler.start(env, gpu)   # None without a GPU or a working nvidia-smi
    ...                                          # pytest runs
    peaks = sampler.stop() if sampler else []    # one GpuMemoryPeak per GPU pytest could see

One `nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits -lms 200` runs
while pytest does, printing a sample every POLL_SECONDS: one process for the whole run, where a
fresh nvidia-smi per poll cost 10-20 ms of CPU each, five a second (benchmarks/README.md). Where
it cannot start or stops early, single queries take over at the same pace. When the runner dies,
its next write hits a closed pipe and it ends. Only the GPUs the probe found pytest can see
count. memory.used counts every process on
the GPU, so the peak is reported less the baseline: what each GPU had in use as pytest started
(another job on a shared self-hosted GPU, or nothing on Modal; read beside pytest's own start,
about 0.13 s into it on an H200). `--query-compute-apps`
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
    """Reads nvidia-smi's samples in a thread of its own until `stop`."""

    def __init__(self, exe: str, env: dict[str, str], baseline: dict[str, int]) -> None:
        self._exe = exe
        self._env = env
        self._baseline = baseline
        self._peak = dict(baseline)
        self._first = next(iter(baseline))  # a sample is counted by this GPU's line
        self._samples = 0
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._looping: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._sample, name="gpu-memory", daemon=True)

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
        """Stop sampling; each GPU's peak above its baseline, in the probe's order."""
        self._stopping.set()
        with self._lock:
            looping = self._looping
        if looping is not None:
            _end(looping)
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

    def _sample(self) -> None:
        self._follow_loop()
        while not self._stopping.wait(POLL_SECONDS):  # nvidia-smi's loop ended early: poll
            self._take(_query(self._exe, self._env))

    def _follow_loop(self) -> None:
        """Take the samples of nvidia-smi's own loop (`-lms`) until it ends or `stop`."""
        command = [self._exe, *QUERY, "-lms", str(round(POLL_SECONDS * 1000))]
        with self._lock:
            if self._stopping.is_set():
                return
            try:
                self._looping = subprocess.Popen(
                    command,
                    env=self._env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                )
            except (OSError, ValueError):
                return
            looping = self._looping
        assert looping.stdout is not None
        with looping.stdout:
            for line in looping.stdout:
                self._take(_parse(line))
        _end(looping)

    def _take(self, sample: dict[str, int]) -> None:
        for index, used in sample.items():
            if index in self._peak:
                self._peak[index] = max(self._peak[index], used)
        self._samples += self._first in sample


def _end(process: subprocess.Popen[bytes]) -> None:
    """Stop nvidia-smi's loop and reap it. Killed, not asked to end: on SIGTERM it finished its
    interval first (0.16 s on an H200, after every run), and it holds nothing worth saving."""
    if process.poll() is None:
        process.kill()
        process.wait()


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
    for line in done.stdout.splitlines():
        used.update(_parse(line))
    return used


def _parse(line: bytes) -> dict[str, int]:
    """`0, 1234` -> {"0": 1234}; {} for a line without a figure ("[N/A]" on some MIG set-ups)."""
    index, _, value = (part.strip() for part in line.decode("utf-8", "replace").partition(","))
    return {index: int(value)} if index and value.isdigit() and len(value) < 10 else {}
