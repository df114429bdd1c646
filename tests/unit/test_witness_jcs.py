"""RFC 8785 canonicalization: the RFC's own examples (§3.2.2.2, §3.2.3, §3.2.4, Appendix B)."""

from __future__ import annotations

import json
import struct
from collections import OrderedDict

import pytest

from ifescalate.witness.jcs import CanonicalizationError, canonical_str, canonicalize, es_number


def _double(bits: str) -> float:
    value: float = struct.unpack(">d", bytes.fromhex(bits))[0]
    return value


# RFC 8785 Appendix B: IEEE 754 bit patterns and their ECMAScript serialization.
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),  # minus zero
    ("0000000000000001", "5e-324"),  # min pos number
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),  # max pos number
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),  # max pos int
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),  # ~2**68
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),  # round to even
]


@pytest.mark.parametrize(("bits", "expected"), APPENDIX_B)
def test_appendix_b_numbers(bits: str, expected: str) -> None:
    assert es_number(_double(bits)) == expected
    assert canonicalize([_double(bits)]) == f"[{expected}]".encode()


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_appendix_b_nan_and_infinity_are_errors(bits: str) -> None:
    with pytest.raises(CanonicalizationError, match="not a JSON number"):
        canonicalize({"x": _double(bits)})


def test_section_3_2_4_whole_example() -> None:
    # RFC 8785 §3.2.2 input, parsed the way any JSON parser would, then canonicalized.
    text = r"""{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }"""
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical_str(json.loads(text)) == expected
    # §3.2.4 gives the UTF-8 bytes: the euro sign is e2 82 ac, everything else is ASCII.
    data = canonicalize(json.loads(text))
    assert data == expected.encode("utf-8")
    assert data[92:98] == bytes.fromhex("e282ac245c75")


def test_section_3_2_3_sorting_by_utf16_code_units() -> None:
    text = r"""{
      "\u20ac": "Euro Sign",
      "\r": "Carriage Return",
      "\ufb33": "Hebrew Letter Dalet With Dagesh",
      "1": "One",
      "\ud83d\ude00": "Emoji: Grinning Face",
      "\u0080": "Control",
      "\u00f6": "Latin Small Letter O With Diaeresis"
    }"""
    order = list(json.loads(canonical_str(json.loads(text))).values())
    assert order == [
        "Carriage Return",
        "One",
        "Control",
        "Latin Small Letter O With Diaeresis",
        "Euro Sign",
        "Emoji: Grinning Face",  # U+1F600 is D83D DE00 in UTF-16: below U+FB33
        "Hebrew Letter Dalet With Dagesh",
    ]


def test_utf16_order_differs_from_code_point_order() -> None:
    # Code point order would put U+E000 first; UTF-16 puts the surrogate pair (D800..) first.
    assert canonical_str({"\ue000": 1, "\U00010000": 2}) == '{"\U00010000":2,"\ue000":1}'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\b\t\n\f\r", '"\\b\\t\\n\\f\\r"'),
        ("\x00\x01\x1f", '"\\u0000\\u0001\\u001f"'),  # lowercase hex (§3.2.2.2)
        ('"\\', '"\\"\\\\"'),
        ("\x7f/é€😀", '"\x7f/é€😀"'),  # DEL, solidus and non-ASCII as themselves
        ("plain", '"plain"'),
    ],
)
def test_string_escaping(text: str, expected: str) -> None:
    assert canonical_str(text) == expected


def test_nested_objects_sorted_recursively_arrays_keep_order() -> None:
    value = OrderedDict([("z", {"b": [3, 1, 2], "a": None}), ("a", True)])
    assert canonicalize(value) == b'{"a":true,"z":{"a":null,"b":[3,1,2]}}'


def test_integers_and_integral_floats() -> None:
    assert canonical_str([0, -1, 42, 2**53 - 1, -(2**53 - 1), 1.0, -0.0, 100.0]) == (
        "[0,-1,42,9007199254740991,-9007199254740991,1,0,100]"
    )


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (2**53, "outside the I-JSON range"),
        ({"k": [1, {"deep": b"bytes"}]}, r"\$\.k\[1\]\.deep: bytes is not a JSON value"),
        ({1: "x"}, "object key 1 is not a string"),
        ("\ud800", "lone surrogate"),
        ({"\udfff": 1}, "lone surrogate"),
        (float("nan"), "not a JSON number"),
    ],
)
def test_rejects_values_outside_the_subset(value: object, match: str) -> None:
    with pytest.raises(CanonicalizationError, match=match):
        canonicalize(value)


def test_bool_is_not_an_integer() -> None:
    assert canonicalize([True, False, 1, 0]) == b"[true,false,1,0]"
