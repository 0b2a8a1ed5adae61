"""The merged report as one JUnit XML file (pytest's xunit2 shape), for artifacts and other tools.

Written from `TestReport`, not by splicing the shards' files, so what the engine adds is in the
file too, read back the same way by `parse_junit` (junit_reader.py):
- the tests in one `<testsuite>`, each case with every failure and error it had (a unittest
  `subTest` can fail several times in one test), its `file`, `line` and, when known, pytest's
  `nodeid`; a test that never started (the run crashed, timed out or was cancelled) is
  `<skipped type="modal-gpu-action.not-run">`; pytest's subtest counts are the suite's
  properties;
- the run's problems (a crash, a timeout, a report cut short) in a second suite of their own,
  one error case each with class name `modal-gpu-action`: other tools show them as errors, and
  the tests' suite keeps the tests' counts.
output_files.write_output writes it.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from modal_gpu_action.report.junit_case import NOT_RUN_TYPE, PROBLEM_CLASSNAME, SUBTESTS_PROPERTY
from modal_gpu_action.report.results import CaseOutcome, TestReport

# XML 1.0 cannot hold most control characters, which test output can contain.
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_RESULT_TAG = {
    CaseOutcome.FAILED: "failure",
    CaseOutcome.ERROR: "error",
    CaseOutcome.SKIPPED: "skipped",
    CaseOutcome.XFAILED: "skipped",
    CaseOutcome.NOT_RUN: "skipped",
}
_RESULT_TYPE = {CaseOutcome.XFAILED: "pytest.xfail", CaseOutcome.NOT_RUN: NOT_RUN_TYPE}
PROBLEMS_SUITE = "modal-gpu-action: problems with the run"


def _clean(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def to_junit_xml(report: TestReport, *, suite_name: str = "modal-gpu-action") -> str:
    totals = report.totals
    root = ET.Element("testsuites")
    suite = ET.SubElement(
        root,
        "testsuite",
        name=suite_name,
        tests=str(totals.tests),
        failures=str(totals.failed),
        errors=str(totals.errors),
        skipped=str(totals.skipped + totals.xfailed + totals.not_run),
        time=f"{report.wall_time:.3f}",
    )
    subtests = report.subtests
    if subtests.total:
        properties = ET.SubElement(suite, "properties")
        for kind, count in (
            ("passed", subtests.passed),
            ("failed", subtests.failed),
            ("skipped", subtests.skipped),
        ):
            ET.SubElement(properties, "property", name=SUBTESTS_PROPERTY + kind, value=str(count))
    for case in report.cases:
        attributes = {"classname": _clean(case.classname), "name": _clean(case.name)}
        attributes["time"] = f"{case.duration:.3f}"
        if case.file:
            attributes["file"] = _clean(case.file)
        if case.line is not None:
            attributes["line"] = str(case.line)
        if case.nodeid:
            attributes["nodeid"] = _clean(case.nodeid)
        element = ET.SubElement(suite, "testcase", attributes)
        results = case.results
        if not results and case.outcome in _RESULT_TAG:
            _result(element, case.outcome, case.message, case.detail)
        for result in results:
            _result(element, result.outcome, result.message, result.detail)
    if report.problems:
        problems = ET.SubElement(
            root,
            "testsuite",
            name=PROBLEMS_SUITE,
            tests=str(len(report.problems)),
            failures="0",
            errors=str(len(report.problems)),
            skipped="0",
            time="0.000",
        )
        for problem in report.problems:
            element = ET.SubElement(
                problems,
                "testcase",
                classname=PROBLEM_CLASSNAME,
                name=_clean(problem.where),
                time="0.000",
            )
            _result(element, CaseOutcome.ERROR, problem.message, problem.detail)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _result(element: ET.Element, outcome: CaseOutcome, message: str, detail: str) -> None:
    result = ET.SubElement(element, _RESULT_TAG[outcome], message=_clean(message))
    if outcome in _RESULT_TYPE:
        result.set("type", _RESULT_TYPE[outcome])
    result.text = _clean(detail) or None
