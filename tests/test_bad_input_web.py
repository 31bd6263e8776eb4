"""Malformed input to every endpoint of the site is a clear refusal, never a 500.

Each test sends a few hundred bodies to one endpoint, built deterministically from a fixed
list of bad values (NUL characters, lone surrogates, huge, deeply nested or oversized
numbers, wrong types, missing and repeated fields) plus seeded combinations, and checks
that no response is a 500 and that a refused request changed nothing.

Failures are collected, not raised at the first one, so a run lists every body that
broke an endpoint, with where in this project its traceback ends and the exception.
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote_from_bytes

import pytest
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse

import workflows
from approvals.models import ApprovalRequest
from approvals.services import create_request
from workflows import workflow
from workflows.models import Event, Instance
from workflows.roles import VIEWERS

pytestmark = pytest.mark.django_db

PROJECT = str(Path(__file__).resolve().parent.parent)
LIST = reverse("workflows:instance_list")
START = reverse("workflows:instance_create")
BULK = reverse("workflows:bulk_action")
LOGIN = reverse("login")
LOGOUT = reverse("logout")

MEGABYTE = "x" * 1_000_000

# Text that a form field might receive. Lone surrogates are sent as the bytes Python's
# "surrogatepass" gives them (ED A0 80 ...), which are not UTF-8.
BAD_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\x00" * 3,
    "\ud800",
    "a\udfffb",
    "\udc80\ud800",
    MEGABYTE,
    "x" * 300,
    "é",
    "日本語",
    "😀",
    "\u202eevil",
    "\ufeff",
    "\uffff",
    "\U0010ffff",
    "e\u0301",
    "\r\n",
    "line\nbreak",
    "\t",
    "\x7f",
    "\x1b[31m",
    "%00",
    "%s%n%x",
    "{0}{1}",
    "{{ user }}",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "../../etc/passwd",
    "9" * 5000,
    "-1",
    "0",
    "9223372036854775808",
    "-9223372036854775809",
    "1e309",
    "NaN",
    "Infinity",
    "-Infinity",
    "true",
    "null",
    "[]",
    "{}",
]

# What a JSON field (params, payload) might receive, on top of BAD_TEXT.
BAD_JSON = [
    "[" * 5000 + "]" * 5000,
    '{"a":' * 5000 + "1" + "}" * 5000,
    "[" * 101 + "]" * 101,
    "[" + "9" * 5000 + "]",
    '{"n": ' + "9" * 4000 + "}",
    "18446744073709551616",
    "[-9223372036854775809]",
    "[NaN]",
    '{"x": Infinity}',
    "[-Infinity]",
    "1e999",
    '"\\u0000"',
    '{"a\\u0000": 1}',
    '"\\ud800"',
    '["\\udfff"]',
    '{"\\udc80": 1}',
    '"\\ud800\\udc00"',
    '"' + MEGABYTE + '"',
    "[" + ",".join(["1"] * 600_000) + "]",  # over the 1 MB payload limit
    "{oops",
    "[1,",
    "'single quotes'",
    '{"a": 1} trailing',
    "\x00{}",
]

# Instance ids as they might appear in an address (the id, before percent-encoding).
BAD_IDS = [
    "\x00",
    "a\x00b",
    "x" * 300,
    "x" * 101,
    "é",
    "日本語",
    "😀",
    "\ud800",
    "\u202e",
    " ",
    "-leading-dash",
    "..",
    "a b",
    "a%2Fb",
    "%00",
    "9" * 5000,
    "new",
    "bulk",
]

# Page cursors for the list's `after` parameter: the shape is "<created_at>|<instance id>".
BAD_CURSORS = [
    "x",
    "|",
    "|a",
    "2024-01-01T00:00:00+00:00|",
    "2024-01-01T00:00:00|naive",
    "2024-01-01T00:00:00+00:00|" + "a" * 300,
    "2024-01-01T00:00:00+00:00|\x00",
    "2024-01-01T00:00:00+00:00|a\x00",
    "2024-01-01T00:00:00\x00+00:00|a",
    "2024-01-01T00:00:00+00:00|\ud800",
    "2024-01-01T00:00:00+00:00|é",
    "2024-01-01T00:00:00+00:00|a|b",
    "0001-01-01T00:00:00+14:00|a",
    "0001-01-01T00:00:00-14:00|a",
    "9999-12-31T23:59:59-14:00|a",
    "9999-12-31T23:59:59+14:00|a",
    "2024-13-45T99:99:99+00:00|a",
    "2024-01-01T00:00:00+99:00|a",
    "9" * 5000 + "|a",
    "NaN|a",
    "2024-01-01T00:00:00+00:00|" + MEGABYTE[:5000],
]

# Where a form may ask to be sent back to afterwards.
NEXT = [*BAD_TEXT, "//evil.example", "javascript:alert(1)", "/\\evil.example"]

# Bodies that are not a form at all: (content type, raw bytes).
NOT_A_FORM = [
    ("application/json", b'{"a": 1}'),
    ("application/json", b"[" * 5000 + b"]" * 5000),
    ("application/json", b"\xff\xfe\x00"),
    ("text/plain", b"hello"),
    ("application/xml", b"<?xml version='1.0'?><a/>"),
    ("multipart/form-data", b"no boundary"),
    ("multipart/form-data; boundary=xyz", b"--xyz\r\ngarbage\r\n"),
    (
        "multipart/form-data; boundary=xyz",
        b'--xyz\r\nContent-Disposition: form-data; name="a\x00"\r\n\r\nv\r\n--xyz--',
    ),
    ("multipart/form-data; boundary=" + "b" * 5000, b"--"),
    ("application/x-www-form-urlencoded; charset=utf-16", b"a=1&b=2"),
    ("application/x-www-form-urlencoded; charset=no-such-charset", b"a=1"),
    ("application/x-www-form-urlencoded", b"\xff\xfe\xfd=\xff"),
    ("application/x-www-form-urlencoded", b"&&&===&&"),
    ("application/x-www-form-urlencoded", b"a" * 1_000_000),
    ("application/octet-stream", bytes(range(256))),
    ("", b""),
]

Pairs = list[tuple[str, str]]
HTMX = {"HX-Request": "true"}


@workflow("bad-input-test-waits")
def waits_for_go(event, step):
    return step.wait_for_event("go", type="go")


# --- sending and checking ---------------------------------------------------------------


@dataclass
class Problem:
    what: str
    status: int
    error: str

    def __str__(self) -> str:
        return f"{self.status} {self.what}\n    {self.error}"


def shown(value: object, limit: int = 120) -> str:
    text = ascii(value)
    return text if len(text) <= limit else f"{text[: limit - 20]}...({len(text):,} chars)"


def form_encoded(pairs: Pairs, *, raw: bool = False) -> bytes:
    """A urlencoded body; `raw` leaves the values' bytes unescaped (so not UTF-8 stays so)."""
    parts = []
    for name, value in pairs:
        data = value.encode("utf-8", "surrogatepass")
        parts.append(
            quote_from_bytes(name.encode()).encode()
            + b"="
            + (data if raw else quote_from_bytes(data).encode())
        )
    return b"&".join(parts)


