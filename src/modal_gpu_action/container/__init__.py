"""What runs where the tests run: in the Modal container, on a self-hosted runner, and inside
pytest itself as two plugins.

Stage 4 of inputs -> settings -> backend -> container -> report -> render -> publish.

The host (the rest of `modal_gpu_action`) imports this package; this package imports nothing of
the host. It is shipped whole: the Modal backend adds it (and the package's __init__.py, nothing
else of ours) to the container, where Modal imports `modal_gpu_action.container.entry`; for
every pytest run, run.py copies it under a private name into a temporary folder put first on
pytest's PYTHONPATH and loads the plugins from that copy by name
(`-p _modal_gpu_action_container.progress`): pytest sees neither our site-packages nor a module
that could shadow the user's.

Rules that follow from running in the user's Python: the standard library only (the sharding
plugin also imports pytest, which is there wherever it is loaded); Python 3.9 syntax and library;
imports between these modules are relative, so the copy works under its other name.

    protocol.py   RunRequest in, RunResult out, Ending, GpuFacts: the contract with the host
    probe.py      which GPUs pytest will see (nvidia-smi)
    gpu_memory.py the GPUs' memory polled while pytest runs (nvidia-smi), its peak
    process.py    pytest in a process group of its own: streamed, timed out, cancelled
    run.py        one pytest run: the command, the plugins, how it ended; the script entry
    record.py     the crash record read back (its state from its ends), JUnit synthesised from it
    pytest_junit.py  pytest's JUnit file checked by its ends, else the record's report
    artifacts.py  the files the tests left (coverage.xml), collected and packed into the RunResult
    relay.py      the crash record relayed through the container's log while pytest runs
    names.py      the names pytest's JUnit XML gives a test
    progress.py   pytest plugin: the crash record, written as each test goes
    sharding.py   pytest plugin: keep shard I of N
    reruns.py     the failed tests re-run and merged into the report; its plugin keeps them
    balance.py    shards balanced by durations: planned on the host, applied by sharding.py
    entry.py      the Modal container's function: links, the project's install, the run
    __main__.py   `python -m modal_gpu_action.container --request R --result R`: run.py's main
"""
