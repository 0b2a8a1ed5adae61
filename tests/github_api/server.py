"""A stateful stand-in for GitHub's REST API on 127.0.0.1, for PyGithub to talk to.

It keeps issue comments (paginated with `Link` headers as GitHub does), labels, pull requests and
the pull requests of each commit, and it serves exactly the operations in
`description.OPERATIONS`: each request is routed by GitHub's REST API description itself, and
every request and response is checked against it (`description.Validator`). What the description
does not allow is recorded in `violations` (the fixture fails the test on any) and answered the
way GitHub would (404 for an unknown route, 422 for a bad body).

Faults are injected per operation (`inject`): their responses are validated too when the
description documents their status; GitHub's description documents no 5xx and no 429, so those
injected responses are exempt (and only those).

Who the token is: `state.as_user` writes the comments; `GET /user` answers its profile for a
user's token and 403 "Resource not accessible by integration" for a bot's (an installation token:
the workflow's GITHUB_TOKEN or a GitHub App's), as GitHub does.

GraphQL is not in the REST description, so one query of it is served beside it, unchecked by
the description and checked by hand instead: `POST /graphql` (`/api/graphql` on GHES, where REST
is below `/api/v3`) answers `query { viewer { login } }` with the token's login, as GitHub answers
installation tokens too; any other query is a violation. Its operation id here is `GRAPHQL`:
`inject(GRAPHQL, 403)`, `inject(GRAPHQL, 200, body=GRAPHQL_FORBIDDEN)` (an error payload) and
`stall(..., GRAPHQL)` work as for REST operations.

A server that is there but does not answer (`stall`): requests are accepted and read, then never
answered ("silent") or answered one header line every few seconds, never finishing ("trickle").

Mount it below a path (`prefix="/api/v3"`) to stand for GitHub Enterprise Server.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from github_api.description import MISSING, Validator

DOCS = "https://docs.github.com/rest"
BOT = {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"}  # the GITHUB_TOKEN
APP_BOT = {"login": "gpu-ci-app[bot]", "id": 3003, "type": "Bot"}  # a GitHub App's token
OTHER_BOT = {"login": "dependabot[bot]", "id": 49699333, "type": "Bot"}
MAINTAINER = {"login": "maintainer", "id": 1001, "type": "User"}
STRANGER = {"login": "drive-by", "id": 2002, "type": "User"}
STALLS = ("silent", "trickle")
GRAPHQL = "graphql"  # the operation id the GraphQL endpoint is recorded, faulted and stalled by
GRAPHQL_DOCS = "https://docs.github.com/graphql"
# GitHub's answer to a query the token may not make: 200, with errors and no data.
GRAPHQL_FORBIDDEN = {
    "data": None,
    "errors": [
        {
            "type": "FORBIDDEN",
            "path": ["viewer"],
            "locations": [{"line": 1, "column": 9}],
            "message": "Resource not accessible by integration",
        }
    ],
}
_VIEWER_LOGIN = re.compile(r"\s*(query\s*)?\{\s*viewer\s*\{\s*login\s*\}\s*\}\s*")


@dataclass
class Comment:
    id: int
    issue: int
    body: str
    user: dict[str, Any]
    association: str
    created_at: str
    updated_at: str


@dataclass
class Pull:
    number: int
    head_sha: str
    state: str = "open"
    merged: bool = False


@dataclass
class Fault:
    operation_id: str
    status: int
    headers: dict[str, str]
    body: Any
    times: int


@dataclass
class Exchange:
    method: str
    path: str  # below the API base, as sent (percent-encoded)
    operation_id: str | None
    status: int
    body: Any = None
    injected: bool = False
    query: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: Any
    injected: bool
    stall: str = ""  # "silent" or "trickle": the handler never finishes the answer


@dataclass
class State:
    owner: str = "octo-org"
    repo: str = "gpu-project"
    token: str = "ghs_test_token_0123456789"
    read_only: bool = False  # a fork PR's token: reads only
    as_user: dict[str, Any] = field(default_factory=lambda: dict(BOT))  # who writes
    as_association: str = "NONE"
    viewer_login: str | None = None  # what GraphQL's viewer.login answers; None: as_user's
    comments: list[Comment] = field(default_factory=list)
    issues: dict[int, list[str]] = field(default_factory=dict)  # number -> label names
    pulls: dict[int, Pull] = field(default_factory=dict)
    commit_pulls: dict[str, list[int]] = field(default_factory=dict)
    next_id: int = 1_000_000


class FakeGitHub:
    def __init__(
        self,
        validator: Validator,
        *,
        prefix: str = "",
        delay: tuple[float, float] = (0.0, 0.0),
        seed: int | None = None,
    ) -> None:
        self.validator = validator
        self.prefix = prefix.rstrip("/")
        # Where GraphQL is: beside the REST API, /api/graphql on GHES (REST: /api/v3).
        self.graphql_path = self.prefix.removesuffix("/v3") + "/graphql"
        self.delay = delay
        self.state = State()
        self.violations: list[str] = []
        self.exchanges: list[Exchange] = []
        self.faults: list[Fault] = []
        self.stalls: dict[str, str] = {}  # operation id ("*": every one) -> stall mode
        self.stall_interval = 5.0
        self.stopping = threading.Event()  # set when the server stops: stalled answers end
        self.lock = threading.RLock()
        self._random = random.Random(seed)
        self._local = threading.local()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- life cycle -------------------------------------------------------------------------

    @contextmanager
    def running(self) -> Iterator[FakeGitHub]:
        handler = type("Handler", (_Handler,), {"fake": self})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        try:
            yield self
        finally:
            self.stopping.set()
            server.shutdown()
            server.server_close()
            self._thread.join(5)

    @property
    def host(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def api_url(self) -> str:
        """What GITHUB_API_URL would hold (`https://api.github.com`, or `.../api/v3` on GHES)."""
        return self.host + self.prefix

    @property
    def full_name(self) -> str:
        return f"{self.state.owner}/{self.state.repo}"

    # --- state ------------------------------------------------------------------------------

    def add_pull(
        self, number: int, head_sha: str, *, labels: tuple[str, ...] = (), state: str = "open"
    ) -> None:
        with self.lock:
            self.state.issues[number] = list(labels)
            self.state.pulls[number] = Pull(number, head_sha, state, merged=state == "closed")
            self.state.commit_pulls.setdefault(head_sha, []).append(number)

    def add_comment(
        self,
        issue: int,
        body: str,
        *,
        user: dict[str, Any] | None = None,
        association: str = "NONE",
    ) -> Comment:
        with self.lock:
            return self._create_comment(issue, body, user or STRANGER, association)

    def comments_on(self, issue: int) -> list[Comment]:
        with self.lock:
            return [c for c in self.state.comments if c.issue == issue]

    def labels_on(self, issue: int) -> list[str]:
        with self.lock:
            return list(self.state.issues[issue])

    def inject(
        self,
        operation_id: str,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        body: Any = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls of an operation with this response instead."""
        if body is None:
            body = {"message": "Server Error"} if status >= 500 else {"message": "Error"}
        with self.lock:
            self.faults.append(Fault(operation_id, status, headers or {}, body, times))

    def stall(self, mode: str, *operation_ids: str, interval: float = 5.0) -> None:
        """Accept the requests of these operations (of all without any) and never answer them
        ("silent"), or send a status line and then one header line every `interval` seconds,
        never ending the headers ("trickle"). A stalled request is recorded with status 0."""
        assert mode in STALLS, mode
        with self.lock:
            self.stall_interval = interval
            for operation_id in operation_ids or ("*",):
                self.stalls[operation_id] = mode

    def calls(self, operation_id: str) -> list[Exchange]:
        with self.lock:
            return [e for e in self.exchanges if e.operation_id == operation_id]

    # --- the API ----------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        """One request: validated, routed by the description, answered from the state."""
        split = urlsplit(target)
        path, query = split.path, parse_qs(split.query, keep_blank_values=True)
        self._local.query = query  # for _record (each request has its own thread)
        if path == self.graphql_path:
            return self._graphql(method, path, headers, body)
        if self.prefix:
            if not path.startswith(self.prefix + "/"):
                return self._refuse(method, path, f"{method} {path}: outside {self.prefix}")
            path = path[len(self.prefix) :]
        lowered = {k.lower(): v for k, v in headers.items()}
        problems = self.validator.check_request(method, path, query, lowered, body)
        route = self.validator.route(method, path)
        if problems:
            with self.lock:
                self.violations.extend(problems)
            # The refusal itself is not checked against the description (it is ours).
            if route is None:
                return self._record(method, path, None, 404, _not_found(), injected=True)
            return self._record(
                method, path, route.operation_id, 422, _validation_failed(), injected=True
            )
        assert route is not None
        if not self._answers_after_its_delay(lowered):
            return self._record(
                method, path, route.operation_id, 401, {"message": "Bad credentials"}
            )
        with self.lock:
            stall = self.stalls.get(route.operation_id) or self.stalls.get("*")
        if stall:
            self._record(method, path, route.operation_id, 0, None, injected=True)
            return Answer(0, {}, None, True, stall=stall)
        with self.lock:
            for fault in self.faults:
                if fault.operation_id == route.operation_id and fault.times > 0:
                    fault.times -= 1
                    return self._record(
                        method,
                        path,
                        route.operation_id,
                        fault.status,
                        fault.body,
                        fault.headers,
                        injected=True,
                    )
            params = {k: unquote(v) for k, v in route.params.items()}
            repository = (params.get("owner"), params.get("repo"))
            if "owner" in params and repository != (self.state.owner, self.state.repo):
                return self._record(method, path, route.operation_id, 404, _not_found())
            if method != "GET" and self.state.read_only:
                return self._record(
                    method,
                    path,
                    route.operation_id,
                    403,
                    {
                        "message": "Resource not accessible by integration",
                        "documentation_url": DOCS,
                        "status": "403",
                    },
                )
            data = json.loads(body) if body else None
            status, answer, extra = getattr(self, "_op_" + re.sub(r"\W", "_", route.operation_id))(
                params, query, data
            )
            return self._record(method, path, route.operation_id, status, answer, extra)

    def _graphql(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        """`POST /graphql`, outside the REST description: the request is checked here (JSON,
        a query, the only one the action makes); the answer is GitHub's shape for it."""
        lowered = {k.lower(): v for k, v in headers.items()}
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        query = data.get("query") if isinstance(data, dict) else None
        variables = data.get("variables", {}) if isinstance(data, dict) else None
        problem = ""
        if method != "POST":
            problem = f"{method} {path}: GraphQL takes POST"
        elif not isinstance(query, str) or not isinstance(variables, dict | None):
            problem = f"POST {path}: not a GraphQL request body: {body[:200]!r}"
        elif not _VIEWER_LOGIN.fullmatch(query):
            problem = f"POST {path}: the fake answers `viewer {{ login }}` only, not {query!r}"
        if problem:
            with self.lock:
                self.violations.append(problem)
            return self._record(
                method, path, GRAPHQL, 400, {"message": "Problems parsing JSON"}, injected=True
            )
        if not self._answers_after_its_delay(lowered):
            return self._record(
                method,
                path,
                GRAPHQL,
                401,
                {"message": "Bad credentials", "documentation_url": GRAPHQL_DOCS},
            )
        with self.lock:
            stall = self.stalls.get(GRAPHQL) or self.stalls.get("*")
        if stall:
            self._record(method, path, GRAPHQL, 0, None, injected=True)
            return Answer(0, {}, None, True, stall=stall)
        with self.lock:
            for fault in self.faults:
                if fault.operation_id == GRAPHQL and fault.times > 0:
                    fault.times -= 1
                    return self._record(
                        method,
                        path,
                        GRAPHQL,
                        fault.status,
                        fault.body,
                        fault.headers,
                        injected=True,
                    )
            login = self.state.viewer_login or self.state.as_user["login"]
            return self._record(method, path, GRAPHQL, 200, {"data": {"viewer": {"login": login}}})

    def _refuse(self, method: str, path: str, problem: str) -> Answer:
        with self.lock:
            self.violations.append(problem)
        return self._record(method, path, None, 404, {"message": "Not Found"})

    def _answers_after_its_delay(self, headers: dict[str, str]) -> bool:
        """Wait the answer's random delay; whether the request carries the token."""
        low, high = self.delay
        if high:
            time.sleep(self._random.uniform(low, high))
        return headers.get("authorization") in (
            f"token {self.state.token}",
            f"Bearer {self.state.token}",
        )

    def _record(
        self,
        method: str,
        path: str,
        operation_id: str | None,
        status: int,
        answer: Any,
        headers: dict[str, str] | None = None,
        *,
        injected: bool = False,
    ) -> Answer:
        with self.lock:
            query = getattr(self._local, "query", {})
            self.exchanges.append(
                Exchange(method, path, operation_id, status, answer, injected, query)
            )
        return Answer(status, dict(headers or {}), answer, injected)

    def check_response(
        self,
        method: str,
        target: str,
        status: int,
        headers: dict[str, str],
        body: bytes,
        *,
        injected: bool,
    ) -> None:
        path = urlsplit(target).path
        if path == self.graphql_path:
            return  # not REST: checked by `_graphql`
        if self.prefix and path.startswith(self.prefix + "/"):
            path = path[len(self.prefix) :]
        if self.validator.route(method, path) is None:
            return  # refused already
        if injected and not self.validator.documents(method, path, status):
            return  # an injected 5xx or 429: GitHub's description documents none
        problems = self.validator.check_response(method, path, status, headers, body)
        if problems:
            with self.lock:
                self.violations.extend(problems)

    # Operations: (path params, query, JSON body) -> (status, JSON answer, extra headers).

    def _op_issues_list_comments(
        self, params: dict[str, str], query: dict[str, list[str]], data: Any
    ) -> tuple[int, Any, dict[str, str]]:
        number = int(params["issue_number"])
        if number not in self.state.issues:
            return 404, _not_found(), {}
        per_page = min(int(query.get("per_page", ["30"])[-1]), 100)
        page = max(int(query.get("page", ["1"])[-1]), 1)
        comments = [c for c in self.state.comments if c.issue == number]
        last = max((len(comments) + per_page - 1) // per_page, 1)
        chunk = comments[(page - 1) * per_page : page * per_page]
        links = []
        path = f"{self.api_url}/repos/{self.full_name}/issues/{number}/comments"

        def link(to: int, rel: str) -> str:
            return f'<{path}?{urlencode({"per_page": per_page, "page": to})}>; rel="{rel}"'

        if page > 1:
            links += [link(page - 1, "prev"), link(1, "first")]
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        headers = {"Link": ", ".join(links)} if links else {}
        return 200, [self._comment_json(c) for c in chunk], headers

    def _op_issues_create_comment(
        self, params: dict[str, str], query: dict[str, list[str]], data: Any
    ) -> tuple[int, Any, dict[str, str]]:
        number = int(params["issue_number"])
        if number not in self.state.issues:
            return 404, _not_found(), {}
        if len(data["body"]) > 65_536:
            return 422, _too_long(), {}
        comment = self._create_comment(
            number, data["body"], self.state.as_user, self.state.as_association
        )
        answer = self._comment_json(comment)
        return 201, answer, {"Location": answer["url"]}

    def _op_issues_update_comment(
        self, params: dict[str, str], query: dict[str, list[str]], data: Any
    ) -> tuple[int, Any, dict[str, str]]:
        comment = self._find_comment(int(params["comment_id"]))
        if comment is None:
            return 404, _not_found(), {}
        if len(data["body"]) > 65_536:
            return 422, _too_long(), {}
        comment.body = data["body"]
        comment.updated_at = _now()
        return 200, self._comment_json(comment), {}

    def _op_issues_delete_comment(
        self, params: dict[str, str], query: dict[str, list[str]], data: Any
    ) -> tuple[int, Any, dict[str, str]]:
        comment = self._find_comment(int(params["comment_id"]))
        if comment is None:
            return 404, _not_found(), {}
        self.state.comments.remove(comment)
        return 204, None, {}

    def _op_issues_remove_label(
        self, params: dict[str, str], query: dict[str, list[str]], data: Any
    ) -> tuple[int, Any, dict[str, str]]:
        labels = self.state.issues.get(int(params["issue_number"]))
        if labels is None:
            return 404, _not_found(), {}
        if params["name"] not in labels:
            return 404, {"message": "Label does not exist", "documentation_url": DOCS}, {}
        labels.remove(params["name"])
        return 200, [self._label_json(name) for name in labels], {}

    def _op_repos_list_pull_requests_associated_with_commit(
        self, params: dict[str, str], query: dict[str, list[str]], data: Any
    ) -> tuple[int, Any, dict[str, str]]:
        numbers = self.state.commit_pulls.get(params["commit_sha"], [])
        return 200, [self._pull_json(self.state.pulls[n]) for n in numbers], {}

    def _op_users_get_authenticated(
        self, params: dict[str, str], query: dict[str, list[str]], data: Any
    ) -> tuple[int, Any, dict[str, str]]:
        user = self.state.as_user
        if user["type"] == "Bot":  # an installation token has no user behind it
            refused = {
                "message": "Resource not accessible by integration",
                "documentation_url": f"{DOCS}/users/users#get-the-authenticated-user",
                "status": "403",
            }
            return 403, refused, {}
        return 200, self._private_user_json(user), {}

    # --- JSON as GitHub shapes it -----------------------------------------------------------

    def _create_comment(
        self, issue: int, body: str, user: dict[str, Any], association: str
    ) -> Comment:
        self.state.next_id += 1
        now = _now()
        comment = Comment(self.state.next_id, issue, body, dict(user), association, now, now)
        self.state.comments.append(comment)
        return comment

    def _find_comment(self, comment_id: int) -> Comment | None:
        return next((c for c in self.state.comments if c.id == comment_id), None)

    def _user_json(self, user: dict[str, Any]) -> dict[str, Any]:
        login = user["login"]
        api = f"{self.api_url}/users/{login}"
        return {
            "login": login,
            "id": user["id"],
            "node_id": f"MDQ6VXNlcj{user['id']}",
            "avatar_url": f"{self.host}/avatars/u/{user['id']}?v=4",
            "gravatar_id": "",
            "url": api,
            "html_url": f"{self.host}/{login}",
            "followers_url": f"{api}/followers",
            "following_url": f"{api}/following{{/other_user}}",
            "gists_url": f"{api}/gists{{/gist_id}}",
            "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/subscriptions",
            "organizations_url": f"{api}/orgs",
            "repos_url": f"{api}/repos",
            "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events",
            "type": user["type"],
            "user_view_type": "public",
            "site_admin": False,
        }

    def _private_user_json(self, user: dict[str, Any]) -> dict[str, Any]:
        """`GET /user` for a user's token: the profile, private fields included."""
        public = self._user_json(user)
        fixed = {f".{name}": value for name, value in public.items()}
        schema = self.validator.schema("private-user")
        answer: dict[str, Any] = self.validator.instance(
            schema, lambda where: fixed.get(where, MISSING)
        )
        return {**public, **answer}

    def _comment_json(self, comment: Comment) -> dict[str, Any]:
        repo_api = f"{self.api_url}/repos/{self.full_name}"
        return {
            "id": comment.id,
            "node_id": f"IC_kwDOAAAB{comment.id}",
            "url": f"{repo_api}/issues/comments/{comment.id}",
            "html_url": f"{self.host}/{self.full_name}/pull/{comment.issue}#issuecomment-{comment.id}",
            "body": comment.body,
            "user": self._user_json(comment.user),
            "created_at": comment.created_at,
            "updated_at": comment.updated_at,
            "issue_url": f"{repo_api}/issues/{comment.issue}",
            "author_association": comment.association,
        }

    def _label_json(self, name: str) -> dict[str, Any]:
        return {
            "id": abs(hash(name)) % 10**9,
            "node_id": "LA_kwDOAAAB",
            "url": f"{self.api_url}/repos/{self.full_name}/labels/{name}",
            "name": name,
            "description": None,
            "color": "ededed",
            "default": False,
        }

    def _pull_json(self, pull: Pull) -> dict[str, Any]:
        repo_api = f"{self.api_url}/repos/{self.full_name}"
        fixed: dict[str, Any] = {
            ".number": pull.number,
            ".state": pull.state,
            ".title": f"Pull request {pull.number}",
            ".url": f"{repo_api}/pulls/{pull.number}",
            ".html_url": f"{self.host}/{self.full_name}/pull/{pull.number}",
            ".issue_url": f"{repo_api}/issues/{pull.number}",
            ".head.sha": pull.head_sha,
            ".head.ref": f"feature-{pull.number}",
            ".base.ref": "main",
            ".merged_at": "2026-01-02T00:00:00Z" if pull.merged else None,
            ".user": self._user_json(MAINTAINER),
            ".head.user": self._user_json(MAINTAINER),
            ".base.user": self._user_json(MAINTAINER),
        }
        schema = self.validator.schema("pull-request-simple")
        return self.validator.instance(schema, lambda where: fixed.get(where, MISSING))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _not_found() -> dict[str, str]:
    return {"message": "Not Found", "documentation_url": DOCS, "status": "404"}


def _validation_failed() -> dict[str, Any]:
    return {"message": "Validation Failed", "documentation_url": DOCS, "errors": []}


def _too_long() -> dict[str, Any]:
    return {
        "message": "Validation Failed",
        "documentation_url": DOCS,
        "errors": [
            {
                "resource": "IssueComment",
                "code": "custom",
                "field": "body",
                "message": "body is too long (maximum is 65536 characters)",
            }
        ],
    }


class _Handler(BaseHTTPRequestHandler):
    fake: FakeGitHub
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else each keep-alive answer waits for a delayed ACK
    wbufsize = -1  # headers and body leave in one write

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k: v for k, v in self.headers.items()}
        try:
            answer = self.fake.handle(self.command, self.path, headers, body)
        except Exception:  # a bug of the fake: fail the test, answer like a broken server
            with self.fake.lock:
                self.fake.violations.append(f"the fake server failed:\n{traceback.format_exc()}")
            answer = Answer(500, {}, {"message": "Server Error"}, injected=True)
        if answer.stall:
            self._stall(answer.stall)
            return
        status = answer.status
        payload = b"" if status == 204 or answer.body is None else json.dumps(answer.body).encode()
        out_headers = {
            **({"Content-Type": "application/json; charset=utf-8"} if payload else {}),
            "X-GitHub-Api-Version-Selected": "2022-11-28",
            **answer.headers,
        }
        self.fake.check_response(
            self.command, self.path, status, out_headers, payload, injected=answer.injected
        )
        self.send_response(status)
        for name, value in out_headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    def _stall(self, mode: str) -> None:
        """Hold the request until the server stops (or the client goes): no answer at all, or
        one header line every `stall_interval` seconds and never the end of the headers."""
        self.close_connection = True
        stopping, interval = self.fake.stopping, self.fake.stall_interval
        if mode == "silent":
            stopping.wait()
            return
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            self.wfile.flush()
            line = 0
            while not stopping.wait(interval):
                line += 1
                self.wfile.write(f"X-Still-Thinking-{line}: yes\r\n".encode())
                self.wfile.flush()
        except OSError:  # the client gave up
            pass

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve
