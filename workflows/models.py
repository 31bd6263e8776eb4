"""The engine's tables: the source of truth for what runs, what waits and what happened."""

from django.conf import settings
from django.db import models


class Status(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    PAUSED = "paused"
    ERRORED = "errored"
    TERMINATED = "terminated"
    COMPLETE = "complete"


FINISHED_STATUSES = (Status.COMPLETE, Status.ERRORED, Status.TERMINATED)
UNFINISHED_STATUSES = tuple(status for status in Status if status not in FINISHED_STATUSES)

# Events are accepted by an instance that has not finished (it may not wait for them yet).
EVENT_STATUSES = UNFINISHED_STATUSES

# A row a run (or a parallel call's worker) holds: its lease token is set. The condition of
# the held-lease indexes, which a query states too (SQLite uses a partial index only then).
HELD = ~models.Q(lease_token="")


class Action(models.TextChoices):
    """The lifecycle actions. The services enforce the statuses each allows; the console,
    the CLI and the API offer only what the status allows."""

    PAUSE = "pause"
    RESUME = "resume"
    TERMINATE = "terminate"
    RESTART = "restart"
    RETRY = "retry"

    @property
    def allowed_statuses(self) -> tuple[Status, ...]:
        return _ACTION_STATUSES[self]

    @property
    def in_bulk(self) -> bool:
        """Offered on many selected instances at once in the console."""
        return self in (Action.RETRY, Action.PAUSE, Action.TERMINATE)


_ACTION_STATUSES: dict[Action, tuple[Status, ...]] = {
    Action.PAUSE: (Status.QUEUED, Status.RUNNING, Status.WAITING),
    Action.RESUME: (Status.PAUSED,),
    Action.TERMINATE: UNFINISHED_STATUSES,
    Action.RESTART: tuple(Status),
    Action.RETRY: (Status.ERRORED,),
}


class Instance(models.Model):
    """One execution of a workflow.

    A run claims the instance by writing a fresh `lease_token` and `lease_expires_at`;
    every write the run makes checks the token, so a run whose claim was taken over (it
    was presumed dead, or the instance was restarted or terminated) changes nothing.
    """

    id = models.CharField(primary_key=True, max_length=100)
    workflow = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    params = models.JSONField(null=True)
    output = models.JSONField(null=True)
    error = models.JSONField(null=True)  # {"type": str, "message": str}
    error_traceback = models.TextField(blank=True)
    # The key of the step whose failure errored the instance: the one step retry() reruns.
    failed_step_key = models.CharField(max_length=300, blank=True)
    # Restart starts a new generation: earlier steps stay for the record but are not replayed.
    generation = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True)
    # When a waiting instance is due: end of a sleep, a retry delay, or an event wait's deadline.
    wake_at = models.DateTimeField(null=True)
    # The event type a waiting instance waits for, so send_event wakes only the right waiter.
    waiting_for = models.CharField(max_length=200, blank=True)
    lease_token = models.CharField(max_length=32, blank=True)
    lease_expires_at = models.DateTimeField(null=True)
    # The instance that started this one with step.run_workflow / step.start_workflow.
    parent_id = models.CharField(max_length=100, blank=True, db_index=True)
    # @workflow(concurrency=N, concurrency_key=fn): fn(params), computed at creation.
    concurrency_key = models.CharField(max_length=200, blank=True)
    # terminate(rollback=True): the next run stops at its first unfinished step, runs the
    # compensations of the steps that succeeded, and ends the instance as terminated.
    rollback_requested = models.BooleanField(default=False)

    class Meta:
        indexes = [
            models.Index(fields=["status", "wake_at"], name="instance_due_idx"),
            models.Index(fields=["lease_expires_at"], name="instance_lease_idx"),
            models.Index(fields=["-created_at", "-id"], name="instance_newest_idx"),
            models.Index(fields=["workflow", "status"], name="instance_workflow_idx"),
            models.Index(fields=["status", "-created_at", "-id"], name="instance_status_newest_idx"),
            models.Index(fields=["finished_at"], name="instance_finished_idx"),  # retention
            models.Index(
                fields=["workflow", "concurrency_key", "status", "created_at"],
                name="instance_concurrency_idx",
            ),
            # The heartbeat renews its worker's leases by token, four times a second: only
            # held leases are in it, so a renewal does not scan every instance.
            models.Index(fields=["lease_token"], name="instance_held_lease_idx", condition=HELD),
        ]
        permissions = [
            (
                "operate_instance",
                "Can start, retry, pause, resume, terminate and restart instances and send events",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.workflow} {self.id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def allows(self, action: Action | str) -> bool:
        """Whether the lifecycle `action` makes sense now."""
        return self.status in Action(action).allowed_statuses

    @property
    def accepts_events(self) -> bool:
        return self.status in EVENT_STATUSES


class StepKind(models.TextChoices):
    DO = "do"
    SLEEP = "sleep"
    WAIT = "wait"
    PATCH = "patch"  # a step.patched() marker: this run took the new code path here
    CHILD = "child"  # step.run_workflow / step.start_workflow: a child instance
    PARALLEL = "parallel"  # step.parallel / step.map: its calls are steps of their own


class StepStatus(models.TextChoices):
    RUNNING = "running"  # an attempt is in flight (or its worker died)
    RETRYING = "retrying"  # waiting out the delay before the next attempt
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # attempts used up, or a non-retryable error
    SLEEPING = "sleeping"
    WAITING = "waiting"  # for an event, or for a child instance to finish
    TIMED_OUT = "timed_out"  # an event wait passed its deadline
    QUEUED = "queued"  # a parallel call waiting for a worker


class Step(models.Model):
    """The recorded state of one step of one generation of an instance.

    A step is identified by `key`: its name and how many times that name was used
    before it in the run ("charge card#1").
    """

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="steps")
    generation = models.PositiveIntegerField()
    key = models.CharField(max_length=300)
    name = models.CharField(max_length=256)
    kind = models.CharField(max_length=8, choices=StepKind.choices)
    status = models.CharField(max_length=16, choices=StepStatus.choices)
    result = models.JSONField(null=True)
    error = models.JSONField(null=True)  # the last error: {"type": str, "message": str}
    # Attempts made since the step was last (re)started; retry() sets it back to 0.
    attempts = models.PositiveIntegerField(default=0)
    # Sleep end, next retry, or event-wait deadline.
    wake_at = models.DateTimeField(null=True)
    event_type = models.CharField(max_length=200, blank=True)
    # A child step's instance.
    child_id = models.CharField(max_length=100, blank=True)
    # A parallel call's step.parallel step. A call runs in a task of its own while its
    # instance waits, holding its own lease (renewed by its worker's heartbeat).
    group = models.ForeignKey("self", null=True, on_delete=models.CASCADE, related_name="calls")
    lease_token = models.CharField(max_length=32, blank=True)
    lease_expires_at = models.DateTimeField(null=True)
    created_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["instance", "generation", "key"], name="step_unique_key_per_generation"
            )
        ]
        indexes = [
            # Parallel calls whose worker died: only leased calls are in it.
            models.Index(
                fields=["lease_expires_at"],
                name="step_call_lease_idx",
                condition=models.Q(lease_expires_at__isnull=False),
            ),
            # The heartbeat renews the calls its worker runs by token (as for instances).
            models.Index(fields=["lease_token"], name="step_held_lease_idx", condition=HELD),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"


class StepRun(models.Model):
    """One attempt of a `step.do`: when it ran, how long, and how it ended."""

    class Outcome(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    step = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="runs")
    attempt = models.PositiveIntegerField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.RUNNING)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True)
    duration_ms = models.FloatField(null=True)
    error_type = models.CharField(max_length=200, blank=True)
    error_message = models.TextField(blank=True)
    traceback = models.TextField(blank=True)

    class Meta:
        ordering = ["started_at", "id"]

    def __str__(self) -> str:
        return f"{self.step.key} attempt {self.attempt} ({self.outcome})"


