"""Stage 7, the last, of inputs -> settings -> backend -> container -> report -> render -> publish:
what goes to GitHub's API (the sticky PR comment, the label), and the action's outputs.

Imports render, report, settings and the github_actions base; nothing imports it but the engine
and after_tests.py.

    deadline.py         how long publishing may take: budgets, waits, the one deadline (stdlib
                        only: PyGithub is imported only when something is published)
    github.py           the entry points: publish the comment, remove the label
    github_comment.py   which comments are ours and how concurrent jobs converge on one
    github_requests.py  the API, bounded in time and retried; the pull request; warnings
    outputs.py          the action's outputs as action.yml lists them
"""
