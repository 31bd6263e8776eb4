"""Events from message queues (api.md section 12), against the real local RabbitMQ and Redis,
and SQS as moto's server emulates it (the SQS API over HTTP, in the test process): a
message's actions commit before it is acknowledged, failures are delivered again and then
dead-lettered, an id acts once, and nothing is lost when a consumer or the broker dies."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest
from django.conf import settings
from django.db.models import Sum
from kombu import Connection, Queue

import consumer_workflows
import workflows
from support import wait_for
from workflows.ingress.consumers import consumer, get_consumer, registered_consumers, unregister_consumer
from workflows.ingress.runner import _run_closing_connections, transport_options
from workflows.models import ConsumerCount, Delivery, Event, FailedMessage, Instance
from workflows.publish import publish
from workflows.testing import run_until_idle

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.brokers]

QUEUE = consumer_workflows.QUEUE
DEAD = f"{QUEUE}.dead"
BROKERS = {"test-rabbit": consumer_workflows.RABBIT_URL, "test-redis": consumer_workflows.REDIS_URL}
START_COMMANDS = {
    5672: ["rabbitmq-server", "-detached"],
    6379: [
        "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
        "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log",
    ],
}  # fmt: skip


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _broker_up(url: str) -> bool:
    try:
        with Connection(url, connect_timeout=2) as broker:
            broker.ensure_connection(max_retries=1)
        return True
    except Exception:
        return False


def ensure_broker(url: str) -> None:
    """The broker at `url` answers; started (stack-notes' command) if it is down, else the
    test is skipped saying why."""
    port = 5672 if url.startswith("amqp") else 6379
    if _broker_up(url):
        return
    try:
        subprocess.run(START_COMMANDS[port], capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"the broker on port {port} is down and could not be started: {exc}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _broker_up(url):
            return
        time.sleep(1)
    pytest.skip(f"the broker on port {port} is down and did not start within 60 s")


def clear_queues(url: str) -> None:
    if url.startswith("sqs"):  # SQS purges a queue at most once a minute: take them off
        for name in (QUEUE, DEAD):
            take_all(url, name)
        return
    with Connection(url, transport_options=transport_options()) as broker:
        channel = broker.channel()
        for name in (QUEUE, DEAD):
            queue = Queue(name, routing_key=name, durable=True, channel=channel)
            queue.declare()
            queue.purge()


def take_all(url: str, name: str) -> list:
    """Every message now in queue `name`, taken off it."""
    taken = []
    with Connection(url, transport_options=transport_options()) as broker:
        queue = Queue(name, routing_key=name, durable=True, channel=broker.channel())
        queue.declare()
        while (message := queue.get(no_ack=True)) is not None:
            taken.append(message)
    return taken


def set_sqs_visibility_timeout(url: str, name: str, *, seconds: int) -> None:
    import boto3

    endpoint = "http://" + url.rsplit("@", 1)[1]
    sqs = boto3.client(
        "sqs", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    queue_url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"VisibilityTimeout": str(seconds)})


def queue_length(url: str, name: str) -> int:
    with Connection(url, transport_options=transport_options()) as broker:
        queue = Queue(name, routing_key=name, durable=True, channel=broker.channel())
        return queue.queue_declare().message_count


@pytest.fixture(scope="session")
def sqs_url():
    """An SQS endpoint: moto's server (the AWS API emulator) on a free port of this
    process, for the session; TEST_SQS_URL names it to the test consumer and to clusters."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # pragma: no cover - moto is a dev dependency
        pytest.skip(f"moto (the SQS emulator) is not installed: {exc}")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ["TEST_SQS_URL"] = url = f"sqs://testing:testing@{host}:{port}"
    yield url
    os.environ.pop("TEST_SQS_URL", None)
    server.stop()


@pytest.fixture(params=["test-rabbit", "test-redis", "test-sqs"], ids=["rabbitmq", "redis", "sqs"])
def broker(request):
    """(consumer name, broker URL) with empty queues, for each of the three brokers."""
    name = request.param
    if name == "test-sqs":
        url = request.getfixturevalue("sqs_url")
    else:
        url = BROKERS[name]
        ensure_broker(url)
    clear_queues(url)
    yield name, url
    clear_queues(url)


@pytest.fixture
def rabbit():
    url = BROKERS["test-rabbit"]
    ensure_broker(url)
    clear_queues(url)
    yield url
    clear_queues(url)


@contextmanager
def consuming(name: str):
    """The consumer `name` running in a thread of this process, as a consumer process would."""
    stop = threading.Event()
    thread = threading.Thread(target=_run_closing_connections, args=(get_consumer(name), stop))
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(15)
        assert not thread.is_alive(), "the consumer did not stop"


def eventually(condition, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def waiting_order(instance_id="order-1"):
    inst = workflows.create("consumer-test-order", id=instance_id)
    run_until_idle()
    assert inst.status()["status"] == "waiting"
    return inst


def metric(consumer_name: str, outcome: str) -> float:
    from workflows.metrics import _engine_registry

    labels = {"consumer": consumer_name, "outcome": outcome}
    return _engine_registry.get_sample_value("durable_consumer_messages_total", labels) or 0.0


def counts(name: str) -> dict:
    return ConsumerCount.objects.filter(consumer=name).aggregate(
        handled=Sum("handled"), failed=Sum("failed"), dead_lettered=Sum("dead_lettered")
    )


def test_a_message_wakes_the_waiting_instance(broker):
    name, url = broker
    inst = waiting_order()
    with consuming(name):
        publish(url, QUEUE, {"order_id": "order-1", "amount": "42.00"}, message_id="pay-1")
        eventually(lambda: inst.status()["status"] == "queued", what="the event to queue the instance")
        eventually(lambda: counts(name)["handled"] == 1, what="the count to be saved")
    run_until_idle()
    assert inst.status() == {"status": "complete", "output": {"paid": "42.00"}, "error": None}
    assert queue_length(url, QUEUE) == 0
    assert Delivery.objects.get().source == f"consumer:{name}"


def test_a_failing_message_is_delivered_again_then_moved_to_the_dead_letter_queue(broker):
    name, url = broker
    max_deliveries = get_consumer(name).max_deliveries
    before = {outcome: metric(name, outcome) for outcome in ("failed", "dead_lettered")}
    with consuming(name):
        publish(url, QUEUE, {"fail": "no such order"}, message_id="bad-1")
        eventually(lambda: queue_length(url, DEAD) == 1, what="the dead-lettered message")
        eventually(lambda: counts(name)["dead_lettered"] == 1, what="the counts to be saved")
    [dead] = take_all(url, DEAD)
    assert json.loads(dead.body) == {"fail": "no such order"}
    assert dead.properties["message_id"] == "bad-1"
    assert dead.headers["x-durable-error"] == "ValueError: no such order"
    assert dead.headers["x-durable-deliveries"] == max_deliveries
    assert dead.headers["x-durable-consumer"] == name
    assert counts(name) == {"handled": 0, "failed": max_deliveries, "dead_lettered": 1}
    assert queue_length(url, QUEUE) == 0
    assert not Delivery.objects.exists()
    assert not FailedMessage.objects.exists(), "a dead-lettered message's count is done with"
    # ... and in the metrics (GET /metrics: durable_consumer_messages_total).
    assert metric(name, "failed") - before["failed"] == max_deliveries
    assert metric(name, "dead_lettered") - before["dead_lettered"] == 1


def test_a_failed_messages_count_survives_its_consumer_stopping(broker):
    # The failed message goes back to the broker unacknowledged; the count of its
    # deliveries is the database's, so a consumer started again carries on from it.
    name, url = broker
    max_deliveries = get_consumer(name).max_deliveries
    with consuming(name):
        publish(url, QUEUE, {"fail": "the ledger is down"}, message_id="bad-2")
        eventually(lambda: FailedMessage.objects.filter(message_key="bad-2").exists(), what="a failure")
    failed_first = FailedMessage.objects.get(consumer=name, message_key="bad-2").deliveries
    assert 1 <= failed_first < max_deliveries
    # Handed back to the broker, not acknowledged (SQS shows it again after a second).
    eventually(lambda: queue_length(url, QUEUE) == 1, what="the message back in its queue")
    with consuming(name):
        eventually(lambda: queue_length(url, DEAD) == 1, what="the dead-lettered message")
    [dead] = take_all(url, DEAD)
    assert dead.headers["x-durable-deliveries"] == max_deliveries
    assert counts(name)["failed"] == max_deliveries, "counted on from the first consumer's failures"


def test_a_failing_action_applies_nothing_and_is_dead_lettered_with_its_error(rabbit):
    # Create, then an event to an unknown instance: the created instance is rolled back.
    consumer("test-two-actions", broker_setting="TEST_RABBIT_URL", queue=QUEUE, max_deliveries=2)(
        lambda body, headers: [
            workflows.Create(workflow="consumer-test-noop", id="made"),
            workflows.SendEvent(instance_id="no-such-order", type="payment"),
        ]
    )
    try:
        with consuming("test-two-actions"):
            publish(rabbit, QUEUE, {"anything": 1})
            eventually(lambda: queue_length(rabbit, DEAD) == 1, what="the dead-lettered message")
    finally:
        unregister_consumer("test-two-actions")
    [dead] = take_all(rabbit, DEAD)
    assert dead.headers["x-durable-error"] == 'InstanceNotFound: no instance with id "no-such-order"'
    assert not Instance.objects.exists()


def test_a_message_that_fails_once_succeeds_when_delivered_again(rabbit):
    inst = waiting_order()
    attempts = []

    def flaky(body, headers):
        attempts.append(dict(headers))
        if len(attempts) == 1:
            raise RuntimeError("the payment service hiccuped")
        return workflows.SendEvent(instance_id="order-1", type="payment", payload=body)

    consumer("test-flaky", broker_setting="TEST_RABBIT_URL", queue=QUEUE)(flaky)
    try:
        with consuming("test-flaky"):
            publish(rabbit, QUEUE, {"amount": "1"}, message_id="flaky-1")
            eventually(lambda: inst.status()["status"] == "queued", what="the second delivery to apply")
    finally:
        unregister_consumer("test-flaky")
    # The broker delivered the same message again (not a copy published anew).
    assert attempts == [{}, {}]
    assert queue_length(rabbit, DEAD) == 0
    assert not FailedMessage.objects.exists(), "its count is forgotten once it succeeds"


def test_a_message_id_seen_before_is_acknowledged_without_acting_twice(broker):
    name, url = broker
    waiting_order()
    with consuming(name):
        publish(url, QUEUE, {"order_id": "order-1", "amount": "1"}, message_id="pay-7")
        publish(url, QUEUE, {"order_id": "order-1", "amount": "1"}, message_id="pay-7")
        # A redelivery header instead of a message id counts the same.
        publish(url, QUEUE, {"order_id": "order-1", "amount": "2"}, headers={"X-Durable-Delivery": "pay-8"})
        publish(url, QUEUE, {"order_id": "order-1", "amount": "2"}, headers={"X-Durable-Delivery": "pay-8"})
        eventually(lambda: counts(name)["handled"] == 4, what="all four messages handled")
    assert Event.objects.filter(instance_id="order-1").count() == 2
    assert sorted(Delivery.objects.values_list("delivery_id", flat=True)) == ["pay-7", "pay-8"]
    assert queue_length(url, QUEUE) == queue_length(url, DEAD) == 0


@pytest.mark.parametrize("raw", [b"not json", b'{"order_id": ', b"\xff\xfe", b'{"a": NaN}'])
def test_a_malformed_message_goes_to_the_dead_letter_queue_at_once(rabbit, raw):
    handled = []
    consumer("test-malformed", broker_setting="TEST_RABBIT_URL", queue=QUEUE)(
        lambda body, headers: handled.append(body)
    )
    try:
        with consuming("test-malformed"):
            publish(rabbit, QUEUE, raw, message_id="junk")
            eventually(lambda: queue_length(rabbit, DEAD) == 1, what="the dead-lettered message")
    finally:
        unregister_consumer("test-malformed")
    [dead] = take_all(rabbit, DEAD)
    assert dead.headers["x-durable-deliveries"] == 1
    assert dead.headers["x-durable-error"].startswith("MalformedBody: the body is not valid JSON")
    assert handled == []


def test_a_message_over_the_payload_limit_goes_to_the_dead_letter_queue_at_once(rabbit, small_payload_limit):
    with consuming("test-rabbit"):
        publish(rabbit, QUEUE, {"order_id": "order-1", "amount": "x" * small_payload_limit})
        eventually(lambda: queue_length(rabbit, DEAD) == 1, what="the dead-lettered message")
    [dead] = take_all(rabbit, DEAD)
    assert dead.headers["x-durable-deliveries"] == 1
    assert dead.headers["x-durable-error"].startswith("PayloadTooLarge: the body is")


def test_a_consumer_comes_back_when_the_broker_is_unreachable_at_first(rabbit, settings):
    settings.TEST_LATE_BROKER = "amqp://guest:guest@127.0.0.1:1//"  # nothing listens there
    consumer("test-late", broker_setting="TEST_LATE_BROKER", queue=QUEUE)(consumer_workflows.handle)
    inst = waiting_order()
    try:
        with consuming("test-late"):
            time.sleep(1.5)  # it fails to connect and backs off
            settings.TEST_LATE_BROKER = rabbit
            publish(rabbit, QUEUE, {"order_id": "order-1", "amount": "1"})
            eventually(lambda: inst.status()["status"] == "queued", timeout=30, what="the reconnect")
    finally:
        unregister_consumer("test-late")


def test_consumer_arguments_are_checked_when_registered():
    with pytest.raises(ValueError, match="max_deliveries must be a whole number of 1 or more, got 0"):
        consumer("bad", broker_setting="X", queue="q", max_deliveries=0)
    with pytest.raises(ValueError, match="queue must be a queue name"):
        consumer("bad", broker_setting="X", queue="")
    with pytest.raises(ValueError, match='consumer "test-rabbit" is already registered'):
        consumer("test-rabbit", broker_setting="X", queue="q")(lambda body, headers: None)


def test_a_consumer_without_a_broker_is_reported_by_the_check(settings, monkeypatch):
    from django.core.checks import run_checks

    monkeypatch.delenv("PAYMENTS_BROKER_URL")
    assert [p.id for p in run_checks() if p.id.startswith("workflows.W10")] == ["workflows.W102"]
    settings.PAYMENTS_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"
    assert [p.id for p in run_checks() if p.id.startswith("workflows.W10")] == []


def test_the_console_lists_the_consumers_with_their_last_hours_counts(client, django_user_model):
    from workflows.ingress.runner import add_counts

    add_counts("test-rabbit", {"handled": 7, "failed": 2, "dead_lettered": 1})
    user = django_user_model.objects.create_superuser("admin", "a@example.com", "pw")
    client.force_login(user)
    page = client.get("/workflows/").content.decode()
    assert "Queue consumers" in page
    row = page[page.index('<tr id="consumer-test-rabbit">') :]
    row = row[: row.index("</tr>")]
    assert [cell.split(">")[1] for cell in row.split("<td")[1:]][1:] == [
        f"{QUEUE}</td",
        "7</td",
        "2</td",
        "1</td",
    ]
    assert {c.name for c in registered_consumers()} >= {"payments-queue", "test-rabbit", "test-redis"}


# --- real processes ------------------------------------------------------------------


def consumer_cluster(clusters, **env):
    """A cluster running the test consumers (not the demo's: its broker is unset)."""
    return clusters.start(
        DURABLE_CONSUMERS="1",
        TEST_WORKFLOW_MODULES="consumer_workflows",
        DURABLE_TEST_QUEUE=QUEUE,
        PAYMENTS_BROKER_URL="",
        **env,
    )


def log_of(process) -> str:
    return process.log_path.read_text()


@pytest.mark.slow
def test_qcluster_runs_the_consumers_and_a_message_resumes_a_waiting_instance(clusters, rabbit):
    cluster = consumer_cluster(clusters)
    inst = workflows.create("consumer-test-order", id="order-1")
    wait_for(lambda: inst.status()["status"] == "waiting", cluster, what="the wait")
    publish(rabbit, QUEUE, {"order_id": "order-1", "amount": "5"}, message_id="pay-1")
    wait_for(lambda: inst.status()["status"] == "complete", cluster, what="the message to resume it")
    assert 'consumer "test-redis" consuming queue' in log_of(cluster)


@pytest.mark.slow
def test_qcluster_starts_no_consumer_when_DURABLE_CONSUMERS_is_0(clusters, rabbit):
    cluster = clusters.start(TEST_WORKFLOW_MODULES="consumer_workflows")  # the fixture's default: 0
    inst = workflows.create("consumer-test-order", id="order-1")
    wait_for(lambda: inst.status()["status"] == "waiting", cluster, what="the wait")
    publish(rabbit, QUEUE, {"order_id": "order-1", "amount": "5"})
    time.sleep(3)
    assert queue_length(rabbit, QUEUE) == 1
    assert inst.status()["status"] == "waiting"


@pytest.mark.slow
def test_a_consumer_killed_between_commit_and_ack_does_not_apply_the_redelivered_message_twice(
    clusters, broker, tmp_path
):
    name, url = broker
    marker = tmp_path / "killed"
    env = {"DURABLE_TEST_KILL_MARKER": str(marker)}
    if name != "test-rabbit":
        # Redis and SQS hand back a dead consumer's message after the visibility timeout
        # (300 s by default): what this test shows is that the redelivery does not act twice.
        env["DURABLE_CONSUMER_VISIBILITY_TIMEOUT"] = "3"
    if name == "test-sqs":  # on SQS the visibility timeout is the queue's, set when it is made
        set_sqs_visibility_timeout(url, QUEUE, seconds=3)
    cluster = consumer_cluster(clusters, **env)
    inst = workflows.create("consumer-test-order", id="order-1")
    wait_for(lambda: inst.status()["status"] == "waiting", cluster, what="the wait")
    message_id = f"{consumer_workflows.KILL_PREFIX}1"
    publish(url, QUEUE, {"order_id": "order-1", "amount": "5"}, message_id=message_id)
    wait_for(marker.exists, cluster, what="the consumer to be killed after its commit")
    wait_for(lambda: inst.status()["status"] == "complete", cluster, what="the committed event to resume it")
    # The supervisor starts the consumer again; the broker delivers the unacknowledged
    # message again; its id was committed with its actions, so it is only acknowledged.
    wait_for(
        lambda: f"message {message_id}: a repeat, acknowledged" in log_of(cluster),
        cluster,
        timeout=60,
        what="the redelivery to be acknowledged",
    )
    assert "starting it again" in log_of(cluster)
    assert Event.objects.filter(instance_id="order-1").count() == 1
    assert queue_length(url, QUEUE) == queue_length(url, DEAD) == 0


@pytest.mark.slow
def test_a_broker_restart_mid_stream_loses_no_message_and_applies_none_twice(clusters, rabbit):
    cluster = consumer_cluster(clusters)
    total = 200
    with Connection(rabbit, transport_options={"confirm_publish": True}) as broker:
        for number in range(total):
            if number == total // 2:
                wait_for(lambda: Instance.objects.exists(), cluster, what="consuming to start")
                restarted = subprocess.run(
                    "rabbitmqctl stop_app && rabbitmqctl start_app", shell=True, capture_output=True
                )
                assert restarted.returncode == 0, restarted.stderr
            publish(rabbit, QUEUE, {"create": f"m-{number}"}, message_id=f"m-{number}", connection=broker)
    wait_for(
        lambda: Instance.objects.filter(workflow="consumer-test-noop").count() == total,
        cluster,
        timeout=90,
        what=f"all {total} messages applied",
    )
    assert "the broker is unreachable" in log_of(cluster)
    assert Delivery.objects.count() == total
    assert queue_length(rabbit, QUEUE) == queue_length(rabbit, DEAD) == 0


@pytest.mark.slow
def test_sigterm_stops_the_consumers_cleanly_and_later_messages_wait_in_the_queue(clusters, rabbit):
    cluster = consumer_cluster(clusters)
    wait_for(lambda: 'consuming queue "' in log_of(cluster), cluster, what="the consumers to start")
    cluster.send_signal(signal.SIGTERM)
    cluster.wait(30)
    assert 'consumer "test-rabbit" stopped' in log_of(cluster)
    publish(rabbit, QUEUE, {"order_id": "order-1", "amount": "1"})
    assert queue_length(rabbit, QUEUE) == 1


CONSUME_SCRIPT = (
    "import sys, django; sys.path.insert(0, 'tests'); django.setup(); import consumer_workflows; "
    "from django.core.management import call_command; call_command('workflows', 'consume', *sys.argv[1:])"
)


@pytest.mark.slow
def test_manage_py_workflows_consume_runs_the_named_consumers_until_sigterm(
    rabbit, test_database_url, tmp_path
):
    inst = workflows.create("consumer-test-order", id="order-1")
    run_until_idle()
    log = tmp_path / "consume.log"
    env = {**os.environ, "DATABASE_URL": test_database_url, "DURABLE_TEST_QUEUE": QUEUE}
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", CONSUME_SCRIPT, "test-rabbit"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        publish(rabbit, QUEUE, {"order_id": "order-1", "amount": "3"}, message_id="pay-3")
        eventually(lambda: inst.status()["status"] == "queued", what=f"the message; log:\n{log.read_text()}")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0, log.read_text()
    assert 'consumer "test-rabbit" stopped' in log.read_text()


def test_manage_py_workflows_consume_refuses_an_unknown_consumer():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match='no consumer named "nope" is registered'):
        call_command("workflows", "consume", "nope")