class Event(models.Model):
    """An event sent to an instance; consumed, oldest first, by one wait at most."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=200)
    payload = models.JSONField(null=True)
    created_at = models.DateTimeField()
    consumed_at = models.DateTimeField(null=True)
    consumed_by = models.ForeignKey(
        Step, null=True, on_delete=models.SET_NULL, related_name="consumed_events"
    )

    class Meta:
        indexes = [
            models.Index(fields=["instance", "type", "consumed_at", "id"], name="event_pending_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} -> {self.instance_id}"


class Schedule(models.Model):
    """The last due time of a scheduled workflow that has been started (or, for a schedule
    first seen, passed): each due time is claimed once, by one atomic update of this row."""

    workflow = models.CharField(primary_key=True, max_length=200)
    last_due = models.DateTimeField()
    # Paused: its due times pass without starting; resumed, only the next one starts.
    paused = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"{self.workflow} (last due {self.last_due:%Y-%m-%d %H:%M}Z)"


class ConcurrencyGroup(models.Model):
    """One row per workflow and concurrency key with a limit: a claim locks it to count
    the group's running instances, so two claims cannot both take the last slot."""

    workflow = models.CharField(max_length=200)
    key = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workflow", "key"], name="concurrency_group_unique")]

    def __str__(self) -> str:
        return f"{self.workflow} [{self.key}]"


