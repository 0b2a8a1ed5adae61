"""The Modal backend: the suite in Modal GPU containers, through the real `modal` SDK.

    plan(settings) -> dict                                   # no network, no `import modal`
    ModalBackend(settings, cancel_event=event).run(backend.requests()) -> BackendResult

A run is one ephemeral app (`app.run()`) with one function, `modal_entry.run_shard`, on an image
built from the project's dependency declarations only (modal_image.py); the project's source and
our runner are added when a container starts. Each shard is one `spawn` (all start at once), so
each shard's result, failure or timeout is known as its own, and a cancel can stop each call.
Output streams live (`modal.enable_output()`): the image build and the tests in separate
`::group::` sections on GitHub.

Cancellation: the engine sets `cancel_event` on SIGINT/SIGTERM. While Modal blocks the main thread
(building the image, creating the app, spawning), only an exception can get it back, so during
those calls this backend chains its own SIGINT/SIGTERM handler that raises KeyboardInterrupt once
(Modal's SDK then aborts the app's start-up cleanly); a cancel_event set by other means sends the
main thread a SIGINT to the same effect. While the shards run, the main thread only waits, so it
just watches the event. Either way every unfinished call is cancelled with its containers
terminated, the app is stopped, and the shards that finished are kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import queue
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from modal_gpu_action.backends import modal_entry
from modal_gpu_action.backends.base import (
    BackendResult,
    InfrastructureError,
    base_request,
    shard_requests,
)
from modal_gpu_action.backends.modal_image import (
    REMOTE_PROJECT,
    Recipe,
    build_recipe,
    dependency_key,
    describe_steps,
    dockerignore_files,
    requirements_commands,
    stage_build_files,
)
from modal_gpu_action.gpu import GpuChoice, GpuSpec
from modal_gpu_action.project_files import ProjectFiles
from modal_gpu_action.runner import GpuFacts, RunRequest, RunResult, synthesize_junit
from modal_gpu_action.settings import Settings, SettingsError
from modal_gpu_action.workflow import commands_stopped, group, in_github_actions, mask

NAME = "modal"
APP_NAME = "modal-gpu-action"
# The container may run this long past timeout-minutes: the project's install at start, the
# runner's kill grace, and handing the result back. The runner stops pytest at timeout-minutes
# itself and keeps what finished; Modal's limit is only the backstop.
CONTAINER_GRACE_SECONDS = 120
MAX_FUNCTION_TIMEOUT_SECONDS = 24 * 3600  # Modal's longest
POLL_SECONDS = 0.1
PLAN_PATHS = 20  # how many uploaded paths `plan` shows
PLAN_REFUSALS = 50  # how many refused paths `plan` shows
LOG_REFUSALS = 10  # how many refused paths a run prints

CREDENTIALS_HELP = (
    "The usual cause: GitHub does not pass secrets to workflows triggered by pull requests from"
    " forks (or by Dependabot), so `secrets.MODAL_TOKEN_ID` is empty there. To fix it: create a"
    " token (`modal token new`, or Settings > API Tokens on modal.com), add MODAL_TOKEN_ID and"
    " MODAL_TOKEN_SECRET as repository secrets (Settings > Secrets and variables > Actions) and"
    " pass them to this step with `env: MODAL_TOKEN_ID: ${{ secrets.MODAL_TOKEN_ID }}` (and the"
    " same for MODAL_TOKEN_SECRET) or the inputs modal-token-id/modal-token-secret; for pull"
    " requests from forks, gate the job on a label or skip it when the secrets are empty."
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
        "timeout-seconds": settings.timeout_seconds,
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
        "modal-secrets": list(settings.modal_secrets),
        "credentials": _credentials_state(settings),
        "price-per-second-usd": price,
        "max-cost-usd": None if price is None else round(price * container_limit * count, 4),
    }


def describe_upload(upload: ProjectFiles) -> dict[str, Any]:
    """What of the project goes to the container, for `plan`: counts, size, the first paths, and
    what was refused and why (paths as JSON strings, so any character in them is escaped)."""
    return {
        "rules": upload.rules,
        "files": len(upload.files),
        "bytes": upload.size,
        "first-paths": list(upload.files[:PLAN_PATHS]),
        "links": [{"path": link.path, "target": link.target} for link in upload.links],
        "refused": [
            {"path": refusal.path, "reason": refusal.reason}
            for refusal in upload.refused[:PLAN_REFUSALS]
        ],
        "refused-count": len(upload.refused),
        "left-out": list(upload.left_out[:PLAN_REFUSALS]),
        "left-out-count": len(upload.left_out),
        "notes": list(upload.notes),
    }


def upload_summary(upload: ProjectFiles) -> list[str]:
    """Lines for the log before a run: counts, then refused paths in ascii() form (a path from the
    pull request can hold a newline or `::`; escaped and quoted, it can start no line)."""
    lines = [
        f"modal-gpu-action: uploading {len(upload.files)} files ({upload.size} bytes) and"
        f" {len(upload.links)} links of the project ({upload.rules} rules); refused"
        f" {len(upload.refused)}, left out {len(upload.left_out)} untracked caches"
    ]
    lines += [
        f"modal-gpu-action: refused {refusal.path!a}: {refusal.reason}"
        for refusal in upload.refused[:LOG_REFUSALS]
    ]
    if len(upload.refused) > LOG_REFUSALS:
        lines.append(
            f"modal-gpu-action: ... and {len(upload.refused) - LOG_REFUSALS} more (`plan` lists"
            " them)"
        )
    lines += [f"modal-gpu-action: note: {ascii(note)[1:-1]}" for note in upload.notes]
    return lines


def container_timeout(settings: Settings) -> int:
    """Modal's function timeout: timeout-minutes plus the container's own overhead."""
    seconds = math.ceil(settings.timeout_seconds) + CONTAINER_GRACE_SECONDS
    return min(seconds, MAX_FUNCTION_TIMEOUT_SECONDS)


def check_credentials(
    settings: Settings,
    *,
    environ: Mapping[str, str] = os.environ,
    stream: TextIO | None = None,
) -> None:
    """Mask both values in the job log; raise SettingsError (exit 2) when one is missing.
    Runs before `import modal`, so a missing secret fails in well under a second."""
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
            f" environment variable{'s' if len(missing) > 1 else ''}). {CREDENTIALS_HELP}"
        )


def _credentials_state(settings: Settings) -> str:
    try:
        check_credentials(settings, environ={})
    except SettingsError:
        return "missing (a run would stop with exit code 2)"
    return "present"


# -- the Modal objects --------------------------------------------------------------------------


def build_image(recipe: Recipe, staging: Path) -> Any:
    """The modal.Image for `recipe`; `staging` must hold `stage_build_files(recipe, staging)`
    until the app has been created (the SDK reads the files when it builds the layers)."""
    import modal

    base = recipe.base
    only_the_upload = upload_filter(recipe.upload)
    if base.kind == "debian_slim":
        image = modal.Image.debian_slim(python_version=base.python_version)
    elif base.kind == "registry":
        image = modal.Image.from_registry(base.image, add_python=base.add_python)
    else:
        assert base.dockerfile is not None
        # The COPY lines' context: the uploaded files only (never a link's target), less what
        # the project's .dockerignore leaves out, as Modal would read it.
        context_ignore: Callable[[Path], bool] = only_the_upload
        ignore_files = dockerignore_files(base.dockerfile, recipe.upload)
        if ignore_files:
            text = (recipe.project_dir / ignore_files[0]).read_text("utf-8", errors="replace")
            docker_ignored = modal.FilePatternMatcher(*text.splitlines())

            def context_ignore(path: Path) -> bool:
                return only_the_upload(path) or bool(docker_ignored(path))

        image = modal.Image.from_dockerfile(
            base.dockerfile,
            context_dir=recipe.project_dir,
            add_python=base.add_python,
            ignore=context_ignore,
        )
    if recipe.source == "uv.lock":
        image = image.uv_sync(
            str(staging / "uv"),
            groups=list(recipe.groups) or None,
            extras=list(recipe.extras) or None,
        )
    elif recipe.source == "requirements":
        image = image.dockerfile_commands(
            requirements_commands(recipe), context_dir=staging / "requirements", ignore=[]
        )
    elif recipe.source == "pyproject" and recipe.dependencies:
        image = image.uv_pip_install(*recipe.dependencies)
    if recipe.packages:
        image = image.uv_pip_install(*recipe.packages)
    # Added when a container starts, never built into a layer: a commit that only changes code
    # reuses every cached layer above. Exactly the listed files (project_files.py); the links
    # among them are recreated in the container (modal_entry.make_links).
    image = image.add_local_dir(
        recipe.project_dir, REMOTE_PROJECT, copy=False, ignore=only_the_upload
    )
    return image.add_local_python_source("modal_gpu_action", copy=False)


def upload_filter(upload: ProjectFiles) -> Callable[[Path], bool]:
    """Modal's `ignore` for the project folder: True for everything but the listed files and
    their folders. As a Modal pattern matcher that allows pruning, Modal's walker does not enter
    the folders that hold nothing to upload (.venv, ignored data); a plain callable otherwise
    (the same files, found by walking everything)."""
    import modal

    base = getattr(modal.file_pattern_matcher, "_AbstractPatternMatcher", None)
    if base is None:
        return upload.ignores

    class _UploadFilter(base):  # type: ignore[misc, valid-type]
        def __call__(self, path: Path) -> bool:
            return upload.ignores(path)

        def can_prune_directories(self) -> bool:
            return True

    return _UploadFilter()


def build_app(settings: Settings, recipe: Recipe, staging: Path) -> tuple[Any, Any]:
    """(modal.App, its Function) for a run: GPU, timeout, retries and secrets from settings."""
    import modal

    secrets = []
    if settings.env:  # the env input's values reach the tests as a secret: never in the image
        secrets.append(modal.Secret.from_dict(dict(settings.env)))
    secrets += [modal.Secret.from_name(name) for name in settings.modal_secrets]
    app = modal.App(APP_NAME, include_source=False)
    function = app.function(
        image=build_image(recipe, staging),
        gpu=settings.gpu.modal_argument(),
        timeout=container_timeout(settings),
        retries=settings.retries or None,
        secrets=secrets,
        serialized=False,
    )(modal_entry.run_shard)
    return app, function


# -- the run ------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Shard:
    request: RunRequest
    call: Any = None
    started: float = 0.0
    result: RunResult | None = None
    seconds: float = 0.0  # the container's own time for this shard
    error: str | None = None  # not the tests' fault
    detail: str = ""


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
        base = dataclasses.replace(
            base_request(self.settings, working_directory=REMOTE_PROJECT), env={}
        )
        return shard_requests(base, self.settings.shards or 1)

    def run(self, requests: Sequence[RunRequest]) -> BackendResult:
        if not requests:
            raise InfrastructureError("nothing to run: no shard requests")
        check_credentials(self.settings, environ=self.environ, stream=self.stream)
        recipe = build_recipe(self.settings)
        shards = [_Shard(request) for request in requests]
        started = time.monotonic()
        with (
            tempfile.TemporaryDirectory(prefix="modal-gpu-action-") as folder,
            _Interrupter(self.cancel_event) as interrupter,
        ):
            staging = Path(folder)
            stage_build_files(recipe, staging)
            import modal

            try:
                with interrupter.armed():
                    client = self._client(modal)
            except KeyboardInterrupt:  # cancelled while connecting (Modal retries for a minute)
                self.cancel_event.set()
                return self._result(shards, time.monotonic() - started)
            app, function = build_app(self.settings, recipe, staging)
            setup = {
                modal_entry.SETUP_PROJECT: REMOTE_PROJECT,
                modal_entry.SETUP_INSTALL: recipe.install_project,
                modal_entry.SETUP_LINKS: [[link.path, link.target] for link in recipe.upload.links],
            }
            for line in upload_summary(recipe.upload):
                print(line, file=self.stream, flush=True)
            with modal.enable_output():
                self._session(modal, client, app, function, setup, shards, interrupter)
        return self._result(shards, time.monotonic() - started)

    def _client(self, modal: Any) -> Any:
        try:
            return modal.Client.from_credentials(
                self.settings.modal_token_id, self.settings.modal_token_secret
            )
        except modal.exception.AuthError as error:
            raise SettingsError(_auth_message(error)) from None
        except Exception as error:
            raise InfrastructureError(f"cannot reach Modal: {_one_line(error)}") from None

    def _session(
        self,
        modal: Any,
        client: Any,
        app: Any,
        function: Any,
        setup: dict[str, Any],
        shards: list[_Shard],
        interrupter: _Interrupter,
    ) -> None:
        github = in_github_actions(self.environ)
        gpu = self.settings.gpu
        with contextlib.ExitStack() as running:
            with (
                group(f"Modal: image and app (GPU {gpu})", github, self.stream),
                commands_stopped(github, self.stream),  # the build runs the project's steps
            ):
                try:
                    with interrupter.armed():
                        running.enter_context(app.run(client=client))
                except KeyboardInterrupt:
                    self.cancel_event.set()
                except Exception as error:
                    raise _setup_error(modal, error) from None
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
                self._run_shards(function, setup, shards, interrupter)
                if self.cancel_event.is_set():
                    raise KeyboardInterrupt

    def _run_shards(
        self, function: Any, setup: dict[str, Any], shards: list[_Shard], interrupter: _Interrupter
    ) -> None:
        answers: queue.Queue[tuple[int, Any, BaseException | None]] = queue.Queue()
        try:
            with interrupter.armed():
                for index, shard in enumerate(shards):
                    shard.started = time.monotonic()
                    shard.call = function.spawn(shard.request.to_dict(), setup)
                    threading.Thread(
                        target=_wait_for, args=(index, shard.call, answers), daemon=True
                    ).start()
        except KeyboardInterrupt:
            self.cancel_event.set()
        except Exception as error:  # stop what did start; report why
            for shard in shards:
                if shard.call is None:
                    shard.error = f"could not start on Modal: {_one_line(error)}"
        pending = {i for i, shard in enumerate(shards) if shard.call is not None}
        failed_to_start = len(pending) < len(shards)
        while pending and not failed_to_start and not self.cancel_event.is_set():
            try:
                index, value, problem = answers.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            pending.discard(index)
            self._settle(shards[index], value, problem)
            self._announce(shards[index])
        if pending:
            self._cancel([shards[i] for i in sorted(pending)])

    def _announce(self, shard: _Shard) -> None:
        label = shard.request.label or "the container"
        if shard.error:
            state = f"failed: {shard.error}"
        elif shard.result is not None and shard.result.timed_out:
            state = "timed out"
        elif shard.result is not None:
            state = f"finished (pytest exit code {shard.result.exit_code})"
        else:
            state = "answered"
        print(
            f"modal-gpu-action: {label} {state} after {shard.seconds:.1f} s",
            file=self.stream,
            flush=True,
        )

    def _settle(self, shard: _Shard, value: Any, error: BaseException | None) -> None:
        elapsed = time.monotonic() - shard.started
        label = shard.request.label or "the container"
        if error is not None:
            shard.seconds = elapsed
            if _is_timeout(error):
                shard.result = _placeholder(
                    shard.request,
                    elapsed,
                    timed_out=True,
                    note=f"Modal stopped {label} at its time limit"
                    f" ({container_timeout(self.settings)} s)",
                )
            else:
                shard.error = f"{label} failed on Modal: {_one_line(error)}"
            return
        if not isinstance(value, dict):
            shard.error = f"{label} answered something unexpected: {type(value).__name__}"
            return
        shard.seconds = float(value.get("seconds") or elapsed)
        if "error" in value:
            shard.error = f"{label}: {value['error']}"
            shard.detail = str(value.get("detail") or "")
            return
        try:
            result = RunResult.from_dict(value["result"])
        except (KeyError, TypeError, ValueError) as problem:
            shard.error = f"{label} answered an unreadable result: {problem}"
            return
        shard.result = result
        could_not_run = _could_not_run(result)
        if could_not_run:
            shard.error = f"{label}: {could_not_run}"
            shard.detail = result.output_tail

    def _cancel(self, shards: list[_Shard]) -> None:
        """Cancel unfinished calls and terminate their containers. On a cancel they report as
        cancelled; when another shard could not start, they are lost to that error."""
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
                shard.result = _placeholder(
                    shard.request,
                    shard.seconds,
                    cancelled=True,
                    note="cancelled before it finished",
                )
            else:
                label = shard.request.label or "the container"
                shard.error = f"{label} was stopped: another shard could not start"

    def _result(self, shards: list[_Shard], wall: float) -> BackendResult:
        results = [s.result for s in shards if s.result is not None]
        errors = [s for s in shards if s.error]
        cancelled = self.cancel_event.is_set()
        if not results and not cancelled:
            message = "; ".join(s.error or "" for s in errors) or "no shard answered"
            raise InfrastructureError(message, detail="\n\n".join(s.detail for s in errors))
        spec = self.settings.gpu
        gpu_seconds = 0.0
        cost: float | None = 0.0
        for shard in shards:
            facts = shard.result.gpu if shard.result is not None else None
            choice = _choice_for(spec, facts)
            gpus = choice.count if choice is not None else spec.primary.count
            gpu_seconds += shard.seconds * gpus
            price = choice.price_per_second if choice is not None else spec.price_per_second()
            cost = None if cost is None or price is None else cost + shard.seconds * price
        return BackendResult(
            backend=NAME,
            shards=results,
            gpu_description=_describe(results, spec),
            gpu_seconds=round(gpu_seconds, 3),
            wall_seconds=round(wall, 3),
            cost_usd=None if cost is None else round(cost, 6),
            cancelled=cancelled or any(r.cancelled for r in results),
            timed_out=any(r.timed_out for r in results),
            infrastructure_error="; ".join(s.error or "" for s in errors) or None,
        )


def _wait_for(
    index: int, call: Any, answers: queue.Queue[tuple[int, Any, BaseException | None]]
) -> None:
    """In a thread: block on one call's result (the emulator answers only a blocking get)."""
    try:
        answers.put((index, call.get(), None))
    except BaseException as error:
        answers.put((index, None, error))


