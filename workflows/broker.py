"""django-q2's ORM broker, tuned for the engine: `Q_CLUSTER["broker_class"]`.

Two changes, both about not stalling:
- On PostgreSQL an idle pusher waits on `LISTEN` instead of sleeping its poll: the
  statement that queues a task also sends `NOTIFY` (`enqueue`), delivered when the
  transaction that queues it commits, so an event resumes its instance in milliseconds.
  SQLite keeps polling.
- A run task not acknowledged within DURABLE_REDELIVERY_SECONDS is delivered again,
  instead of after Q_CLUSTER["retry"] (an hour): a cluster killed with tasks in memory
  stalls nothing for long. A run delivered twice is harmless (the engine's claim lets
  one run hold an instance); any other task keeps django-q2's retry.

And two that make it cheaper: on PostgreSQL a look at the queue takes its batch in one
statement (SKIP LOCKED lets clusters share the queue) instead of a compare-and-set per
task, and the check for stale connections before each use of the database (a round
trip with CONN_HEALTH_CHECKS) is made at most once a second.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.db import connections, transaction
from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.signing import BadSignature, SignedPackage

from . import shutdown
from .conf import setting
from .ingress.supervisor import supervise as supervise_consumers

logger = logging.getLogger(__name__)

CHANNEL = "durable_work"
RUN_TASK = "workflows.tasks.run_instance"
CALL_TASK = "workflows.tasks.run_call"
# Tasks of the engine, redelivered soon when not acknowledged (see _lock_until).
_ENGINE_TASKS = (RUN_TASK, CALL_TASK)


class DurableBroker(ORM):
    _listener = None  # psycopg connection LISTENing on CHANNEL, in the pusher process
    _connections_checked = 0.0  # time.monotonic() of the last look for stale connections

    @classmethod
    def get_connection(cls, list_key: str | None = None):
        if time.monotonic() - cls._connections_checked >= 1.0 or not transaction.get_autocommit(
            using=Conf.ORM
        ):
            cls._connections_checked = time.monotonic()
            return super().get_connection(list_key)
        return OrmQ.objects.using(Conf.ORM)

    def enqueue(self, task: str) -> int:
        """Queue a task; on PostgreSQL the same statement sends the NOTIFY that wakes idle
        pushers (delivered when the caller's transaction commits)."""
        connection = connections[Conf.ORM]
        if connection.vendor != "postgresql":
            return super().enqueue(task)
        fields = {f.name: connection.ops.quote_name(f.column) for f in OrmQ._meta.concrete_fields}
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {connection.ops.quote_name(OrmQ._meta.db_table)} "
                f"({fields['key']}, {fields['payload']}, {fields['lock']}) VALUES (%s, %s, %s) "
                "RETURNING id, pg_notify(%s, '')",
                [self.list_key or Conf.CLUSTER_NAME, task, timezone.now(), CHANNEL],
            )
            return cursor.fetchone()[0]

    def dequeue(self) -> list[tuple[int, str]] | None:
        now = timezone.now()
        queue = self.get_connection()
        if connections[Conf.ORM].vendor == "postgresql":
            claimed = self._take_batch(now)
        else:
            claimed = []
            for task in queue.filter(key=self.list_key, lock__lt=now)[: Conf.BULK]:
                # Compare-and-set on `lock`, as django-q2 does: another cluster may be faster.
                if queue.filter(id=task.id, lock=task.lock).update(lock=self._lock_until(task, now)):
                    claimed.append((task.pk, task.payload))
        if claimed:
            return claimed
        self._wait_for_work(Conf.POLL)
        return None

    def _take_batch(self, now: datetime) -> list[tuple[int, str]]:
        """Lock up to Q_CLUSTER["bulk"] tasks for redelivery in one statement; then the
        tasks that are not runs (rare) get django-q2's own lock."""
        table = connections[Conf.ORM].ops.quote_name(OrmQ._meta.db_table)
        with connections[Conf.ORM].cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET lock = %s WHERE id IN (SELECT id FROM {table} "
                "WHERE key = %s AND lock < %s ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) "
                "RETURNING id, payload",
                [now + timedelta(seconds=setting("REDELIVERY_SECONDS")), self.list_key, now, Conf.BULK],
            )
            claimed = sorted(cursor.fetchall())
        others = [pk for pk, payload in claimed if not _is_run(payload)]
        if others:
            OrmQ.objects.using(Conf.ORM).filter(pk__in=others).update(lock=self.timeout(None))
        return claimed

    def set_stat(self, key: str, value: str, timeout: int) -> None:
        """django-q2's sentinel reports its status here every guard cycle; the first
        report that it is stopping starts the drain of its workers (see shutdown.py)."""
        super().set_stat(key, value, timeout)
        if not shutdown.draining():
            try:
                stopping = SignedPackage.loads(value).status == Conf.STOPPING
            except (TypeError, BadSignature, AttributeError):
                stopping = False
            if stopping:
                logger.info("cluster stopping: workers finish their step and hand back their runs")
                shutdown.begin_draining()
        # The sentinel also runs the queue consumers, one process each (ingress/supervisor.py).
        supervise_consumers(stopping=shutdown.draining())

    def _lock_until(self, task, now: datetime) -> datetime:
        if _is_run(task.payload):
            return now + timedelta(seconds=setting("REDELIVERY_SECONDS"))
        return self.timeout(task)

    def _wait_for_work(self, seconds: float) -> None:
        """Until NOTIFY or `seconds`; a plain sleep where the database cannot notify."""
        if connections[Conf.ORM].vendor != "postgresql":
            time.sleep(seconds)
            return
        try:
            listener = self._listen()
            for _ in listener.notifies(timeout=seconds, stop_after=1):
                pass
        except Exception:
            logger.exception("durable broker: LISTEN failed; polling instead")
            self._close_listener()
            time.sleep(seconds)

    def _listen(self):
        if self._listener is None or self._listener.closed:
            import psycopg

            params = connections[Conf.ORM].get_connection_params()
            params.pop("cursor_factory", None)
            params.pop("context", None)
            self._listener = psycopg.connect(**params, autocommit=True)
            # LISTEN before the next look at the queue: a NOTIFY sent in between waits
            # in the connection, so no wake-up is lost.
            self._listener.execute(f"LISTEN {CHANNEL}")
        return self._listener

    def _close_listener(self) -> None:
        if self._listener is not None:
            try:
                self._listener.close()
            finally:
                self._listener = None


def _is_run(payload: str) -> bool:
    try:
        return SignedPackage.loads(payload).get("func") in _ENGINE_TASKS
    except (TypeError, BadSignature):
        return False  # the pusher reports and fails it