class ApiToken(models.Model):
    """A bearer token of the HTTP API: it acts as its user. Only a hash of the secret is
    kept; `prefix` (its first characters) finds and names it. Its name is unique among its
    user's tokens (not across users: a user must not learn another's token names)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True)  # SHA-256 hex of the whole token
    created_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "name"], name="apitoken_unique_name_per_user")]

    def __str__(self) -> str:
        return f"{self.name} ({self.user})"


class Delivery(models.Model):
    """A webhook delivery or queue message already applied, by its sender's id: a repeat
    is answered (or acknowledged) without acting twice."""

    source = models.CharField(max_length=200)  # "hook:<name>" or "consumer:<name>"
    delivery_id = models.CharField(max_length=200)
    received_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "delivery_id"], name="delivery_unique_id")]

    def __str__(self) -> str:
        return f"{self.source} {self.delivery_id}"


class FailedMessage(models.Model):
    """How many times a queue consumer has failed one message (by its id, or its body's
    digest when it has none). A failed message is handed back to the broker unacknowledged
    and the broker delivers it again (api.md section 12); most brokers do not count
    deliveries, so the count is kept here until the message succeeds or is dead-lettered."""

    consumer = models.CharField(max_length=100)
    message_key = models.CharField(max_length=200)
    deliveries = models.PositiveIntegerField(default=0)
    failed_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["consumer", "message_key"], name="failed_message_unique_key")
        ]

    def __str__(self) -> str:
        return f"{self.consumer} {self.message_key} ({self.deliveries})"


class ConsumerCount(models.Model):
    """How many messages a queue consumer handled, failed and dead-lettered in one minute
    (each consumer process adds its counts every few seconds): the console's last hour."""

    consumer = models.CharField(max_length=100)
    minute = models.DateTimeField()
    handled = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    dead_lettered = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["consumer", "minute"], name="consumer_count_unique_minute")
        ]

    def __str__(self) -> str:
        return f"{self.consumer} {self.minute:%Y-%m-%dT%H:%MZ}"


class WorkflowHour(models.Model):
    """One workflow's figures for one hour that has closed, aggregated once from its
    instances by the timers (workflows/hours.py): the workflows page's charts read these
    instead of the instance rows."""

    workflow = models.CharField(max_length=200)
    hour = models.DateTimeField()  # its start, UTC
    started = models.PositiveIntegerField(default=0)  # created in the hour
    # Ended in the hour by themselves (a terminated one is in the wall time only).
    completed = models.PositiveIntegerField(default=0)
    errored = models.PositiveIntegerField(default=0)
    # Creation to end: of the complete and errored ones; the wall time of all that ended.
    p50_ms = models.FloatField(null=True)
    p95_ms = models.FloatField(null=True)
    wall_ms = models.FloatField(default=0.0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "workflow"], name="workflow_hour_unique")]

    def __str__(self) -> str:
        return f"{self.workflow} {self.hour:%Y-%m-%dT%HZ}"


class FinishedCount(models.Model):
    """How many instances of a workflow are in a finished status and ended before the
    counts' mark (workflows/counts.py): the workflows page counts only the others."""

    workflow = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices)
    number = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workflow", "status"], name="finished_count_unique_status")
        ]

    def __str__(self) -> str:
        return f"{self.workflow} {self.status}: {self.number}"


class RollupMark(models.Model):
    """How far a periodic rollup (workflows/rollups.py) has gone: what happened before
    `up_to` is in its table."""

    name = models.CharField(primary_key=True, max_length=20)
    up_to = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} up to {self.up_to:%Y-%m-%dT%H:%M:%SZ}"
