"""Run a Python project's pytest suite on a real GPU and report the results."""

__version__ = "1.0.0"