def multipart_encoded(pairs: Pairs) -> tuple[str, bytes]:
    boundary = "fuzz-boundary-7d0a"
    lines = []
    for name, value in pairs:
        lines += [
            f"--{boundary}".encode(),
            f'Content-Disposition: form-data; name="{name}"'.encode(),
            b"",
            value.encode("utf-8", "surrogatepass"),
        ]
    lines.append(f"--{boundary}--".encode())
    return f"multipart/form-data; boundary={boundary}", b"\r\n".join(lines)


def path_segment(text: str) -> str:
    return quote_from_bytes(text.encode("utf-8", "surrogatepass"), safe="")


class Fuzzer:
    """Sends requests and records every 500 and every refused request that changed data."""

    def __init__(self, client: Client, snapshot: Callable[[], object] = lambda: None) -> None:
        self.client = client
        self.snapshot = snapshot
        self.problems: list[Problem] = []
        self.sent = 0

    def send(
        self,
        method: str,
        url: str,
        *,
        what: str,
        body: bytes = b"",
        content_type: str = "application/x-www-form-urlencoded",
        headers: dict[str, str] | None = None,
        query: str | None = None,
        unchanged_if: Callable[[HttpResponse], bool] = lambda response: True,
    ) -> HttpResponse:
        extra = {"QUERY_STRING": query} if query is not None else {}
        before = self.snapshot()
        # A database error must not poison the rest of the run (PostgreSQL aborts the
        # whole transaction), so each request gets a savepoint that a 500 rolls back.
        with transaction.atomic():
            response = self.client.generic(
                method, url, body, content_type=content_type, headers=headers, **extra
            )
            if response.status_code >= 500:
                transaction.set_rollback(True)
        self.sent += 1
        self._drop_messages()
        where = f"{method} {url[:100]} {what}"
        if response.status_code >= 500:
            self.problems.append(Problem(where, response.status_code, _last_lines(response)))
        elif unchanged_if(response) and self.snapshot() != before:
            self.problems.append(Problem(where, response.status_code, "refused, yet data changed"))
        return response

    def _drop_messages(self) -> None:
        """The next page shows messages, and a fuzzer asks for none: unread, they would
        pile up in the cookie and the session and slow every later request down."""
        self.client.cookies.pop("messages", None)
        session = self.client.session
        if session.pop("_messages", None) is not None:
            session.save()

    def post_form(self, url: str, pairs: Pairs, number: int, **kwargs) -> HttpResponse:
        """Post `pairs` in one of three encodings and with or without htmx, by `number`."""
        encoding = number % 3
        if encoding == 0:
            content_type, body = "application/x-www-form-urlencoded", form_encoded(pairs)
        elif encoding == 1:
            content_type, body = "application/x-www-form-urlencoded", form_encoded(pairs, raw=True)
        else:
            content_type, body = multipart_encoded(pairs)
        what = f"{['urlencoded', 'raw bytes', 'multipart'][encoding]} {shown(pairs)}"
        headers = HTMX if number % 2 else {}
        return self.send(
            "POST", url, what=what, body=body, content_type=content_type, headers=headers, **kwargs
        )

    def post_not_a_form(self, url: str, **kwargs) -> None:
        for number, (content_type, body) in enumerate(NOT_A_FORM):
            what = f"{content_type!r} {shown(body)}"
            headers = HTMX if number % 2 else {}
            self.send("POST", url, what=what, body=body, content_type=content_type, headers=headers, **kwargs)

    def assert_no_problems(self) -> None:
        assert self.sent > 0
        report = "\n".join(str(problem) for problem in self.problems[:40])
        assert not self.problems, f"{len(self.problems)} of {self.sent} requests went wrong:\n{report}"


