"""Production: settings that refuse unsafe defaults, and the site served by gunicorn.

Settings are read once per process, so each configuration is tried in a subprocess with
an environment built here from scratch (the Makefile's DJANGO_* variables left out).
"""

import http.client
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import global_settings, settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command

from workflows.models import Instance
from workflows.roles import VIEWERS

# The configuration README.md's "Running in production" documents (less DATABASE_URL:
# these checks do not open the database).
PRODUCTION_ENV = {
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_ALLOWED_HOSTS": "durable.example.com",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://durable.example.com",
    "DJANGO_PROXY_SSL_HEADER": "X-Forwarded-Proto",
    "DURABLE_BASE_URL": "https://durable.example.com",
    "PAYMENTS_WEBHOOK_SECRET": secrets.token_urlsafe(32),
    "PAYMENTS_BROKER_URL": "amqp://durable:secret@mq.internal:5672//",
}
FORWARDED_HTTPS = {"X-Forwarded-Proto": "https"}


def environment(**variables: str) -> dict[str, str]:
    """os.environ without any DJANGO_* variable, plus `variables`."""
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("DJANGO_")}
    return {**inherited, "DJANGO_SETTINGS_MODULE": "durable_site.settings", **variables}


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=120)


def setup_django(env: dict[str, str]) -> subprocess.CompletedProcess:
    return run([sys.executable, "-c", "import django; django.setup()"], env)


def last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


def test_settings_refuse_to_load_without_a_secret_key_when_debug_is_off():
    done = setup_django(environment())
    assert done.returncode != 0
    assert last_line(done.stderr).startswith(
        "django.core.exceptions.ImproperlyConfigured: DJANGO_SECRET_KEY is not set: "
        "set it to a long random string"
    )


def test_settings_refuse_the_published_development_key_when_debug_is_off():
    done = setup_django(environment(DJANGO_SECRET_KEY=settings.DEVELOPMENT_SECRET_KEY))
    assert done.returncode != 0
    assert last_line(done.stderr).startswith(
        "django.core.exceptions.ImproperlyConfigured: "
        "DJANGO_SECRET_KEY is the published development key: set it to a long random string"
    )


def test_debug_on_uses_the_development_key_and_plain_http():
    script = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SECRET_KEY, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.SECURE_HSTS_SECONDS)"
    )
    done = run([sys.executable, "-c", script], environment(DJANGO_DEBUG="1"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [settings.DEVELOPMENT_SECRET_KEY, "False", "False", "0"]


def test_deploy_check_passes_in_the_documented_production_configuration():
    done = run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        environment(**PRODUCTION_ENV),
    )
    assert done.returncode == 0, done.stderr
    assert "no issues" in done.stdout


def test_deploy_check_reports_insecure_cookies_redirects_and_hsts_when_https_is_switched_off():
    done = run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        environment(**PRODUCTION_ENV, DJANGO_HTTPS="0"),
    )
    assert done.returncode != 0
    reported = set(re.findall(r"security\.W\d+", done.stderr))
    assert reported == {"security.W004", "security.W008", "security.W012", "security.W016"}


@pytest.mark.django_db
def test_demo_setup_refuses_with_debug_off_and_creates_nothing(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError) as refused:
        call_command("demo_setup")
    assert str(refused.value) == (
        "demo_setup creates a superuser with a published password; "
        "it runs only with DJANGO_DEBUG=1 (a development site)."
    )
    assert not get_user_model().objects.exists()
    assert not Instance.objects.exists()


# --- gunicorn --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    text: str


class Site:
    """A gunicorn on 127.0.0.1, spoken to over plain HTTP as a TLS-terminating proxy would."""

    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: str | None = None
    ) -> Response:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            answer = connection.getresponse()
            return Response(answer.status, answer.headers, answer.read().decode(errors="replace"))
        finally:
            connection.close()

    def log(self) -> str:
        return self.log_path.read_text()[-3000:]


