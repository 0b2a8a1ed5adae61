"""GitHub Actions itself, which every stage talks to: no stage of its own, below them all.

Any stage may import it; it imports no stage (and nothing of the host but its own modules).

    workflow.py       workflow commands and files: log groups, masks, stopped commands, outputs,
                      the step summary
    github_limits.py  what GitHub allows and how it names things: comment and summary sizes,
                      annotations shown, a repository, a commit, a run's page
    output_files.py   where the action may write its files, checked with the inputs and again
                      when written: never through a link
"""
