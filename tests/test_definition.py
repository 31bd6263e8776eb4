"""Defining workflows: the registry, durations and retry policies."""

from datetime import timedelta

import pytest

import workflows
from workflows import RetryPolicy, parse_duration, workflow
from workflows.definition import get_workflow


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (30, timedelta(seconds=30)),
        (1.5, timedelta(seconds=1.5)),
        (timedelta(hours=2), timedelta(hours=2)),
        ("30 seconds", timedelta(seconds=30)),
        ("1 second", timedelta(seconds=1)),
        ("5 minutes", timedelta(minutes=5)),
        ("2 hours", timedelta(hours=2)),
        ("1 day", timedelta(days=1)),
        ("3 weeks", timedelta(weeks=3)),
        ("1.5 hours", timedelta(minutes=90)),
        ("250 milliseconds", timedelta(milliseconds=250)),
        ("  10   Minutes ", timedelta(minutes=10)),
    ],
)
def test_durations_accept_seconds_timedeltas_and_text(value, expected):
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    "value", ["soon", "5 fortnights", "minutes", "-5 seconds", -1, None, True, [5], "1e3 s"]
)
def test_bad_durations_raise_value_error_naming_the_value(value):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(value)


def test_registering_a_different_function_under_a_taken_name_is_refused():
    @workflow("definition-test-taken")
    def first(event, step):
        return 1

    def second(event, step):
        return 2

    with pytest.raises(ValueError, match="already registered"):
        workflow("definition-test-taken")(second)
    assert get_workflow("definition-test-taken") is first


def test_registering_the_same_function_again_is_harmless():
    def flow(event, step):
        return 1

    workflow("definition-test-same")(flow)
    workflow("definition-test-same")(flow)
    assert "definition-test-same" in workflows.registered_workflows()


def test_unknown_workflow_lookup_names_the_workflow():
    with pytest.raises(workflows.WorkflowNotFound, match="no-such-flow"):
        get_workflow("no-such-flow")


@pytest.mark.parametrize(
    ("backoff", "delays"),
    [
        ("constant", [10, 10, 10, 10]),
        ("linear", [10, 20, 30, 40]),
        ("exponential", [10, 20, 40, 80]),
    ],
)
def test_each_backoff_kind_spaces_retries_as_documented(backoff, delays):
    policy = RetryPolicy(limit=4, delay="10 seconds", backoff=backoff)
    assert [policy.delay_before_retry(n).total_seconds() for n in range(1, 5)] == delays


def test_retry_policy_defaults_match_the_contract():
    policy = RetryPolicy.coerce(None)
    assert (policy.limit, parse_duration(policy.delay), policy.backoff) == (
        5,
        timedelta(seconds=10),
        "exponential",
    )


@pytest.mark.parametrize(
    ("retries", "message"),
    [
        ({"limit": -1}, "limit"),
        ({"limit": "3"}, "limit"),
        ({"backoff": "fibonacci"}, "backoff"),
        ({"delay": "whenever"}, "invalid duration"),
        ({"tries": 3}, "unknown retries option"),
        (3, "must be a dict or a RetryPolicy"),
    ],
)
def test_bad_retry_policies_are_refused_clearly(retries, message):
    with pytest.raises(ValueError, match=message):
        RetryPolicy.coerce(retries)


@pytest.mark.parametrize("value", ["999999999 days", 10**12, timedelta(days=999_999_999), "36501 days"])
def test_a_duration_too_long_for_the_engine_is_a_value_error_not_an_overflow(value):
    with pytest.raises(ValueError, match="longer than the longest the engine accepts"):
        parse_duration(value)


def test_a_retry_delay_never_overflows_however_many_retries():
    policy = RetryPolicy(limit=10_000, delay="1 day", backoff="exponential")
    assert policy.delay_before_retry(10_000) == timedelta(days=36_500)
    assert RetryPolicy(limit=10**9, delay="1 day", backoff="linear").delay_before_retry(10**9) == timedelta(
        days=36_500
    )
