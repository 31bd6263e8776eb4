"""`manage.py workflows ...`: start, inspect and drive instances from the command line.

Parses arguments and calls the same services as the Python API and the web. Any bad
input becomes one CommandError line on stderr and a non-zero exit; nothing is changed.
"""

from __future__ import annotations

import json
import signal
import threading
from argparse import ArgumentTypeError
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from workflows import schedules, selectors, services
from workflows.api import tokens
from workflows.errors import InstanceExists, InstanceNotFound, InvalidState, WorkflowNotFound
from workflows.models import FINISHED_STATUSES, Action, Status
from workflows.payloads import parse_json_text


class _OneLineErrorParser(CommandParser):
    """Usage errors as one line on stderr, like every other error of this command."""

    def error(self, message: str) -> None:
        if self.called_from_command_line:
            self.exit(2, f"{self.prog}: error: {message} (see --help)\n")
        raise CommandError(f"Error: {message}")


# A listing is read into memory and printed at once; past this, filter instead.
MAX_LIST_LIMIT = 10_000


def _list_limit(text: str) -> int:
    try:
        return selectors.parse_page_size(text, maximum=MAX_LIST_LIMIT)
    except ValueError as exc:
        raise ArgumentTypeError(str(exc)) from None


def _text(text: str) -> str:
    """An argument as it came in. Bytes that are not UTF-8 arrive as lone surrogates
    (Python's surrogateescape), which no database column can hold: refuse them here."""
    try:
        text.encode()
    except UnicodeEncodeError:
        raise ArgumentTypeError(f"is not valid UTF-8: {_shown(text)}") from None
    if "\x00" in text:
        raise ArgumentTypeError(f"contains a NUL character: {_shown(text)}")
    return text


def _shown(text: str) -> str:
    """A bad argument in an error line: printable, and short enough to stay one line."""
    shown = ascii(text)
    return shown if len(shown) <= 60 else shown[:57] + "..."