class _Interrupter:
    """Turns a cancel (a signal, or cancel_event set elsewhere) into one KeyboardInterrupt in the
    main thread, but only inside `armed()`: the blocking Modal calls that nothing else can stop.
    Outside it, signals only set the event. Previous handlers (the engine's) are still called."""

    def __init__(self, cancel_event: threading.Event) -> None:
        self.cancel_event = cancel_event
        self._armed = False
        self._raised = False
        self._previous: dict[int, Any] = {}
        self._main = threading.current_thread() is threading.main_thread()
        self._done = threading.Event()

    def __enter__(self) -> _Interrupter:
        if self._main:
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
            threading.Thread(target=self._watch, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._armed = False
        self._done.set()
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)

    @contextlib.contextmanager
    def armed(self) -> Iterator[None]:
        if self.cancel_event.is_set():
            raise KeyboardInterrupt
        self._armed = True
        try:
            yield
        finally:
            self._armed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.cancel_event.set()
        previous = self._previous.get(signum)
        if callable(previous) and previous is not signal.default_int_handler:
            previous(signum, frame)
        if self._armed and not self._raised:
            self._raised = True
            raise KeyboardInterrupt

    def _watch(self) -> None:
        """A cancel_event set without a signal (by another thread) reaches an armed main thread
        as a SIGINT, which `_handle` turns into the KeyboardInterrupt."""
        while not self._done.is_set():
            if not self.cancel_event.wait(POLL_SECONDS):
                continue
            if self._raised:
                return
            if self._armed:
                main = threading.main_thread().ident
                if main is not None:
                    signal.pthread_kill(main, signal.SIGINT)
                return
            self._done.wait(POLL_SECONDS)  # cancelled while not armed: `armed()` will raise


