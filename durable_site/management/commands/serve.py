"""`manage.py serve`: the web server and a django-q2 cluster together, for `make run`.

The cluster runs in its own session so that Ctrl-C reaches only this process, which
then stops the cluster with one SIGTERM (django-q2's graceful stop) and waits for it.
"""

import signal
import subprocess
import sys
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the development web server and a worker cluster together; Ctrl-C stops both."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")

    def handle(self, *args: Any, addrport: str, **options: Any) -> None:
        # SIGTERM (and SIGINT, even when started in the background) end the web server
        # the way Ctrl-C does, so the cluster is always stopped below.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        cluster = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"], cwd=settings.BASE_DIR, start_new_session=True
        )
        try:
            call_command("runserver", addrport, use_reloader=False)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            self.stdout.write("Stopping the worker cluster...")
            cluster.send_signal(signal.SIGTERM)
            try:
                cluster.wait(30)
            except subprocess.TimeoutExpired:
                cluster.kill()