class Command(BaseCommand):
    help = "Start, inspect and drive workflow instances."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.__class__ = _OneLineErrorParser  # BaseCommand builds a plain CommandParser
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(
            dest="subcommand", required=True, metavar="SUBCOMMAND", parser_class=_OneLineErrorParser
        )

        start = commands.add_parser("start", help="create an instance and print its id")
        start.add_argument("name", type=_text, help="the registered workflow name")
        start.add_argument("--params", type=_text, default="null", help="the params, as JSON")
        start.add_argument(
            "--id", dest="instance_id", type=_text, help="the instance id (default: generated)"
        )

        status = commands.add_parser("status", help="print an instance as one JSON object")
        status.add_argument("instance_id", type=_text)

        listing = commands.add_parser("list", help="list instances, newest first")
        listing.add_argument("--status", choices=Status.values)
        listing.add_argument("--workflow", type=_text)
        listing.add_argument("--limit", type=_list_limit, default=50)

        send = commands.add_parser("send-event", help="send an event to an instance")
        send.add_argument("instance_id", type=_text)
        send.add_argument("type", type=_text)
        send.add_argument("--payload", type=_text, default="null", help="the payload, as JSON")

        listed = commands.add_parser(
            "schedules",
            help="list the scheduled workflows and their next due time; or pause/resume NAME's schedule",
        )
        listed.add_argument("change", nargs="?", choices=["pause", "resume"])
        listed.add_argument("workflow", nargs="?", type=_text, metavar="NAME")

        consume = commands.add_parser(
            "consume", help="run the named queue consumers (@consumer) until SIGTERM or Ctrl-C"
        )
        consume.add_argument("names", nargs="+", type=_text, metavar="NAME")

        purge = commands.add_parser("purge", help="delete finished instances older than a duration")
        purge.add_argument("--older-than", required=True, type=_text, help='a duration, e.g. "90 days"')
        purge.add_argument("--workflow", type=_text)
        purge.add_argument("--status", choices=[status.value for status in FINISHED_STATUSES])

        self._add_token_arguments(commands)

        for action in Action.values:
            command = commands.add_parser(action, help=f"{action} an instance")
            command.add_argument("instance_id", type=_text)
            if action == Action.RESTART:
                command.add_argument(
                    "--from-step", type=_text, help="keep the steps before the first step of this name"
                )
            if action == Action.TERMINATE:
                command.add_argument(
                    "--rollback",
                    action="store_true",
                    help="run the compensations of the completed steps first",
                )

    def _add_token_arguments(self, commands: Any) -> None:
        token = commands.add_parser("token", help="create, list or revoke HTTP API tokens")
        token_commands = token.add_subparsers(
            dest="token_command",
            required=True,
            metavar="create|list|revoke",
            parser_class=_OneLineErrorParser,
        )
        create = token_commands.add_parser("create", help="create a token acting as USERNAME; print it once")
        create.add_argument("username", type=_text)
        create.add_argument("--name", type=_text, help="a label for the token (default: its prefix)")
        token_commands.add_parser("list", help="list the tokens (never their secret)")
        revoke = token_commands.add_parser("revoke", help="delete the token with this label")
        revoke.add_argument("name", type=_text)
        revoke.add_argument("--user", type=_text, help="whose token, if several have that label")

    def handle(self, *args: Any, subcommand: str, **options: Any) -> None:
        try:
            self._dispatch(subcommand, options)
        except (WorkflowNotFound, InstanceNotFound, InstanceExists, InvalidState, ValueError) as exc:
            raise CommandError(str(exc)) from exc

    def _dispatch(self, subcommand: str, options: dict[str, Any]) -> None:
        if subcommand == "start":
            params = parse_json_text(options["params"], what="--params")
            instance = services.create_instance(
                workflow=options["name"], params=params, instance_id=options["instance_id"]
            )
            self.stdout.write(instance.id)
        elif subcommand == "status":
            report = selectors.instance_report(instance_id=options["instance_id"])
            self.stdout.write(json.dumps(report, indent=2, ensure_ascii=False))
        elif subcommand == "list":
            self._list(options)
        elif subcommand == "schedules" and options["change"]:
            if not options["workflow"]:
                raise ValueError(f"name the scheduled workflow: workflows schedules {options['change']} NAME")
            change = schedules.pause_schedule if options["change"] == "pause" else schedules.resume_schedule
            change(workflow=options["workflow"])
            self.stdout.write(f"{options['workflow']}: schedule {options['change']}d")
        elif subcommand == "schedules":
            self._schedules()
        elif subcommand == "consume":
            self._consume(options["names"])
        elif subcommand == "token":
            self._token(options)
        elif subcommand == "purge":
            deleted = services.purge_instances(
                older_than=options["older_than"], workflow=options["workflow"], status=options["status"]
            )
            self.stdout.write(f"deleted {deleted} finished instance{'' if deleted == 1 else 's'}")
        elif subcommand == "send-event":
            payload = parse_json_text(options["payload"], what="--payload")
            services.send_event(
                instance_id=options["instance_id"], event_type=options["type"], payload=payload
            )
            self.stdout.write(f"sent {options['type']} to {options['instance_id']}")
        else:
            if subcommand == Action.RESTART:
                instance = services.restart_instance(
                    instance_id=options["instance_id"], from_step=options["from_step"]
                )
            elif subcommand == Action.TERMINATE:
                instance = services.terminate_instance(
                    instance_id=options["instance_id"], rollback=options["rollback"]
                )
            else:
                instance = services.apply_lifecycle_action(
                    instance_id=options["instance_id"], action=subcommand
                )
            self.stdout.write(f"{instance.id} is now {instance.status}")

    def _token(self, options: dict[str, Any]) -> None:
        if options["token_command"] == "create":
            _, token = tokens.create_token(username=options["username"], name=options["name"])
            self.stdout.write(token)  # alone on its line, for scripts: shown this once only
        elif options["token_command"] == "revoke":
            tokens.revoke_token(name=options["name"], username=options["user"])
            self.stdout.write(f"revoked {options['name']}")
        elif rows := tokens.list_tokens():
            self._table(
                ("NAME", "USER", "PREFIX", "CREATED", "LAST USED"),
                [
                    (
                        row.name,
                        row.user.get_username(),
                        row.prefix,
                        f"{row.created_at:%Y-%m-%dT%H:%M:%SZ}",
                        f"{row.last_used_at:%Y-%m-%dT%H:%M:%SZ}" if row.last_used_at else "never",
                    )
                    for row in rows
                ],
            )
        else:
            self.stdout.write("no API tokens")

    def _consume(self, names: list[str]) -> None:
        from workflows.ingress.consumers import get_consumer
        from workflows.ingress.runner import run_consumers

        try:
            consumers = [get_consumer(name) for name in names]
        except LookupError as exc:
            raise CommandError(str(exc)) from exc
        for consumer in consumers:
            if consumer.broker_url() is None:
                raise CommandError(f'consumer "{consumer.name}" has no broker: set {consumer.broker_setting}')
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *args: stop.set())
        self.stdout.write(f"consuming {', '.join(names)} (SIGTERM or Ctrl-C stops after the current message)")
        run_consumers(consumers, stop)

    def _schedules(self) -> None:
        rows = selectors.schedules()
        if not rows:
            self.stdout.write("no scheduled workflows")
            return
        self._table(
            ("WORKFLOW", "SCHEDULE (UTC)", "NEXT DUE", "LAST STARTED"),
            [
                (
                    row.workflow,
                    row.expression,
                    "paused" if row.paused else f"{row.next_due:%Y-%m-%dT%H:%MZ}",
                    row.last_started,
                )
                for row in rows
            ],
        )

    def _list(self, options: dict[str, Any]) -> None:
        rows = selectors.list_instances(
            status=options["status"], workflow=options["workflow"], limit=options["limit"]
        )
        self._table(
            ("ID", "WORKFLOW", "STATUS", "CREATED"),
            [(row.id, row.workflow, row.status, row.created_at.isoformat()) for row in rows],
        )

    def _table(self, header: tuple[str, ...], rows: list[tuple]) -> None:
        widths = [max(len(str(value)) for value in column) for column in zip(header, *rows, strict=False)]
        for line in (header, *rows):
            self.stdout.write("  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
