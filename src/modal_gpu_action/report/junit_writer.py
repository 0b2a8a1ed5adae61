"""The merged report as one JUnit XML file (pytest's xunit2 shape), for artifacts and other tools.

Written from `TestReport`, not by splicing the shards' files, so entries the engine adds (a crash,
a timeout, a report cut short) are in the file too. output_files.write_output writes it.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from modal_gpu_action.report.results import CaseOutcome, TestReport

# XML 1.0 cannot hold most control characters, which test output can contain.
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_RESULT_TAG = {
    CaseOutcome.FAILED: "failure",
    CaseOutcome.ERROR: "error",
    CaseOutcome.SKIPPED: "skipped",
    CaseOutcome.XFAILED: "skipped",
}


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
        skipped=str(totals.skipped),
        time=f"{report.wall_time:.3f}",
    )
    for case in report.cases:
        attributes = {"classname": _clean(case.classname), "name": _clean(case.name)}
        attributes["time"] = f"{case.duration:.3f}"
        if case.file:
            attributes["file"] = _clean(case.file)
        if case.line is not None:
            attributes["line"] = str(case.line)
        element = ET.SubElement(suite, "testcase", attributes)
        tag = _RESULT_TAG.get(case.outcome)
        if tag is None:
            continue
        result = ET.SubElement(element, tag, message=_clean(case.message))
        if case.outcome is CaseOutcome.XFAILED:
            result.set("type", "pytest.xfail")
        result.text = _clean(case.detail) or None
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
