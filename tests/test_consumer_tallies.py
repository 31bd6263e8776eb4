"""What the database keeps of a queue consumer's failing messages (no broker needed): the
count of each message's failed deliveries, by its id or its body, until it is done with."""

import pytest

from workflows import retention
from workflows.ingress.tallies import count_failure, forget_failures, message_key
from workflows.models import FailedMessage
from workflows.testing import advance

pytestmark = pytest.mark.django_db


def test_each_failed_delivery_of_a_message_adds_one_to_its_count():
    key = message_key("pay-1", b"{}")
    assert [count_failure("payments", key) for _ in range(3)] == [1, 2, 3]
    assert count_failure("other-consumer", key) == 1, "each consumer counts its own"


def test_a_message_without_an_id_is_known_by_its_body():
    assert message_key(None, b'{"a": 1}') == message_key(None, b'{"a": 1}')
    assert message_key(None, b'{"a": 1}') != message_key(None, b'{"a": 2}')
    assert message_key("pay-1", b'{"a": 1}') == "pay-1"
    assert message_key("x" * 5000, b"").startswith("sha256:"), "an id too long to store is digested"


def test_a_forgotten_message_counts_from_one_again():
    count_failure("payments", "pay-1")
    count_failure("payments", "pay-2")
    forget_failures("payments", "pay-1")
    assert count_failure("payments", "pay-1") == 1
    assert count_failure("payments", "pay-2") == 2


def test_a_count_left_behind_is_purged_after_the_retention_period():
    count_failure("payments", "vanished")
    advance("29 days")
    retention.purge_expired()
    assert FailedMessage.objects.exists()
    advance("2 days")
    retention.purge_expired()
    assert not FailedMessage.objects.exists()
