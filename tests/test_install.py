"""Durable installed from its wheel into a Django project of its own, following the README's
"Add Durable to your Django project": a fresh `django-admin startproject` with a custom
user model, in a fresh virtual environment that has only the wheel and its dependencies.

The host project always uses SQLite (its own file), whatever database the suite runs on.
The wheel's dependencies are downloaded once into a wheelhouse in the temporary folder
and installed from there (`--no-index`): the environment gets exactly what the wheel's
metadata asks for, and nothing of this checkout's.
"""

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from datetime import datetime
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
WHEELHOUSE = Path(tempfile.gettempdir()) / "durable-install-test-wheels"
DISTRIBUTION = "django-durable-workflows"

HOST_SETTINGS = """
# --- Durable (README: "Add Durable to your Django project") ---
INSTALLED_APPS += ["django_htmx", "django_q", "workflows", "approvals", "accounts", "shop"]
Q_CLUSTER = q_cluster()
DATABASES["default"]["OPTIONS"] = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
# The host's own choices, which the console follows.
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "admin:login"
TEMPLATES[0]["DIRS"] = [BASE_DIR / "templates"]
"""

HOST_URLS = """
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("ops/", include("workflows.urls")),
    path("ops/approvals/", include("approvals.urls")),
    path("api/v1/", include("workflows.api.urls")),
]
"""

USER_MODEL = """
from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    nickname = models.CharField(max_length=50, blank=True)
"""

HOST_WORKFLOW = """
from approvals import request_approval
from workflows import now, workflow


def _now():
    return now().isoformat()


@workflow("host-order")
def host_order(event, step):
    asked = step.do("asked", _now)
    step.sleep("cool-off", "1 second")
    woke = step.do("woke", _now)
    payment = step.wait_for_event("payment", type="paid", timeout="1 hour")
    decision = request_approval(
        step,
        "ship",
        title=f"Ship order {event.payload['order']}?",
        approvers=["group:Approvers"],
        timeout="1 hour",
    )
    return {"asked": asked, "woke": woke, "paid": payment["amount"], "approved": decision["approved"]}
"""

# The console's base template, overridden the usual way (the project's templates/ folder):
# it extends the packaged one and names the console.
BASE_OVERRIDE = """{% extends "workflows/base.html" %}
{% block brand %}Shop ops{% endblock %}
"""

# Run in the host project while its qcluster runs: an operator starts an order, pays it
# through the console's event form and approves it in the inbox, all under /ops/.
DRIVER = """
import json, os, re, time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hostsite.settings")
import django

django.setup()
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.template.loader import get_template
from django.test import Client
from django.test.utils import setup_test_environment

import workflows

setup_test_environment()  # the test client's host name
report = {
    "workflows_module": workflows.__file__,
    "template": get_template("workflows/instance_list.html").origin.name,
    "css": finders.find("workflows/durable.css"),
}
anonymous = Client().get("/ops/")
report["anonymous"] = [anonymous.status_code, anonymous.headers.get("Location")]

operator = get_user_model().objects.create_user("olivia", nickname="Liv")
operator.groups.add(*Group.objects.filter(name__in=["Operators", "Approvers"]))
client = Client()
client.force_login(operator)
order = workflows.create("host-order", params={"order": 7}, id="order-7")


def wait_for(what, found):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if result := found():
            return result
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}: {order.status()}")


def approval_link():
    inbox = client.get("/ops/approvals/").content.decode()
    return re.search(r'href="(/ops/approvals/[0-9]+/)"', inbox)


wait_for("the order to wait", lambda: order.status()["status"] == "waiting")
paid = client.post("/ops/instances/order-7/events/", {"type": "paid", "payload": '{"amount": 42}'})
report["event"] = [paid.status_code, paid.headers.get("Location")]
link = wait_for("the approval request in the inbox", approval_link).group(1)
decided = client.post(link + "decide/", {"approved": "yes", "comment": "ship it"})
report["decision"] = [decided.status_code, decided.headers.get("Location")]
wait_for("the order to finish", lambda: order.status()["status"] in ("complete", "errored"))
report["status"] = order.status()
report["pages"] = {}
for path in ["/ops/", "/ops/instances/order-7/", "/ops/workflows/", "/ops/approvals/?tab=history"]:
    page = client.get(path)
    report["pages"][path] = [page.status_code, page.content.decode()]
from io import StringIO

printed = StringIO()
call_command("workflows", "token", "create", "olivia", stdout=printed)
bearer = {"Authorization": "Bearer " + printed.getvalue().strip()}
api = Client(headers=bearer).get("/api/v1/instances/order-7")
report["api"] = [api.status_code, api.json().get("status")]
call_command("makemigrations", "workflows", "approvals", check=True, dry_run=True)  # prints what is missing
print(json.dumps(report))
"""


