"""What the engine stores: a value that cannot be stored as it is is a PayloadError naming
its place, wherever it comes in, and nothing is written (api.md section 7)."""

import json

import pytest

import workflows
from workflows import PayloadError, workflow
from workflows.conf import setting
from workflows.models import Event, Instance, Step
from workflows.payloads import parse_json_text
from workflows.testing import run_until_idle

pytestmark = pytest.mark.django_db


def nested(depth):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


def nested_objects(depth):
    value = 1
    for _ in range(depth):
        value = {"in": value}
    return value


UNSTORABLE = [
    pytest.param({"note": "x\x00y"}, r'at \["note"\] contains a NUL character', id="nul"),
    pytest.param({"x\x00": 1}, "has a key that contains a NUL character", id="nul-in-key"),
    pytest.param(["ok", "\ud800"], r"at \[1\] contains a lone surrogate", id="lone-surrogate"),
    pytest.param({"n": 2**63}, r'at \["n"\] is an integer outside the 64-bit range', id="int-over-64-bits"),
    pytest.param({"n": -(2**63) - 1}, "outside the 64-bit range", id="int-under-64-bits"),
    pytest.param({"n": 10**5000}, "outside the 64-bit range", id="5000-digit-int"),
    pytest.param({"x": float("nan")}, "must be JSON: nan", id="nan"),
    pytest.param([float("inf")], "must be JSON: inf", id="infinity"),
    pytest.param(nested(101), "nested more than 100 levels deep", id="101-levels"),
    pytest.param(nested(5000), "nested more than 100 levels deep", id="5000-levels"),
    pytest.param({"when": object()}, r'at \["when"\] must be JSON .* got object', id="object"),
    pytest.param({(1, 2): "tuple key"}, "JSON object keys are strings", id="tuple-key"),
    pytest.param(
        {2**63: "x"}, "has a key 9223372036854775808 of type int: JSON object keys", id="int-key-over-64-bits"
    ),
    pytest.param(nested_objects(101), "nested more than 100 levels deep", id="101-levels-of-objects"),
    pytest.param(
        {"deep": nested(100)}, r'at \["deep"\](\[0\]){99} is nested more than 100', id="too-deep-inside"
    ),
    pytest.param({"items": [1, "x\x00"]}, r'at \["items"\]\[1\] contains a NUL', id="two-levels-down"),
    pytest.param(
        {"outer": {"x\x00": 1}}, r'at \["outer"\] has a key that contains a NUL', id="nul-in-inner-key"
    ),
    pytest.param(["x\x00", None, True], r"at \[0\] contains a NUL", id="nul-before-null-and-true"),
]


@pytest.mark.parametrize(("value", "message"), UNSTORABLE)
def test_create_refuses_unstorable_params_and_writes_nothing(value, message):
    with pytest.raises(PayloadError, match=message) as refused:
        workflows.create("payloads-echo", params=value, id="i-1")
    assert str(refused.value).startswith('params of instance "i-1" ')
    assert not Instance.objects.exists()


@pytest.mark.parametrize(("value", "message"), UNSTORABLE)
def test_send_event_refuses_unstorable_payloads_and_keeps_nothing(value, message):
    inst = workflows.create("payloads-echo", params=None)
    with pytest.raises(PayloadError, match=message) as refused:
        inst.send_event("ping", value)
    assert str(refused.value).startswith('payload of event "ping" ')
    assert not Event.objects.exists()


def test_the_limits_themselves_are_allowed():
    value = {"deep": nested(99), "big": 2**63 - 1, "small": -(2**63), "text": "é ✓ 𝄞"}
    inst = workflows.create("payloads-echo", params=value)
    run_until_idle()
    assert inst.status()["output"] == value


def test_a_problem_with_the_whole_value_names_no_place():
    with pytest.raises(PayloadError) as refused:
        workflows.create("payloads-echo", params=float("nan"), id="i-1")
    assert str(refused.value) == 'params of instance "i-1" must be JSON: nan is not a JSON number'