def _last_lines(response: HttpResponse) -> str:
    """Where the exception came from: the last frame of this project's code, the last
    frame of all, and the exception."""
    if not getattr(response, "exc_info", None):
        return "(no exception recorded)"
    _, exc, tb = response.exc_info
    frames = traceback.extract_tb(tb)
    ours = [frame for frame in frames if frame.filename.startswith(PROJECT) and ".venv" not in frame.filename]
    ours = ours or frames
    places = dict.fromkeys(
        f"{frame.filename}:{frame.lineno} in {frame.name}" for frame in (ours[-1], frames[-1])
    )
    return " -> ".join([*places, f"{type(exc).__name__}: {str(exc)[:300]}"])


def bodies(base: dict[str, str], bad_values: dict[str, list[str]], *, seed: int) -> Iterator[Pairs]:
    """Every field bad in turn, every field missing, repeated, and seeded combinations."""
    fields = list(base)
    for field in fields:
        for value in bad_values[field]:
            yield [(name, value if name == field else base[name]) for name in fields]
    for field in fields:
        yield [(name, base[name]) for name in fields if name != field]
        yield [(name, base[name]) for name in fields] + [(field, "\x00")]
        yield [(field, value) for value in bad_values[field][:50]] + [(name, base[name]) for name in fields]
    yield []
    yield [("unexpected", "field"), *base.items()]
    rng = random.Random(seed)
    small = {
        field: [value for value in values if len(value) < 10_000] for field, values in bad_values.items()
    }
    for _ in range(15):
        yield [(name, rng.choice(small[name])) for name in fields]