def run(command: list, cwd: Path, env: dict, timeout: float = 120) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, command))}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def pip(*args: str) -> list:
    return [sys.executable, "-m", "pip", "--quiet", *args]


def build_wheel(folder: Path) -> Path:
    """The distribution's wheel, built from a copy of the sources (no build/ left here)."""
    source = folder / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source)
    for package in ("workflows", "approvals"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    build_requires = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    with _wheelhouse_lock():
        run(
            pip("download", "--dest", str(WHEELHOUSE), "--only-binary", ":all:", *build_requires),
            folder,
            os.environ,
        )
        run(
            pip(
                "wheel", "--no-deps", "--no-index", "--find-links", str(WHEELHOUSE), "-w", "dist", "./source"
            ),
            folder,
            os.environ,
        )
        (wheel,) = (folder / "dist").glob("*.whl")
        # The wheel's dependencies, as its metadata names them.
        run(pip("download", "--dest", str(WHEELHOUSE), str(wheel)), folder, os.environ)
        (WHEELHOUSE / wheel.name).unlink()
    return wheel


class _wheelhouse_lock:
    """Two test sessions on one machine share the wheelhouse: one downloads at a time."""

    def __enter__(self) -> None:
        WHEELHOUSE.mkdir(exist_ok=True)
        self.lock = open(WHEELHOUSE / ".lock", "w")  # noqa: SIM115 - closed in __exit__
        fcntl.flock(self.lock, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        self.lock.close()


def host_env(venv: Path) -> dict:
    """The environment of a process of the host project: none of this suite's settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DURABLE_", "PYTHON", "VIRTUAL_ENV")) and key != "DATABASE_URL"
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """A fresh project with the wheel installed and the README's steps followed, migrated."""
    folder = tmp_path_factory.mktemp("install")
    wheel = build_wheel(folder)
    venv = folder / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], folder, os.environ)
    python = venv / "bin" / "python"
    with _wheelhouse_lock():
        run(
            pip(
                "--python", str(python), "install", "--no-index", "--find-links", str(WHEELHOUSE), str(wheel)
            ),
            folder,
            os.environ,
        )
    env = host_env(venv)
    project = folder / "project"
    project.mkdir()
    run([str(venv / "bin" / "django-admin"), "startproject", "hostsite", str(project)], folder, env)

    settings = project / "hostsite" / "settings.py"
    text = settings.read_text().replace(
        "from pathlib import Path\n", "from pathlib import Path\n\nfrom workflows.conf import q_cluster\n"
    )
    settings.write_text(text + HOST_SETTINGS)
    (project / "hostsite" / "urls.py").write_text(HOST_URLS)
    for app, module, text in [("accounts", "models.py", USER_MODEL), ("shop", "workflows.py", HOST_WORKFLOW)]:
        (project / app / "migrations").mkdir(parents=True)
        (project / app / "__init__.py").write_text("")
        (project / app / "migrations" / "__init__.py").write_text("")
        (project / app / module).write_text(text)
    (project / "templates" / "workflows").mkdir(parents=True)
    (project / "templates" / "workflows" / "base.html").write_text(BASE_OVERRIDE)
    (project / "drive.py").write_text(DRIVER)

    run([str(python), "manage.py", "makemigrations", "accounts"], project, env)
    run([str(python), "manage.py", "migrate"], project, env)
    return {"wheel": wheel, "python": python, "project": project, "env": env, "venv": venv}


