"""How a run ended, once: the six conclusions, each with one wording and one icon.

The wording is the `conclusion` output, the word in the summary's and the comment's headline and
in the matrix table, and what a matrix comment's hidden rows store; the icon stands before it in
the headline and the table. Nothing else spells them.
"""

from __future__ import annotations

import enum


class Conclusion(enum.StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    NO_TESTS = "no tests"
    TIMED_OUT = "timed out"
    CANCELLED = "cancelled"
    INFRASTRUCTURE_ERROR = "infrastructure error"

    @property
    def icon(self) -> str:
        return _ICONS[self]

    @property
    def label(self) -> str:
        """Icon and wording, as the headline and the matrix table show them: `✅ passed`."""
        return f"{self.icon} {self.value}"

    @property
    def passing(self) -> bool:
        return self is Conclusion.PASSED

    @classmethod
    def read(cls, text: object) -> Conclusion | None:
        """The conclusion a stored wording names (a matrix comment's row), else None."""
        if not isinstance(text, str):
            return None
        try:
            return cls(text)
        except ValueError:
            return None


_ICONS = {
    Conclusion.PASSED: "✅",
    Conclusion.FAILED: "❌",
    Conclusion.NO_TESTS: "⚠️",
    Conclusion.TIMED_OUT: "⏱️",
    Conclusion.CANCELLED: "🚫",
    Conclusion.INFRASTRUCTURE_ERROR: "💥",
}


def listed() -> str:
    """The wordings as a sentence lists them: `passed`, `failed`, ... or `infrastructure error`."""
    quoted = [f"`{c.value}`" for c in Conclusion]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]
