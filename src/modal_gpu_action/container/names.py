"""The names pytest's JUnit XML gives a test, from its node id: what the crash record writes
beside each test, what a synthesised report uses, and what the sharding plugin looks a test's
duration up by. Always from the node id to the names, never back: a dot in `tests.test_x.TestC`
may be a directory, a module or a class.
"""

from __future__ import annotations

import re
import sys


def mangle_test_address(nodeid: str) -> list[str]:
    """pytest's rule (`_pytest.junitxml.mangle_test_address`, pytest 9.2), copied: the file path
    becomes a dotted module path without ".py", "::" segments become names, the last one keeps
    its "[params]" whole."""
    path, sep, rest = nodeid.partition("::")
    names = [re.sub(r"\.py$", "", path.replace("/", "."))]
    if sep:
        head, bracket, params = rest.partition("[")
        names += head.split("::")
        names[-1] += bracket + params
    return names


def junit_names(nodeid: str, prefix: str = "") -> tuple[str, str]:
    """(classname, name) as pytest's junitxml writes them, `junit_prefix` in front when set:
    `tests/x/test_a.py::TestC::test_y[1]` -> (`tests.x.test_a.TestC`, `test_y[1]`). Inside a
    pytest process, that pytest's own rule; elsewhere (and if pytest moved it) the copy."""
    junitxml = sys.modules.get("_pytest.junitxml")
    mangle = getattr(junitxml, "mangle_test_address", None) or mangle_test_address
    try:
        names = list(mangle(nodeid))
    except Exception:  # pytest changed its signature
        names = mangle_test_address(nodeid)
    return ".".join(([prefix] if prefix else []) + names[:-1]), names[-1]