# -- helpers ------------------------------------------------------------------------------------


def _placeholder(
    request: RunRequest,
    seconds: float,
    *,
    timed_out: bool = False,
    cancelled: bool = False,
    note: str,
) -> RunResult:
    """The result of a shard that did not answer: no cases, and why."""
    return RunResult(
        junit_xml=synthesize_junit([]),
        exit_code=None,
        duration_seconds=round(seconds, 3),
        gpu=GpuFacts(False, [], None, f"unknown: {note}"),
        timed_out=timed_out,
        crashed=None,
        no_tests=False,
        output_tail="",
        shard_index=request.shard_index,
        shard_count=request.shard_count,
        cancelled=cancelled,
        label=request.label,
        problem=note,
    )


_CAUSE = re.compile(r"\b([A-Za-z_.]*(?:Error|Exception|Exit)\b:?.*)$")


def _could_not_run(result: RunResult) -> str | None:
    """Why pytest could not run the suite in the container (the image lacks a module conftest
    imports, pytest's usage or internal error): not the tests' fault. None otherwise."""
    if result.timed_out or result.cancelled or not result.problem:
        return None
    before_session = bool(result.crashed and "before starting the test session" in result.crashed)
    if result.exit_code not in (3, 4) and not before_session:
        return None
    cause = next(
        (
            m.group(1).strip()
            for line in reversed(result.output_tail.splitlines())
            if (m := _CAUSE.search(line.strip().removeprefix("E").strip()))
        ),
        "",
    )
    return f"pytest could not run the tests: {result.problem}" + (f": {cause}" if cause else "")