# --- users and data ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # The login view hashes every password it checks; the real hasher would make this
    # module take minutes.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def superuser() -> User:
    return User.objects.create_user("root", password="root-password", is_superuser=True, is_staff=True)


@pytest.fixture
def viewer() -> User:
    user = User.objects.create_user("viewer")
    user.groups.add(Group.objects.get(name=VIEWERS))
    return user


def signed_in(user: User) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


@pytest.fixture
def target() -> workflows.Instance:
    """A queued instance: it takes events, and refuses retry and resume."""
    return workflows.create("bad-input-test-waits", id="target")


def instances_and_events() -> tuple:
    return (
        sorted(Instance.objects.values_list("id", "status", "generation")),
        Event.objects.count(),
    )


def was_refused(response: HttpResponse) -> bool:
    """Accepted is a redirect (302, or 200 with HX-Redirect for htmx); refused is a 4xx."""
    return response.status_code >= 400


# --- signing in and out -----------------------------------------------------------------


def test_no_login_body_gets_a_500(superuser):
    fuzzer = Fuzzer(Client(raise_request_exception=False))
    base = {"username": "root", "password": "wrong", "next": "/"}
    for number, pairs in enumerate(bodies(base, dict.fromkeys(base, BAD_TEXT), seed=1)):
        fuzzer.post_form(LOGIN, pairs, number)
    fuzzer.post_not_a_form(LOGIN)
    fuzzer.assert_no_problems()


def test_no_logout_body_gets_a_500(superuser):
    fuzzer = Fuzzer(signed_in(superuser))
    base = {"next": "/"}
    for number, pairs in enumerate(bodies(base, {"next": NEXT}, seed=2)):
        fuzzer.post_form(LOGOUT, pairs, number)
        fuzzer.client.force_login(superuser)
    fuzzer.post_not_a_form(LOGOUT)
    fuzzer.assert_no_problems()


# --- the console ------------------------------------------------------------------------


# The console's forms: (address, a valid body, what each field is fuzzed with). The bulk
# body asks to retry a queued instance, which is refused, so no bulk body may change data.
CONSOLE_FORMS = {
    "start": (
        START,
        {"workflow": "bad-input-test-waits", "params": "{}", "instance_id": ""},
        {"workflow": BAD_TEXT, "params": BAD_TEXT + BAD_JSON, "instance_id": BAD_TEXT + BAD_IDS},
    ),
    "bulk": (
        BULK,
        {"action": "retry", "ids": "target", "next": "/?status=queued"},
        {"action": BAD_TEXT, "ids": BAD_TEXT + BAD_IDS, "next": NEXT},
    ),
    "send-event": (
        reverse("workflows:send_event", args=["target"]),
        {"type": "go", "payload": "{}"},
        {"type": BAD_TEXT, "payload": BAD_TEXT + BAD_JSON},
    ),
}


def fuzz_console_form(name: str, client: Client, *, seed: int, sample: int = 1) -> Fuzzer:
    """Post every `sample`th body to the form: only a refused one must change nothing."""
    url, base, bad = CONSOLE_FORMS[name]
    fuzzer = Fuzzer(client, snapshot=instances_and_events)
    unchanged_if = (lambda response: True) if name == "bulk" else was_refused
    for number, pairs in enumerate(bodies(base, bad, seed=seed)):
        if number % sample == 0:
            fuzzer.post_form(url, pairs, number, unchanged_if=unchanged_if)
    fuzzer.post_not_a_form(url)
    return fuzzer


