"""Stage 6 of inputs -> settings -> backend -> container -> report -> render -> publish: a
TestReport as text people read. Pure functions, no network, nothing written.

Imports report (and the github_actions base); nothing of publish.

    markdown.py          the job summary and the PR comment as markdown
    failures.py          each failure: its node id, the line that explains it, its traceback
    escaping.py          the escapers: test text as inert markdown, node ids as exact code
    comment_sections.py  the comment a matrix of jobs shares: its sections, rows and size
    annotations.py       `::error` commands on the failed tests' files
    tables.py            markdown tables, one way everywhere
    durations.py         a duration as people read it
"""