def _is_timeout(error: BaseException) -> bool:
    if isinstance(error, TimeoutError):  # the local emulator's
        return True
    with contextlib.suppress(ImportError):
        from modal.exception import FunctionTimeoutError

        return isinstance(error, FunctionTimeoutError)
    return False


def _setup_error(modal: Any, error: Exception) -> Exception:
    exc = modal.exception
    if isinstance(error, exc.AuthError):
        return SettingsError(_auth_message(error))
    if isinstance(error, exc.NotFoundError) and "secret" in str(error).lower():
        return SettingsError(
            f"invalid value for input 'modal-secrets': {_one_line(error)} (create it with"
            " `modal secret create NAME KEY=VALUE` in the workspace of the token)"
        )
    if isinstance(error, exc.ImageBuildError) or type(error).__name__ == "ImageBuildError":
        return InfrastructureError(f"the Modal image did not build: {_one_line(error)}")
    return InfrastructureError(f"Modal could not start the app: {_one_line(error)}")


def _auth_message(error: BaseException) -> str:
    return (
        f"Modal refused the credentials: {_one_line(error)}. Check that MODAL_TOKEN_ID and"
        " MODAL_TOKEN_SECRET hold one token's id and secret (`modal token new` makes one)."
    )


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if text.startswith(type(error).__name__) else f"{type(error).__name__}: {text}"


def _choice_for(spec: GpuSpec, facts: GpuFacts | None) -> GpuChoice | None:
    """The fallback choice a container's GPU (as nvidia-smi names it) belongs to, if one does."""
    if facts is None or not facts.gpus:
        return None if spec.is_fallback_list else spec.primary
    name = str(facts.gpus[0].get("name") or "").upper().replace(" ", "-")
    for choice in spec.choices:
        if _matches(choice.type, name):
            return choice
    return None


def _matches(gpu_type: str, name: str) -> bool:
    base = gpu_type.rstrip("!+")
    if base.startswith("A100"):
        return "A100" in name and ("80GB" in name) == base.endswith("80GB")
    if base in ("A10", "A10G"):
        return bool(re.search(r"A10G?(?![0-9])", name))
    return base in name


def _describe(results: Sequence[RunResult], spec: GpuSpec) -> str:
    seen = list(dict.fromkeys(r.gpu.describe() for r in results if r.gpu.visible))
    if seen:
        return "; ".join(seen)
    return f"no GPU visible in the container (asked for {spec})"
