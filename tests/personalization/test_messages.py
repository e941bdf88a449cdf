"""Control message schema: every valid form parses, every bad form says what is wrong."""

from __future__ import annotations

import json

import pytest

from personalization.errors import InvalidMessage
from personalization.messages import Feedback, Steer, parse_control_message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"type":"steer","text":"slower, more ocean, at night"}', Steer("slower, more ocean, at night")),
        (b'{"type":"steer","text":"  padded  "}', Steer("padded")),
        ({"type": "steer", "text": "x" * 500}, Steer("x" * 500)),
        ({"type": "steer", "text": "nuit \u00e9toil\u00e9e \U0001f30a"}, Steer("nuit \u00e9toil\u00e9e \U0001f30a")),
        ('{"type":"feedback","kind":"like","segment_id":12}', Feedback("like", 12, None)),
        ('{"type":"feedback","kind":"skip"}', Feedback("skip", None, None)),
        ('{"type":"feedback","kind":"skip","segment_id":null,"seconds":null}', Feedback("skip", None, None)),
        ('{"type":"feedback","kind":"dwell","segment_id":0,"seconds":3}', Feedback("dwell", 0, 3.0)),
        ({"type": "feedback", "kind": "dwell", "seconds": 0.25, "extra": "ignored"}, Feedback("dwell", None, 0.25)),
        ({"type": "feedback", "kind": "like", "seconds": 1.5}, Feedback("like", None, 1.5)),
    ],
)
def test_valid_messages(raw: object, expected: object) -> None:
    assert parse_control_message(raw) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("not json", "not valid JSON"),
        (b"\xff\xfe", "not valid UTF-8"),
        ('{"type":"steer","text":"x"', "not valid JSON"),
        ('{"type":"feedback","kind":"dwell","seconds":NaN}', "NaN is not allowed"),
        ("[1, 2]", "must be a JSON object, got an array"),
        ('"steer"', "must be a JSON object, got a string"),
        ("null", "must be a JSON object, got null"),
        ("{}", 'no "type"'),
        ('{"text":"hi"}', 'no "type"'),
        ('{"type":"dance"}', 'unknown message type "dance"'),
        ('{"type":7}', "unknown message type 7"),
        ('{"type":"steer"}', 'steer message has no "text"'),
        ('{"type":"steer","text":5}', '"text" must be a string, got a number'),
        ('{"type":"steer","text":null}', '"text" must be a string, got null'),
        ('{"type":"steer","text":""}', '"text" is empty'),
        ('{"type":"steer","text":"   "}', '"text" is empty'),
        (json.dumps({"type": "steer", "text": "x" * 501}), "too long (501 characters; at most 500)"),
        ('{"type":"feedback"}', 'no "kind"'),
        ('{"type":"feedback","kind":"love"}', 'unknown "kind" "love"'),
        ('{"type":"feedback","kind":"dwell"}', 'dwell feedback needs "seconds"'),
        ('{"type":"feedback","kind":"dwell","seconds":null}', 'dwell feedback needs "seconds"'),
        ('{"type":"feedback","kind":"dwell","seconds":-1}', "finite non-negative"),
        ('{"type":"feedback","kind":"dwell","seconds":1e999}', "finite non-negative"),
        ('{"type":"feedback","kind":"dwell","seconds":"3"}', '"seconds" must be a number, got a string'),
        ('{"type":"feedback","kind":"dwell","seconds":true}', '"seconds" must be a number, got a boolean'),
        ('{"type":"feedback","kind":"like","seconds":[1]}', '"seconds" must be a number, got an array'),
        ('{"type":"feedback","kind":"like","segment_id":-1}', '"segment_id" must be a non-negative integer'),
        ('{"type":"feedback","kind":"like","segment_id":1.5}', '"segment_id" must be a non-negative integer'),
        ('{"type":"feedback","kind":"like","segment_id":"3"}', '"segment_id" must be a non-negative integer'),
        ('{"type":"feedback","kind":"like","segment_id":true}', '"segment_id" must be a non-negative integer'),
        (json.dumps({"type": "steer", "text": "x" * 5000}), "too large"),
        (b"{" + b" " * 5000 + b"}", "too large"),
    ],
)
def test_invalid_messages(raw: str | bytes, problem: str) -> None:
    with pytest.raises(InvalidMessage) as excinfo:
        parse_control_message(raw)
    assert problem in str(excinfo.value)


def test_dict_input_with_nan_is_rejected() -> None:
    with pytest.raises(InvalidMessage, match="finite"):
        parse_control_message({"type": "feedback", "kind": "dwell", "seconds": float("nan")})


def test_messages_are_frozen() -> None:
    steer = Steer("x")
    with pytest.raises(AttributeError):
        steer.text = "y"  # type: ignore[misc]