def test_no_start_instance_body_gets_a_500_and_a_refused_one_creates_nothing(superuser):
    fuzz_console_form("start", signed_in(superuser), seed=3).assert_no_problems()
    _every_page_of_what_was_created_renders(signed_in(superuser))


def _every_page_of_what_was_created_renders(client: Client) -> None:
    """What was accepted is shown without a 500 too: the list, and each instance's page."""
    fuzzer = Fuzzer(client)
    fuzzer.send("GET", LIST, what="the list")
    for instance_id in Instance.objects.values_list("id", flat=True)[:100]:
        fuzzer.send("GET", reverse("workflows:instance_detail", args=[instance_id]), what="its page")
    fuzzer.assert_no_problems()


def test_no_bulk_action_body_gets_a_500_or_changes_an_instance(superuser, target):
    fuzz_console_form("bulk", signed_in(superuser), seed=4).assert_no_problems()


def test_no_send_event_body_gets_a_500_and_a_refused_one_stores_no_event(superuser, target):
    fuzz_console_form("send-event", signed_in(superuser), seed=5).assert_no_problems()
    _every_page_of_what_was_created_renders(signed_in(superuser))


@pytest.mark.parametrize("name", CONSOLE_FORMS)
def test_a_viewer_is_refused_every_console_form_body_and_nothing_changes(viewer, target, name):
    # The role is checked before the body is read, so a sample of the bodies will do.
    fuzzer = fuzz_console_form(name, signed_in(viewer), seed=8, sample=5)
    fuzzer.assert_no_problems()
    assert instances_and_events() == ([("target", "queued", 1)], 0)


# Addresses and queries as a superuser: a viewer is turned away before the id is read.


def test_no_instance_action_at_a_malformed_address_gets_a_500_or_changes_anything(superuser, target):
    fuzzer = Fuzzer(signed_in(superuser), snapshot=instances_and_events)
    actions = ["pause", "terminate", "retry", "events", "explode", "\x00", "é", "x" * 300]
    for instance_id in BAD_IDS:
        for action in actions:
            url = f"/instances/{path_segment(instance_id)}/{path_segment(action)}/"
            fuzzer.send("POST", url, what="", body=b"type=go&payload=%7B%7D")
            fuzzer.send("GET", url, what="")
    for action in actions[3:]:
        fuzzer.send("POST", f"/instances/target/{path_segment(action)}/", what="")
    fuzzer.assert_no_problems()


def test_no_malformed_instance_address_gets_a_500(superuser, target):
    fuzzer = Fuzzer(signed_in(superuser))
    for instance_id in BAD_IDS:
        url = f"/instances/{path_segment(instance_id)}/"
        fuzzer.send("GET", url, what="")
        fuzzer.send("GET", url, what="live", headers={"HX-Request": "true", "HX-Target": "instance-live"})
    fuzzer.assert_no_problems()


def test_no_crafted_list_query_gets_a_500(superuser, target):
    fuzzer = Fuzzer(signed_in(superuser))
    nasty = ["\x00", "a\x00", "\ud800", "x" * 300, "é", "😀", "9" * 5000, "[]", "NaN", "%00", "-1"]
    times = [
        "0001-01-01T00:00",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59",
        "9999-12-31T23:59:59-14:00",
        "2024-02-30T00:00",
        "2024-01-01T00:00:00+99:00",
        "1e309",
    ]
    queries = [f"after={path_segment(cursor)}" for cursor in BAD_CURSORS]
    queries += [f"q={path_segment(value)}" for value in BAD_TEXT if len(value) < 10_000]
    queries += [f"{name}={path_segment(value)}" for name in ("status", "workflow") for value in nasty]
    queries += [
        f"{name}={path_segment(value)}"
        for name in ("created_after", "created_before")
        for value in nasty + times
    ]
    queries += [
        "after=%ff%fe",
        "q=%ED%A0%80",
        "q=\xff\xfe",  # raw bytes: the WSGI environ holds the query string as latin-1
        "q=\xed\xa0\x80&status=\x00",
        "after=a&after=b&after=" + path_segment(BAD_CURSORS[5]),
        "status=queued&status=sleepy",
        "&&==&",
        "%",
        "q=%",
        "q=" + "x" * 5000,
    ]
    rng = random.Random(6)
    for _ in range(20):
        picked = [
            (name, rng.choice(BAD_CURSORS if name == "after" else BAD_TEXT[:40]))
            for name in ("after", "q", "status")
        ]
        queries.append("&".join(f"{name}={path_segment(value)}" for name, value in picked))
    live_rows = {"HX-Request": "true", "HX-Target": "instance-rows"}
    for number, query in enumerate(queries):
        headers = live_rows if number % 2 else {}
        fuzzer.send("GET", LIST, what=f"?{shown(query)} {headers}", query=query, headers=headers)
    fuzzer.assert_no_problems()


