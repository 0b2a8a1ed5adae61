"""Which GPUs a pytest started with a given environment will see, as nvidia-smi reports them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Mapping

from .protocol import Gpu, GpuFacts, describe_gpu_list

PROBE_TIMEOUT_SECONDS = 10.0


def parse_visible_devices(value: str) -> list[str]:
    """CUDA_VISIBLE_DEVICES as CUDA reads it: entries up to the first invalid one (so "", "-1"
    and "NoDevFiles" hide every GPU). Entries are indices, or GPU-/MIG- UUIDs (or prefixes)."""
    devices = []
    for raw in value.split(","):
        entry = raw.strip()
        if not (entry.isdigit() or entry.startswith(("GPU-", "MIG-"))):
            break
        devices.append(entry)
    return devices


def probe_gpu(env: Mapping[str, str] | None = None) -> GpuFacts:
    """Ask nvidia-smi (found on env's PATH) which GPUs a process with `env` sees. Honours
    CUDA_VISIBLE_DEVICES (indices or UUIDs). Short timeouts; never raises."""
    environ = dict(os.environ if env is None else env)
    try:
        return _probe_gpu(environ)
    except Exception as error:  # the probe must never be why a run fails
        return GpuFacts(False, [], None, f"no GPU visible: probing failed: {error}")


def _probe_gpu(environ: dict[str, str]) -> GpuFacts:
    selectors: list[str] | None = None
    if "CUDA_VISIBLE_DEVICES" in environ:
        selectors = parse_visible_devices(environ["CUDA_VISIBLE_DEVICES"])
        if not selectors:
            value = environ["CUDA_VISIBLE_DEVICES"]
            return GpuFacts(
                False, [], None, f"no GPU visible: CUDA_VISIBLE_DEVICES={value!r} hides every GPU"
            )
    exe = shutil.which("nvidia-smi", path=environ.get("PATH", os.defpath))
    if exe is None:
        return GpuFacts(False, [], None, "no GPU visible: nvidia-smi not found")

    header: list[str] = []  # plain nvidia-smi, run beside the query: it can take a moment
    header_thread = threading.Thread(target=lambda: header.append(_nvidia_smi([exe], environ)[1]))
    header_thread.start()
    query = "--query-gpu=index,uuid,name,memory.total,driver_version"
    code, text = _nvidia_smi([exe, query, "--format=csv,noheader,nounits"], environ)
    header_thread.join(PROBE_TIMEOUT_SECONDS + 1)
    match = re.search(r"CUDA Version:\s*([0-9][0-9.]*)", header[0] if header else "")
    cuda_version = match.group(1) if match else None
    if code != 0:
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        why = (
            f"nvidia-smi failed (exit {code})" if code is not None else "nvidia-smi did not answer"
        )
        return GpuFacts(False, [], cuda_version, f"no GPU visible: {why}: {first}".rstrip(": "))

    listed: list[tuple[str, Gpu]] = []
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) != 5:
            continue
        index, uuid, name, memory, driver = parts
        gpu = Gpu(
            index=int(index) if index.isdigit() else index,
            name=name,
            memory_total_mib=int(memory) if memory.isdigit() else None,
            driver_version=driver,
        )
        listed.append((uuid, gpu))
    if selectors is None:
        gpus = [gpu for _, gpu in listed]
    else:  # CUDA numbers the visible GPUs in the order CUDA_VISIBLE_DEVICES lists them
        gpus = []
        for selector in selectors:
            for uuid, gpu in listed:
                if str(gpu.index) == selector or uuid.startswith(selector):
                    if gpu not in gpus:
                        gpus.append(gpu)
                    break
    if not gpus:
        why = "nvidia-smi lists no GPU"
        if selectors is not None and listed:
            value = environ["CUDA_VISIBLE_DEVICES"]
            why = f"CUDA_VISIBLE_DEVICES={value!r} matches none of the {len(listed)} GPUs listed"
        return GpuFacts(False, [], cuda_version, f"no GPU visible: {why}")
    count = f"{len(gpus)} GPU{'s' if len(gpus) > 1 else ''} visible"
    return GpuFacts(True, gpus, cuda_version, f"{count}: {describe_gpu_list(gpus, cuda_version)}")


def _nvidia_smi(argv: list[str], environ: dict[str, str]) -> tuple[int | None, str]:
    try:
        done = subprocess.run(
            argv,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=PROBE_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"no answer within {PROBE_TIMEOUT_SECONDS:g} s"
    except OSError as error:
        return None, str(error)
    return done.returncode, done.stdout.decode("utf-8", "replace")