def test_the_wheel_holds_both_apps_with_templates_static_files_and_migrations_but_not_the_demo(host):
    names = zipfile.ZipFile(host["wheel"]).namelist()
    assert {name.split("/")[0] for name in names} == {
        "workflows",
        "approvals",
        "django_durable_workflows-0.1.0.dist-info",
    }
    for expected in [
        "workflows/templates/workflows/base.html",
        "workflows/templates/workflows/instance_list.html",
        "workflows/static/workflows/durable.css",
        "workflows/migrations/0001_initial.py",
        "workflows/templatetags/workflows_console.py",
        "workflows/management/commands/workflows.py",
        "approvals/templates/approvals/inbox.html",
        "approvals/migrations/0001_initial.py",
    ]:
        assert expected in names
    metadata = (
        zipfile.ZipFile(host["wheel"]).read("django_durable_workflows-0.1.0.dist-info/METADATA").decode()
    )
    assert f"Name: {DISTRIBUTION}" in metadata


def test_the_host_projects_check_is_clean(host):
    output = run([str(host["python"]), "manage.py", "check"], host["project"], host["env"])
    assert "System check identified no issues (0 silenced)." in output


def test_a_real_cluster_runs_the_hosts_workflow_and_the_console_shows_it_under_the_prefix(host):
    project, env = host["project"], host["env"]
    log = open(project / "qcluster.log", "w")  # noqa: SIM115 - closed below
    cluster = subprocess.Popen(
        [str(host["python"]), "manage.py", "qcluster"],
        cwd=project,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        done = subprocess.run(
            [str(host["python"]), "drive.py"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        cluster.send_signal(signal.SIGTERM)
        try:
            cluster.wait(30)
        except subprocess.TimeoutExpired:
            cluster.kill()
            cluster.wait()
        log.close()
    cluster_log = (project / "qcluster.log").read_text()
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\nqcluster:\n{cluster_log}"
    report = json.loads(done.stdout.splitlines()[-1])

    # Everything comes from the installed wheel, not from this checkout.
    site_packages = str(host["venv"])
    assert report["workflows_module"].startswith(site_packages)
    assert report["template"].startswith(site_packages) and report["css"].startswith(site_packages)

    # The host's login URL, the event through the console's form, the inbox's decision.
    assert report["anonymous"] == [302, "/admin/login/?next=/ops/"]
    assert report["event"] == [302, "/ops/instances/order-7/"]
    assert report["decision"] == [302, "/ops/approvals/"]
    status = report["status"]
    assert status["status"] == "complete", f"{status}\nqcluster:\n{cluster_log}"
    output = status["output"]
    assert (output["paid"], output["approved"]) == (42, True)
    slept = _seconds_between(output["asked"], output["woke"])
    assert slept >= 1, output

    pages = report["pages"]
    assert {path: code for path, (code, _) in pages.items()} == dict.fromkeys(pages, 200)
    listing = pages["/ops/"][1]
    assert '/ops/">Shop ops</a>' in listing  # the host's override of workflows/base.html
    assert 'href="/ops/instances/order-7/"' in listing
    assert 'href="/ops/approvals/"' in listing and 'href="/ops/workflows/"' in listing
    assert 'href="/static/workflows/durable.css"' in listing and "/static/django_htmx/" in listing
    assert "olivia" in listing
    timeline = pages["/ops/instances/order-7/"][1]
    assert "cool-off" in timeline and "payment" in timeline and "ship" in timeline
    assert "Ship order 7?" in pages["/ops/approvals/?tab=history"][1]
    assert report["api"] == [200, "complete"]  # the HTTP API, with a token made by the command


def _seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
