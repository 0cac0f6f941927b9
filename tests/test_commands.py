"""``convlens.commands``: the helpers behind the commands (explain text and check, argument
parsers, kernel details), tested without click."""

from __future__ import annotations

import json

import pytest

from convlens.commands import ExplainArgs, explain_text, kernel_details, parse_ints, parse_padding
from convlens.errors import ConvlensError


def test_explain_text_and_check():
    text, ok = explain_text(
        ExplainArgs(
            "1 2 3; 4 5 6; 7 8 9", "9 8 7 6; 5 4 3 2; 1 2 3 4; 5 6 7 8", expect="146 157; 200 233"
        )
    )
    assert not ok and "cell (0, 0): expected 146, actual 154" in text
    text, ok = explain_text(ExplainArgs("1 0; 0 1", "1 2; 3 4", fmt="json"))
    assert ok and json.loads(text)["output"] == [[5]]


def test_argument_parsers():
    assert parse_ints("2", "stride") == 2 and parse_ints("2x1", "stride") == (2, 1)
    assert parse_padding("SAME") == "same" and parse_padding("1,2") == (1, 2)
    with pytest.raises(ConvlensError, match="padding must be valid, same, full"):
        parse_padding("lots")
    with pytest.raises(ConvlensError, match="stride is empty"):
        parse_ints(" ", "stride")
    assert kernel_details("sobel_x").startswith("sobel_x (3x3")
