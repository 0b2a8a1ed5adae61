"""The exit codes every entry point returns."""

PASSED = 0
FAILED = 1  # tests failed or errored
BAD_INPUT = 2  # an input, a file or the event cannot be used
INFRASTRUCTURE = (
    3  # the run itself failed: not the tests' fault (Modal, the container, a timeout of ours)
)