def cookies(response: Response) -> dict[str, str]:
    """name -> the whole Set-Cookie header (http.cookiejar would not send Secure cookies over HTTP)."""
    return {header.split("=", 1)[0]: header for header in response.headers.get_all("Set-Cookie") or []}


def cookie_value(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0].split("=", 1)[1]


@pytest.fixture
def production_site(tmp_path: Path, test_database_url: str) -> Iterator[Site]:
    """collectstatic, then gunicorn with DEBUG off on the test database; stopped afterwards."""
    env = {
        **environment(**PRODUCTION_ENV),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_CSRF_TRUSTED_ORIGINS": "",
        "DJANGO_STATIC_ROOT": str(tmp_path / "static"),
        "DATABASE_URL": test_database_url,
    }
    collected = run([sys.executable, "manage.py", "collectstatic", "--noinput"], env)
    assert collected.returncode == 0, collected.stderr

    site = Site(free_port(), tmp_path / "gunicorn.log")
    with open(site.log_path, "w") as log:
        gunicorn = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "durable_site.wsgi"]
            + ["--bind", f"127.0.0.1:{site.port}", "--workers", "2", "--access-logfile", "-"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                site.request("GET", "/login/", FORWARDED_HTTPS)
                break
            except OSError:
                assert gunicorn.poll() is None, f"gunicorn exited:\n{site.log()}"
                assert time.monotonic() < deadline, f"gunicorn did not answer:\n{site.log()}"
                time.sleep(0.2)
        yield site
    finally:
        os.killpg(gunicorn.pid, signal.SIGTERM)  # gunicorn's graceful stop, workers included
        try:
            gunicorn.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(gunicorn.pid, signal.SIGKILL)
            gunicorn.wait(5)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_gunicorn_serves_the_signed_in_console_static_files_and_plain_errors(production_site, settings):
    site = production_site
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS  # gunicorn checks with the real ones
    user = get_user_model().objects.create_user("ops-viewer", password="a-long-test-password-7")
    user.groups.add(Group.objects.get(name=VIEWERS))

    login_page = site.request("GET", "/login/", FORWARDED_HTTPS)
    assert login_page.status == 200, site.log()
    assert login_page.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    csrf_cookie = cookies(login_page)["csrftoken"]
    assert "Secure" in csrf_cookie
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page.text).group(1)

    signed_in = site.request(
        "POST",
        "/login/",
        {
            **FORWARDED_HTTPS,
            # A browser sends its origin with a POST; over HTTPS, Django's CSRF check needs it.
            "Origin": f"https://127.0.0.1:{site.port}",
            "Cookie": f"csrftoken={cookie_value(csrf_cookie)}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        urllib.parse.urlencode(
            {"csrfmiddlewaretoken": token, "username": "ops-viewer", "password": "a-long-test-password-7"}
        ),
    )
    assert signed_in.status == 302, signed_in.text
    session_cookie = cookies(signed_in)["sessionid"]
    assert "Secure" in session_cookie and "HttpOnly" in session_cookie

    console = site.request(
        "GET",
        signed_in.headers["Location"],
        {**FORWARDED_HTTPS, "Cookie": f"sessionid={cookie_value(session_cookie)}"},
    )
    assert console.status == 200, site.log()
    assert "Instances" in console.text
    assert '<span class="who">ops-viewer</span>' in console.text

    assets = re.findall(r'<(?:script src|link rel="stylesheet" href)="(/static/[^"]+)"', console.text)
    assert any("htmx" in asset for asset in assets) and "/static/workflows/durable.css" in assets
    for asset in assets:
        assert site.request("GET", asset, FORWARDED_HTTPS).status == 200, asset

    plain_http = site.request("GET", "/login/")
    assert plain_http.status == 301
    assert plain_http.headers["Location"] == f"https://127.0.0.1:{site.port}/login/"

    unknown = site.request("GET", "/no-such-page/", FORWARDED_HTTPS)
    assert unknown.status == 404
    assert "Not Found" in unknown.text
    assert "DEBUG" not in unknown.text and "Traceback" not in unknown.text
