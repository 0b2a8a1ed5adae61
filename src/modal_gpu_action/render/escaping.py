"""Escapers: text from the tests (names, messages, tracebacks) as markdown that shows it and
does nothing else. Every piece of it goes through one of them before it reaches the markdown:
- `escape_inline`: one line of plain text, safe in a paragraph, heading, list item or table cell.
  Markdown punctuation is backslash-escaped, `<`, `>` and `&` become entities, line breaks
  (U+2028 and U+2029 too) become spaces, other control characters U+FFFD, and a WORD JOINER
  (U+2060, invisible) follows every `@`, `#` and `:` and sits inside `www.` and `GH-1`, so GitHub
  builds no @mention, issue reference, emoji image or link from it. (An entity such as `&#64;`
  would not do: GitHub looks for mentions in the rendered text, where the entity is an `@` again.)
- `code_inline`: one line in a code span, shown exactly as it is (no escapes, no joiners), for
  what people copy: a test's node id pasted into `pytest` must be the id. GitHub neither links,
  mentions nor renders HTML or emoji inside code; the span's fence is longer than any backtick
  run in the text, and in a table cell `|` is escaped (GitHub's tables split cells first).
- `escape_block`: a fenced code block whose fence is longer than any backtick run in the text,
  so nothing inside can close it; GitHub neither links nor mentions inside code.
All three first pass the text through `neutralise`, as annotations.py does: every character that
makes text read as something it is not (bidirectional marks and overrides, zero-width characters,
the line and paragraph separators: `_MISLEADING`) is shown as U+FFFD, the replacement character.
"""

from __future__ import annotations

import re

_WJ = "\u2060"
# In this order: backslashes first, then "&" before the entities that bring their own.
_REPLACEMENTS = (
    ("\\", "\\\\"),
    ("&", "&amp;"),
    ("<", "&lt;"),
    (">", "&gt;"),
    *((char, "\\" + char) for char in "`*_{}[]()+-.!|~$="),
    ("#", "\\#" + _WJ),
    ("@", "@" + _WJ),
    (":", ":" + _WJ),
)
# Line breaks become spaces; other control characters become a visible replacement character.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_SHOWN = dict.fromkeys("\n\r\t\x85\u2028\u2029", " ")
# Characters that make text read as something it is not ("Trojan Source" and its kin): every
# Unicode format character (category Cf) - the bidirectional marks U+200E, U+200F and U+061C,
# the embeddings, overrides and isolates U+202A-U+202E and U+2066-U+2069, the zero-width
# U+200B-U+200D, U+2060 and U+FEFF, the soft hyphen, invisible operators, tag characters - and
# the line and paragraph separators U+2028 and U+2029.
_MISLEADING = re.compile(
    "[\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f]"
)
_LINK_WORDS = re.compile(r"(?<=www)(?=\.)|(?<=\bgh)(?=-[0-9])", re.IGNORECASE)


def neutralise(text: str) -> str:
    """`text` with every character that misleads the eye (`_MISLEADING`: bidirectional marks
    and overrides, zero-width characters, U+2028/U+2029) shown as U+FFFD: what the tests
    wrote is shown as what it is. For any test-derived text that people read."""
    if text.isascii():  # none is (a check of a flag: most text is spared the search)
        return text
    return _MISLEADING.sub("\ufffd", text) if _MISLEADING.search(text) else text


def escape_inline(text: str) -> str:
    """`text` as one line of inert markdown: no markup, HTML, mention, reference or link."""
    if _CONTROL.search(text):
        text = _CONTROL.sub(lambda match: _CONTROL_SHOWN.get(match[0], "\ufffd"), text)
    text = neutralise(text)  # before the word joiners of our own are added below
    lowered = text.lower()
    if "www." in lowered or "gh-" in lowered:
        text = _LINK_WORDS.sub(_WJ, text)
    for old, new in _REPLACEMENTS:  # str.replace per character: far faster than translate
        if old in text:
            text = text.replace(old, new)
    return text.strip()


def escape_block(text: str, *, note: str = "") -> str:
    """`text` verbatim in a fenced code block (but `neutralise`d); put it between blank lines.
    A `note` of our own (no backtick, no line break) goes on a line above it, not searched:
    the same block as for `f"{note}\n{text}"`, but ASCII text is spared the search."""
    text = neutralise(text)
    if note:
        text = f"{note}\n{text}"
    fence = "`" * max(3, _longest_backtick_run(text) + 1)
    return f"{fence}text\n{text}\n{fence}"


def _longest_backtick_run(text: str) -> int:
    if "`" not in text:  # most tracebacks: skip the regex
        return 0
    return max(len(run) for run in _BACKTICK_RUN.findall(text))


_BACKTICK_RUN = re.compile(r"`+")


def code_inline(text: str, *, in_table: bool = False) -> str:
    """`text` as one code span that shows it exactly (see the module's docstring)."""
    if _CONTROL.search(text):
        text = _CONTROL.sub(lambda match: _CONTROL_SHOWN.get(match[0], "\ufffd"), text)
    text = neutralise(text)
    if in_table:
        text = text.replace("|", "\\|")
    fence = "`" * (_longest_backtick_run(text) + 1)
    # cmark takes one space off each end when both have one: a space on each side keeps a text
    # that starts or ends with a backtick (or with spaces on both ends) whole.
    if text.strip(" ") and (text[0] == "`" or text[-1] == "`" or (text[0] == text[-1] == " ")):
        text = f" {text} "
    return f"{fence}{text}{fence}"