def test_integer_keys_at_the_64_bit_limits_are_allowed_and_come_back_as_strings():
    inst = workflows.create("payloads-echo", params={2**63 - 1: "max", -(2**63): "min"})
    run_until_idle()
    assert inst.status()["output"] == {"9223372036854775807": "max", "-9223372036854775808": "min"}


def test_the_limit_counts_the_utf8_bytes_of_the_text_as_stored_not_escapes(small_payload_limit):
    overhead = len(json.dumps(""))
    fits = "é" * ((small_payload_limit - overhead) // 2)  # two bytes each in UTF-8
    inst = workflows.create("payloads-echo", params=fits)
    with pytest.raises(PayloadError, match="1,026 bytes serialised, over the limit of 1,024"):
        workflows.create("payloads-echo", params=fits + "é")
    run_until_idle()
    assert inst.status()["output"] == fits


def test_a_payload_error_is_a_value_error():
    assert issubclass(PayloadError, ValueError)


def test_params_at_the_default_limit_of_one_mebibyte_are_accepted_and_one_byte_more_refused():
    assert setting("MAX_PAYLOAD_BYTES") == 1024 * 1024  # the default: no setting in durable_site
    overhead = len(json.dumps(""))
    fits = "x" * (1024 * 1024 - overhead)
    workflows.create("payloads-echo", params=fits, id="fits")
    with pytest.raises(PayloadError, match="1,048,577 bytes serialised, over the limit of 1,048,576"):
        workflows.create("payloads-echo", params=fits + "x", id="too-big")
    assert list(Instance.objects.values_list("id", flat=True)) == ["fits"]


@workflow("payloads-echo")
def echo_flow(event, step):
    return event.payload


@workflow("payloads-step-returns")
def step_returns_flow(event, step):
    try:
        step.do("make", lambda: _unstorable[event.payload])
    except workflows.StepFailed as exc:
        return {"type": exc.error_type, "message": exc.message, "attempts": exc.attempts}


_unstorable = {"nul": "x\x00y", "surrogate": "\udfff", "deep": nested(150), "huge": 10**30}


@pytest.mark.parametrize("kind", sorted(_unstorable))
def test_a_step_returning_an_unstorable_value_fails_at_once_without_retries(kind):
    inst = workflows.create("payloads-step-returns", params=kind)
    run_until_idle()
    output = inst.status()["output"]
    assert output["type"] == "PayloadError"
    assert output["message"].startswith('the result of step "make"')
    assert output["attempts"] == 1
    assert Step.objects.get(name="make").runs.count() == 1


@workflow("payloads-output")
def unstorable_output_flow(event, step):
    return {"text": "a\x00b"}


def test_a_workflow_returning_an_unstorable_value_errors_naming_the_place():
    inst = workflows.create("payloads-output")
    run_until_idle()
    status = inst.status()
    assert status["status"] == "errored"
    assert status["error"]["type"] == "PayloadError"
    message = status["error"]["message"]
    assert message.startswith('the return value of workflow "payloads-output" at ["text"] contains a NUL')


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": "\\u0000"}', "contains a NUL character"),
        ('"\\ud800"', "lone surrogate"),
        ("[" * 5000 + "]" * 5000, "nested more than 100 levels deep"),
        ("[" * 101 + "]" * 101, "nested more than 100 levels deep"),
        ("9" * 5000, "--params is not valid JSON: Exceeds the limit"),
        ("NaN", "must be JSON: nan"),
        ("{", "--params is not valid JSON: Expecting property name"),
    ],
)
def test_json_typed_by_a_person_is_parsed_with_a_clear_error(text, message):
    with pytest.raises(PayloadError, match=message) as refused:
        parse_json_text(text, what="--params")
    assert str(refused.value).startswith("--params ")
