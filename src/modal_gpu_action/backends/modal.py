"""The Modal backend: the suite in Modal GPU containers, through the real `modal` SDK.

    plan(settings) -> dict                                   # no network, no `import modal`
    ModalBackend(settings, cancel_event=event).run(backend.requests()) -> BackendResult

A run is one ephemeral app (`app.run()`) with one function, `container.entry.run_shard`
(modal_app.py builds them); the project's source and our `container` package are added when a
container starts. Each shard is one `spawn` (all start at once), so each shard's result, failure
or timeout is known as its own (modal_answers.py), and a cancel can stop each call. Output
streams live (`modal.enable_output()`): the image build and the tests in separate `::group::`
sections on GitHub.

What finished is kept however a shard ends: while pytest runs, each container relays its crash
record through its own log (container/relay.py); `_relayed_logs` takes those lines out of the
output Modal shows and keeps them per shard (modal_records.py). A shard that never answers
(cancelled, stopped at Modal's time limit, its container lost) reports the tests that finished
and the one that was running (modal_answers.partial_result), once the app has stopped and its
last logs have arrived.

Cancellation: the engine turns SIGINT and SIGTERM into `cancel_event`. While the shards run,
the main thread polls each call (`FunctionCall.get(timeout=...)`) and the event in turn; once it
is set, every unfinished call is cancelled with its containers terminated, `app.run()` is left
(Modal records the app as aborted), and the shards that finished are kept. Three SDK calls block
the main thread for as long as Modal takes: connecting, starting the app (which builds the
image) and spawning. A signal cannot set the event and also end those calls, so for their
length `_interruptible` makes SIGINT and SIGTERM raise KeyboardInterrupt as well, once: the way
Modal's SDK is meant to be interrupted (it cancels the call's coroutine, so a half-started app is
disconnected, and raises again). The event, checked before and after each of them, is the only
other way in; no thread watches it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from modal_gpu_action.backends.base import (
    BackendResult,
    InfrastructureError,
    base_request,
    shard_requests,
)
from modal_gpu_action.backends.modal_answers import (
    NAME,
    Shard,
    backend_result,
    one_line,
    settle,
    stop,
)
from modal_gpu_action.backends.modal_app import (
    build_app,
    container_setup,
    container_timeout,
    describe_upload,
    upload_summary,
)
from modal_gpu_action.backends.modal_image import (
    REMOTE_PROJECT,
    build_recipe,
    dependency_key,
    describe_steps,
    stage_build_files,
)
from modal_gpu_action.backends.modal_records import LogRelay
from modal_gpu_action.container.entry import SETUP_RELAY
from modal_gpu_action.container.protocol import Ending, RunRequest
from modal_gpu_action.github_actions.workflow import (
    commands_stopped,
    group,
    in_github_actions,
    mask,
)
from modal_gpu_action.settings import Settings, SettingsError

# How long Modal's client waits for a stopped app's last logs (its default: 10 s), unless
# MODAL_LOGS_TIMEOUT says otherwise. On a cancel those logs hold the relayed records of the tests
# that finished last, and GitHub kills the job 10 s after its SIGINT: the report must be written
# before that.
LOGS_TIMEOUT_SECONDS = 5

# How long one round of polls waits, shared among the calls still running: what a cancel or a
# finished shard may wait to be noticed, and about one request a second for each running call.
POLL_ROUND_SECONDS = 1.0

CREDENTIALS_HELP = (
    "The usual cause: GitHub does not pass secrets to workflows triggered by pull requests from"
    " forks (or by Dependabot), so `secrets.MODAL_TOKEN_ID` is empty there. To fix it: create a"
    " token (`modal token new`, or Settings > API Tokens on modal.com), add MODAL_TOKEN_ID and"
    " MODAL_TOKEN_SECRET as repository secrets (Settings > Secrets and variables > Actions) and"
    " pass them to this step with `env: MODAL_TOKEN_ID: ${{ secrets.MODAL_TOKEN_ID }}` (and the"
    " same for MODAL_TOKEN_SECRET) or the inputs modal-token-id/modal-token-secret; for pull"
    " requests from forks, gate the job on a label or skip it when the secrets are empty. On"
    " your own machine, `modal token new` stores a token in ~/.modal.toml, which is used when"
    " the inputs and variables are empty (MODAL_PROFILE and MODAL_CONFIG_PATH choose another"
    " profile or file, as they do for `modal`)."
)


# -- what a run would do ------------------------------------------------------------------------


def plan(settings: Settings) -> dict[str, Any]:
    """What `run --backend modal` would do, without contacting Modal or importing it.
    Secret values are never included (only the names of env keys and Modal secrets)."""
    recipe = build_recipe(settings)
    count = settings.shards or 1
    price = settings.gpu.price_per_second()
    container_limit = container_timeout(settings)
    return {
        "backend": NAME,
        "gpu": str(settings.gpu),
        "gpu-argument": settings.gpu.modal_argument(),
        "timeout-seconds": settings.test_timeout_seconds(count),
        "container-timeout-seconds": container_limit,
        "shards": count,
        "retries": settings.retries,
        "project": str(settings.working_directory),
        "project-in-container": REMOTE_PROJECT,
        "upload": describe_upload(recipe.upload),
        "install-project": recipe.install_project,
        "dependency-source": recipe.source,
        "dependency-key": dependency_key(recipe),
        "image": describe_steps(recipe),
        "test-path": settings.test_path,
        "pytest-args": list(settings.pytest_args),
        "env-keys": sorted(settings.env),
        "artifacts": list(settings.artifacts),
        "modal-secrets": list(settings.modal_secrets),
        "credentials": _credentials_state(settings),
        "price-per-second-usd": price,
        "worst-case-cost-usd": (
            None if price is None else round(price * container_limit * count, 4)
        ),
        "cost-cap": settings.cost_cap_plan(count),
    }


def check_credentials(
    settings: Settings,
    *,
    environ: Mapping[str, str] = os.environ,
    stream: TextIO | None = None,
) -> None:
    """Mask both values in the job log; raise SettingsError (exit 2) when one is missing from
    the inputs, the environment and the Modal profile (settings/modal_credentials.py). Runs
    before `import modal`, so a missing secret fails in well under a second."""
    if in_github_actions(environ):
        mask(
            [v for v in (settings.modal_token_id, settings.modal_token_secret) if v],
            stream or sys.stdout,
        )
    missing = [
        name
        for name, value in (
            ("MODAL_TOKEN_ID", settings.modal_token_id),
            ("MODAL_TOKEN_SECRET", settings.modal_token_secret),
        )
        if not value
    ]
    if missing:
        raise SettingsError(
            f"missing Modal credentials: {' and '.join(missing)}"
            f" {'is' if len(missing) == 1 else 'are'} empty (input"
            f" {' and '.join(repr(m.lower().replace('_', '-')) for m in missing)} or the"
            f" environment variable{'s' if len(missing) > 1 else ''}"
            + (
                f"; {settings.modal_credentials_source}"
                if settings.modal_credentials_source
                else ""
            )
            + f"). {CREDENTIALS_HELP}"
        )


def _credentials_state(settings: Settings) -> str:
    try:
        check_credentials(settings, environ={})
    except SettingsError:
        why = settings.modal_credentials_source
        return "missing (a run would stop with exit code 2" + (f"; {why})" if why else ")")
    return f"present ({settings.modal_credentials_source})"


# -- the run ------------------------------------------------------------------------------------


class ModalBackend:
    """Runs the shards in Modal GPU containers; see the module's docstring."""

    name = NAME

    def __init__(
        self,
        settings: Settings,
        *,
        cancel_event: threading.Event | None = None,
        environ: Mapping[str, str] | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.settings = settings
        self.cancel_event = cancel_event or threading.Event()
        self.environ = dict(os.environ if environ is None else environ)
        self.stream = stream or sys.stdout

    def requests(self) -> list[RunRequest]:
        """One request per shard; the env input travels as a Modal secret, not in the request."""
        count = self.settings.shards or 1
        base = dataclasses.replace(
            base_request(self.settings, working_directory=REMOTE_PROJECT),
            env={},
            timeout_seconds=self.settings.test_timeout_seconds(count),  # max-cost-usd may lower it
            timeout_cause=self.settings.timeout_cause(count),
        )
        return shard_requests(base, count, self.settings.shard_durations)

    def run(
        self, requests: Sequence[RunRequest], *, meanwhile: Callable[[], object] | None = None
    ) -> BackendResult:
        if not requests:
            raise InfrastructureError("nothing to run: no shard requests")
        check_credentials(self.settings, environ=self.environ, stream=self.stream)
        recipe = build_recipe(self.settings)
        relay = LogRelay()
        shards = [Shard(request, relay.new_shard()) for request in requests]
        with tempfile.TemporaryDirectory(prefix="modal-gpu-action-") as folder:
            staging = Path(folder)
            stage_build_files(recipe, staging)
            import modal

            try:
                with _interruptible(self.cancel_event):
                    client = self._client(modal)
            except KeyboardInterrupt:  # cancelled while connecting (Modal retries for a minute)
                return self._result(shards)
            app, function = build_app(self.settings, recipe, staging)
            for line in upload_summary(recipe.upload):
                print(line, file=self.stream, flush=True)
            if "MODAL_LOGS_TIMEOUT" not in os.environ:  # see LOGS_TIMEOUT_SECONDS
                modal.config.config.override_locally("logs_timeout", str(LOGS_TIMEOUT_SECONDS))
            with modal.enable_output(), _relayed_logs(modal, relay, self.stream):
                setup = container_setup(recipe)
                self._session(modal, client, app, function, setup, shards, meanwhile)
        return self._result(shards)

    def _client(self, modal: Any) -> Any:
        try:
            return modal.Client.from_credentials(
                self.settings.modal_token_id, self.settings.modal_token_secret
            )
        except modal.exception.AuthError as error:
            raise SettingsError(_auth_message(error, self.settings)) from None
        except Exception as error:
            raise InfrastructureError(f"cannot reach Modal: {one_line(error)}") from None

    def _session(
        self,
        modal: Any,
        client: Any,
        app: Any,
        function: Any,
        setup: dict[str, Any],
        shards: list[Shard],
        meanwhile: Callable[[], object] | None,
    ) -> None:
        github = in_github_actions(self.environ)
        gpu = self.settings.gpu
        with contextlib.ExitStack() as running:
            with (
                group(f"Modal: image and app (GPU {gpu})", github, self.stream),
                commands_stopped(github, self.stream),  # the build runs the project's steps
            ):
                try:
                    with _interruptible(self.cancel_event):
                        running.enter_context(app.run(client=client))
                except KeyboardInterrupt:
                    pass  # the event is set: Modal has aborted the app's start-up
                except Exception as error:
                    raise _setup_error(modal, error, self.settings) from None
            if self.cancel_event.is_set():
                print("modal-gpu-action: cancelled before the tests started", file=self.stream)
                return
            title = f"Tests on Modal: {len(shards)} container{'s' if len(shards) > 1 else ''}"
            # Leaving `running` stops the app; its last logs arrive before the group ends. On a
            # cancel, it is left with KeyboardInterrupt: Modal's SDK then records the app as
            # aborted ("App aborted") instead of completed, and does not raise it again.
            with (
                group(title, github, self.stream),
                commands_stopped(github, self.stream),  # the tests' output
                contextlib.suppress(KeyboardInterrupt),
                running,
            ):
                self._spawn(function, setup, shards)
                if meanwhile is not None:
                    meanwhile()
                self._wait(shards)
                if self.cancel_event.is_set():
                    raise KeyboardInterrupt

    def _spawn(self, function: Any, setup: dict[str, Any], shards: list[Shard]) -> None:
        """One call per shard. When one cannot start, the others are stopped (`_wait`)."""
        try:
            for shard in shards:
                with _interruptible(self.cancel_event):
                    shard.started = time.monotonic()
                    shard_setup = {**setup, SETUP_RELAY: shard.relayed.token}
                    shard.call = function.spawn(shard.request.to_dict(), shard_setup)
        except KeyboardInterrupt:
            pass  # the event is set
        except Exception as error:
            for shard in shards:
                if shard.call is None:
                    shard.error = f"could not start on Modal: {one_line(error)}"

    def _wait(self, shards: list[Shard]) -> None:
        """Poll each running call in turn until all have answered or the event is set; then
        cancel the calls still running."""
        pending = [shard for shard in shards if shard.call is not None]
        failed_to_start = len(pending) < len(shards)
        time_limit = container_timeout(self.settings)
        while pending and not failed_to_start and not self.cancel_event.is_set():
            shard = pending[0]
            try:
                answer = shard.call.get(timeout=POLL_ROUND_SECONDS / len(pending))
                error = None
            except KeyboardInterrupt:  # SIGINT with Python's own handler (no engine around)
                self.cancel_event.set()
                break
            except Exception as raised:
                if _still_running(raised):
                    pending.append(pending.pop(0))
                    continue
                answer, error = None, raised
            pending.pop(0)
            elapsed = time.monotonic() - shard.started
            settle(shard, answer, error, elapsed=elapsed, time_limit=time_limit)
            self._announce(shard)
        if pending:
            self._cancel(pending)

    def _announce(self, shard: Shard) -> None:
        if shard.error:
            state = f"failed: {shard.error}"
        elif shard.ending is Ending.TIMED_OUT:
            state = "timed out"
        elif shard.result is not None:
            state = f"finished (pytest exit code {shard.result.exit_code})"
        else:
            state = "answered"
        print(
            f"modal-gpu-action: {shard.label} {state} after {shard.seconds:.1f} s",
            file=self.stream,
            flush=True,
        )

    def _cancel(self, shards: list[Shard]) -> None:
        """Cancel unfinished calls and terminate their containers. On a cancel they report as
        cancelled; when another shard could not start, that error is theirs too. Either way
        their report is what they relayed (modal_answers.partial_result), built once the app
        has stopped and its last logs have arrived."""
        print(
            f"modal-gpu-action: stopping {len(shards)} running container"
            f"{'s' if len(shards) > 1 else ''}",
            file=self.stream,
            flush=True,
        )
        for shard in shards:
            with contextlib.suppress(Exception):
                shard.call.cancel(terminate_containers=True)
            shard.seconds = time.monotonic() - shard.started
            if self.cancel_event.is_set():
                stop(shard, Ending.CANCELLED, "the run was cancelled")
            else:
                shard.error = f"{shard.label} was stopped: another shard could not start"
                stop(shard, Ending.CRASHED, "stopped because another shard could not start")

    def _result(self, shards: list[Shard]) -> BackendResult:
        return backend_result(self.settings.gpu, shards, cancelled=self.cancel_event.is_set())


@contextlib.contextmanager
def _relayed_logs(modal: Any, relay: LogRelay, stream: TextIO) -> Iterator[None]:
    """Inside `modal.enable_output()`: every piece of log text Modal is about to show goes
    through `relay.filter` first, which keeps the containers' relayed records and passes the
    rest on. Modal's output manager takes each piece in `put_streaming_log` (modal 1.5 and 1.6;
    the exported `modal.output.OutputManager` declares it). Without it, nothing is relayed: a
    shard that does not answer then reports no tests."""
    manager = modal.output.OutputManager.get()
    show = getattr(manager, "put_streaming_log", None)
    if show is None:
        yield
        return

    async def put_streaming_log(log: Any, prefix: str = "") -> None:
        text = log.data
        try:
            kept = relay.filter(int(log.file_descriptor), text) if text else text
        except Exception:  # never lose output to the relay
            kept = text
        if kept == text:
            await show(log, prefix=prefix)
        elif kept:
            piece = type(log)()
            piece.CopyFrom(log)
            piece.data = kept
            await show(piece, prefix=prefix)

    manager.put_streaming_log = put_streaming_log
    try:
        yield
    finally:
        with contextlib.suppress(AttributeError):
            del manager.put_streaming_log
        held = relay.flush()
        if held:
            print(held, file=stream, flush=True)
        if relay.unreadable:
            print(
                f"modal-gpu-action: warning: {relay.unreadable} relayed record"
                f" line{'s' if relay.unreadable > 1 else ''} arrived damaged and"
                f" {'were' if relay.unreadable > 1 else 'was'} left out",
                file=stream,
                flush=True,
            )


@contextlib.contextmanager
def _interruptible(cancel_event: threading.Event) -> Iterator[None]:
    """Around a call into Modal's SDK that blocks the main thread: KeyboardInterrupt at once when
    the run is already cancelled; else, until the call returns, SIGINT and SIGTERM do what they
    did (the engine's handler sets the event) and then raise KeyboardInterrupt, once. Outside
    the main thread (no signal reaches it), the check only."""
    if cancel_event.is_set():
        raise KeyboardInterrupt
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = False

    def interrupt(signum: int, frame: FrameType | None) -> None:
        nonlocal raised
        cancel_event.set()
        before = previous[signum]
        if callable(before) and before is not signal.default_int_handler:
            before(signum, frame)
        if not raised:
            raised = True
            raise KeyboardInterrupt

    previous: dict[int, Any] = {
        sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    for signum in previous:
        signal.signal(signum, interrupt)
    try:
        yield
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before)


def _still_running(error: Exception) -> bool:
    """`FunctionCall.get(timeout=...)` found no answer yet: Modal's SDK raises a bare
    TimeoutError for that (a function that ran past Modal's limit raises FunctionTimeoutError,
    and the local emulator a TimeoutError saying so)."""
    return type(error) is TimeoutError and not error.args


def _setup_error(modal: Any, error: Exception, settings: Settings) -> Exception:
    exc = modal.exception
    if isinstance(error, exc.AuthError):
        return SettingsError(_auth_message(error, settings))
    if isinstance(error, exc.NotFoundError) and "secret" in str(error).lower():
        return SettingsError(
            f"invalid value for input 'modal-secrets': {one_line(error)} (create it with"
            " `modal secret create NAME KEY=VALUE` in the workspace of the token)"
        )
    if isinstance(error, exc.ImageBuildError) or type(error).__name__ == "ImageBuildError":
        return InfrastructureError(f"the Modal image did not build: {one_line(error)}")
    return InfrastructureError(f"Modal could not start the app: {one_line(error)}")


def _auth_message(error: BaseException, settings: Settings) -> str:
    return (
        f"Modal refused the credentials: {one_line(error)}. Check that MODAL_TOKEN_ID and"
        " MODAL_TOKEN_SECRET hold one token's id and secret (`modal token new` makes one);"
        f" these came from {settings.modal_credentials_source or 'the inputs'}."
    )
