"""What the console shows of the consumers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Sum

from .. import clock
from ..models import ConsumerCount
from .consumers import registered_consumers


@dataclass(frozen=True)
class ConsumerRow:
    name: str
    queue: str
    dead_letter_queue: str
    handled: int
    failed: int
    dead_lettered: int


def consumer_rows() -> list[ConsumerRow]:
    """Every registered consumer with the messages it handled, failed and dead-lettered in
    the last hour (the counts of every process running it)."""
    since = clock.now().replace(second=0, microsecond=0) - timedelta(minutes=59)
    totals = {
        row["consumer"]: row
        for row in ConsumerCount.objects.filter(minute__gte=since)
        .values("consumer")
        .annotate(handled=Sum("handled"), failed=Sum("failed"), dead_lettered=Sum("dead_lettered"))
    }
    return [
        ConsumerRow(
            name=found.name,
            queue=found.queue,
            dead_letter_queue=found.dead_letter_queue,
            handled=totals.get(found.name, {}).get("handled") or 0,
            failed=totals.get(found.name, {}).get("failed") or 0,
            dead_lettered=totals.get(found.name, {}).get("dead_lettered") or 0,
        )
        for found in registered_consumers()
    ]
