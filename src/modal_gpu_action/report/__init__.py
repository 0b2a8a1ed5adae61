"""Stage 5 of inputs -> settings -> backend -> container -> report -> render -> publish: the
run's JUnit files as one TestReport, and how the run concluded.

It imports no other stage: render and publish read it, never the reverse.

    results.py       the TestReport model: cases, problems, totals, the report's conclusion
    junit_reader.py  JUnit XML parsed into a TestReport, streamed (the file, expat, the suites)
    junit_case.py    one <testcase> as read made a TestCase (outcome, node id, crash line)
    merging.py       the shards' reports merged into one
    headline.py      the one line that explains a failure (a collection error's cause...)
    conclusion.py    the six conclusions, each with one wording and one icon
    redaction.py     secret values out of a TestReport before anything is written
    junit_writer.py  the merged TestReport as one JUnit XML file
"""