# --- approvals --------------------------------------------------------------------------


@pytest.fixture
def approver() -> User:
    """In the Approvers group, so the inbox opens, but named in no request."""
    user = User.objects.create_user("mallory")
    user.groups.add(Group.objects.get(name="Approvers"))
    return user


def _new_request(number: int) -> ApprovalRequest:
    pk = create_request(
        instance_id="target",
        request_name=f"fuzz {number}",
        title="Ship it?",
        details={"n": number},
        approvers=["user:root"],
        timeout_seconds=3600,
    )
    return ApprovalRequest.objects.get(pk=pk)


def _decided_and_events() -> tuple:
    decided = ApprovalRequest.objects.exclude(status=ApprovalRequest.Status.PENDING).count()
    return decided, Event.objects.count()


def test_no_decide_body_gets_a_500_and_a_refused_one_decides_nothing(superuser, target):
    fuzzer = Fuzzer(signed_in(superuser))
    base = {"approved": "yes", "comment": "fine", "next": "/approvals/"}
    bad = {"approved": BAD_TEXT, "comment": BAD_TEXT, "next": NEXT}
    for number, pairs in enumerate(bodies(base, bad, seed=7)):
        request = _new_request(number)
        events = Event.objects.count()
        fuzzer.post_form(reverse("approvals:decide", args=[request.pk]), pairs, number)
        request.refresh_from_db()
        # All or nothing: a decision is recorded exactly when its event was sent.
        if (request.status == ApprovalRequest.Status.PENDING) != (Event.objects.count() == events):
            fuzzer.problems.append(
                Problem(f"decide {shown(pairs)}", 0, f"status {request.status}, half-written")
            )
    request = _new_request(10_000)
    fuzzer.snapshot = _decided_and_events
    fuzzer.post_not_a_form(reverse("approvals:decide", args=[request.pk]))
    fuzzer.assert_no_problems()


@pytest.mark.parametrize("who", ["approver", "viewer"])
def test_no_decide_or_detail_at_a_malformed_address_gets_a_500(request, who, target):
    user = request.getfixturevalue(who)
    pending = _new_request(1)
    fuzzer = Fuzzer(signed_in(user), snapshot=_decided_and_events)
    ids = [
        str(pending.pk),
        "0",
        "-1",
        "9" * 20,
        "9" * 5000,
        "1e3",
        "%00",
        "1%00",
        "%ED%A0%80",
        "١",
        "x" * 300,
    ]
    for pk in ids:
        for suffix in ("", "decide/"):
            url = f"/approvals/{pk}/{suffix}"
            fuzzer.send("GET", url, what="")
            fuzzer.send("POST", url, what="", body=b"approved=yes&comment=%00")
            fuzzer.send("POST", url, what="htmx", body=b"approved=yes", headers=HTMX)
    for query in ("tab=%00", "tab=history%ff", "tab=" + "x" * 5000, "tab=\xff"):
        fuzzer.send("GET", "/approvals/", what=query[:40], query=query)
    fuzzer.assert_no_problems()
