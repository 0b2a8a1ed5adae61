"""The failed tests run again (`RunRequest.rerun_failures` times at most), right after the suite,
where it ran; and a pytest plugin that keeps only those tests (loaded by run.py as
`-p _modal_gpu_action_container.reruns` for a re-run; standard library only, pytest not imported).

What is re-run: the test cases that failed or errored (by node id, each in the same pytest
command as the suite, its test path and arguments, without sharding: the node ids are already
this shard's), only those still failing each round. Never re-run: a run that did not finish by
itself (a crash, a timeout, a cancel: the run's problem fails it anyway, and its time is gone),
a run pytest stopped itself (exit codes 2 to 5: collection errors, usage), a module that failed at
collection, a case without a node id. A round gets what is left of the request's timeout and
stops on the cancel event; a round stopped or crashed keeps what it reported (the test it was
running has an error saying so), and the rounds end there.

The merge happens here, in the container, so that the host only reads one JUnit report, written as
Maven Surefire writes its re-runs (junit_reader.py reads it back):
- a test that passed on a re-run (flaky) keeps its case with no `<failure>`/`<error>`, and one
  `<flakyFailure>`/`<flakyError>` per failed run, the first run's first, each with `message`,
  `type` and a `<stackTrace>` child;
- a test that failed every re-run keeps its first `<failure>`/`<error>` and gets one
  `<rerunFailure>`/`<rerunError>` per failed re-run.
The RunResult's exit code becomes 0 when every failure passed on a re-run, its duration includes
the re-runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from . import process
from .protocol import Ending, RunRequest, RunResult
from .record import PROBLEM_CLASSNAME

RERUN_FILE_ENV = "MODAL_GPU_ACTION_RERUN_FILE"  # a JSON list of the node ids a re-run keeps
MAX_RERUN_TESTS = 1000  # more failures than this are not flakiness: no re-run
MIN_ROUND_SECONDS = 1.0  # less time left than this: no further round
_FAILED = ("failure", "error")
_ATTEMPT_TAGS = {
    # (the first run's tag, passed in the end) -> the tag its failed runs are kept under
    ("failure", True): "flakyFailure",
    ("error", True): "flakyError",
    ("failure", False): "rerunFailure",
    ("error", False): "rerunError",
}
_COLLECTION_MESSAGES = ("collection failure", "collection skipped")


def rerun_failures(
    request: RunRequest,
    result: RunResult,
    run_round: Callable[[RunRequest, list[str]], RunResult],
    *,
    cancel_event: Any = None,
    out: Any = None,
) -> RunResult:
    """`result` with its failed tests re-run up to `request.rerun_failures` times and the rounds
    merged into its JUnit report (see the module's docstring); `result` itself when nothing is
    re-run. `run_round(request, node_ids)` runs one round: that request's pytest keeping only
    those tests."""
    if request.rerun_failures < 1 or result.ending is not Ending.FINISHED:
        return result
    if result.exit_code != 1 or result.problem:
        return result
    try:
        first = ET.fromstring(result.junit_xml)
    except ET.ParseError:
        return result
    failing = failed_node_ids(first)
    prefix = f"[{request.label}] " if request.label else ""
    if not failing or len(failing) > MAX_RERUN_TESTS:
        if failing:
            process.write_line(
                out,
                f"{prefix}modal-gpu-action: {len(failing)} failed tests, more than the"
                f" {MAX_RERUN_TESTS} that are re-run: no re-run",
            )
        return result
    deadline = None
    if request.timeout_seconds is not None:
        deadline = time.monotonic() + request.timeout_seconds - result.duration_seconds
    attempts: dict[str, list[ET.Element | None]] = {nodeid: [] for nodeid in failing}
    seconds = result.duration_seconds
    rounds = 0
    for number in range(1, request.rerun_failures + 1):
        left = None if deadline is None else deadline - time.monotonic()
        if not failing or (cancel_event is not None and cancel_event.is_set()):
            break
        if left is not None and left < MIN_ROUND_SECONDS:
            process.write_line(out, f"{prefix}modal-gpu-action: no time left for more re-runs")
            break
        process.write_line(
            out,
            f"{prefix}modal-gpu-action: re-run {number} of {request.rerun_failures}:"
            f" {len(failing)} failed test{'' if len(failing) == 1 else 's'}",
        )
        again = dataclasses.replace(request, timeout_seconds=left, shard_count=1, shard_index=0)
        rerun = run_round(again, failing)
        rounds += 1
        seconds += rerun.duration_seconds
        cases = _cases_by_node_id(rerun.junit_xml)
        for nodeid in failing:
            attempts[nodeid].append(cases.get(nodeid))
        failing = [nodeid for nodeid in failing if not _passed(cases.get(nodeid))]
        if rerun.ending is Ending.CANCELLED or not cases:
            break
    if not rounds:
        return result
    merged, still_failing = merge_reruns(first, attempts)
    return dataclasses.replace(
        result,
        junit_xml=b'<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(merged, encoding="utf-8"),
        exit_code=1 if still_failing else 0,
        duration_seconds=round(seconds, 3),
    )


def failed_node_ids(root: ET.Element) -> list[str]:
    """The node ids of the failed and errored test cases, in report order (see the module's
    docstring for what is left out)."""
    nodeids: dict[str, None] = {}
    for case in root.iter("testcase"):
        nodeid = case.get("nodeid")
        if not nodeid or case.get("classname") == PROBLEM_CLASSNAME:
            continue
        failures = [child for child in case if child.tag in _FAILED]
        if failures and not any(f.get("message") in _COLLECTION_MESSAGES for f in failures):
            nodeids[nodeid] = None
    return list(nodeids)


def merge_reruns(
    first: ET.Element, attempts: dict[str, list[ET.Element | None]]
) -> tuple[ET.Element, int]:
    """The first run's report with each re-run test's runs in it (see the module's docstring),
    and how many of those tests still fail. `attempts`: per node id, its case in each round (None
    where the round did not report it)."""
    still_failing = 0
    for suite in first.iter("testsuite"):
        changed = False
        for case in list(suite.findall("testcase")):
            nodeid = case.get("nodeid") or ""
            rounds = attempts.get(nodeid)
            if rounds is None:
                continue
            passed = any(_passed(attempt) for attempt in rounds)
            still_failing += not passed
            failed_runs: list[ET.Element] = []
            for attempt in rounds:
                if attempt is not None and not _passed(attempt):
                    failed_runs += [child for child in attempt if child.tag in _FAILED]
            _add_runs(case, failed_runs, passed)
            attempts.pop(nodeid)  # a case that appears twice is merged once
            changed = True
        if changed:
            for key, tag in (("failures", "failure"), ("errors", "error")):
                count = sum(1 for case in suite.findall("testcase") if case.find(tag) is not None)
                suite.set(key, str(count))
    return first, still_failing


def _add_runs(case: ET.Element, reruns: list[ET.Element], passed: bool) -> None:
    """A flaky case's failures become flakyFailure/flakyError (then each failed re-run's); a
    case that kept failing keeps its own and gets rerunFailure/rerunError per failed re-run."""
    own = [child for child in case if child.tag in _FAILED]
    if not own:
        return
    at = list(case).index(own[-1]) + 1
    runs = own + reruns if passed else reruns
    for child in own if passed else ():
        case.remove(child)
        at -= 1
    for offset, run in enumerate(runs):
        kept = ET.Element(
            _ATTEMPT_TAGS[(run.tag, passed)],
            message=run.get("message") or "",
            type=run.get("type") or "",
        )
        ET.SubElement(kept, "stackTrace").text = run.text or ""
        case.insert(at + offset, kept)


def _cases_by_node_id(junit_xml: bytes) -> dict[str, ET.Element]:
    try:
        root = ET.fromstring(junit_xml)
    except ET.ParseError:
        return {}
    return {
        case.get("nodeid") or "": case
        for case in root.iter("testcase")
        if case.get("nodeid") and case.get("classname") != PROBLEM_CLASSNAME
    }


def _passed(case: ET.Element | None) -> bool:
    """A plain pass: reported, with no failure, error or skip (a test a stopped round never
    started is skipped as not run)."""
    return case is not None and not any(
        child.tag in ("failure", "error", "skipped") for child in case
    )


def selection_file(folder: str, nodeids: list[str]) -> dict[str, str]:
    """Write the node ids a re-run keeps into `folder`; the environment that names them."""
    path = os.path.join(folder, "rerun.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(nodeids, handle)
    return {RERUN_FILE_ENV: path}


# The pytest plugin (a re-run only): keep the tests the file names, in their order.


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    path = os.environ.get(RERUN_FILE_ENV)
    if not path:
        return
    wanted: set[str] = set()
    with contextlib.suppress(OSError, ValueError), open(path, encoding="utf-8") as handle:
        wanted = {str(nodeid) for nodeid in json.load(handle)}
    kept = [item for item in items if item.nodeid in wanted]
    dropped = [item for item in items if item.nodeid not in wanted]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
