"""`manage.py demo_setup`: the demo login and a few demo instances, for `make run`.

Idempotent: the login's password is reset each time, instances are started only into
an empty database. Refuses to run unless DEBUG is on: the password is in this file.
"""

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

import workflows
from approvals.roles import APPROVERS
from workflows.models import Instance
from workflows.roles import OPERATORS

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "durable-demo"

DEMO_INSTANCES = [
    ("order-fulfilment", {"order_id": 42}),
    ("order-fulfilment", {"order_id": 43}),
    ("nightly-billing", {"account": "acme", "scheduled_at": "2026-12-01T03:00Z"}),
    ("content-pipeline", {"url": "https://example.com/cat.jpg"}),
    ("content-pipeline", {"url": "https://example.com/forbidden.jpg"}),
]


class Command(BaseCommand):
    help = "Create the demo login (a superuser) and start a few demo instances into an empty database."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000/", help="the address to print")

    def handle(self, *args: Any, url: str, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError(
                "demo_setup creates a superuser with a published password; "
                "it runs only with DJANGO_DEBUG=1 (a development site)."
            )
        user, _ = get_user_model().objects.get_or_create(
            username=DEMO_USERNAME, defaults={"email": "demo@example.com"}
        )
        user.is_staff = user.is_superuser = True
        user.set_password(DEMO_PASSWORD)
        user.save()
        # Superusers may do everything; the groups make the demo login also get the
        # approval emails (printed to the console) that approvers get.
        user.groups.add(*Group.objects.filter(name__in=[OPERATORS, APPROVERS]))
        if not Instance.objects.exists():
            for name, params in DEMO_INSTANCES:
                workflows.create(name, params=params)
            # Paid through the provider: waits for the signed webhook README shows how to send.
            workflows.create(
                "order-fulfilment", params={"order_id": 44, "paid_by": "provider"}, id="order-44"
            )
        self.stdout.write(
            f"\nDurable is starting at {url}\n"
            f"Sign in as {DEMO_USERNAME} / {DEMO_PASSWORD}\n"
            f"Webhooks: POST {url}hooks/payments, signed with PAYMENTS_WEBHOOK_SECRET="
            f'{settings.PAYMENTS_WEBHOOK_SECRET} (README, "Events from outside")\n'
            "Ctrl-C stops the web server and the worker.\n"
        )
