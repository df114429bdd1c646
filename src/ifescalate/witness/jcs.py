"""RFC 8785 JSON Canonicalization Scheme (JCS) for the JSON subset the witness writes.

Pure: no IO, no clock. Supported values: ``dict`` with ``str`` keys, ``list``/``tuple``, ``str``,
``int`` within the I-JSON range, finite ``float``, ``bool`` and ``None``. Anything else raises
:class:`CanonicalizationError` naming the path of the offending value, so a caller learns *which*
detail field it cannot log rather than getting a bare TypeError.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import TypeAlias

JsonValue: TypeAlias = (
    bool | int | float | str | Sequence["JsonValue"] | Mapping[str, "JsonValue"] | None
)

# RFC 7493 §2.2 (I-JSON): integers outside ±(2**53 - 1) cannot be represented exactly by an
# IEEE 754 double, so an ECMAScript verifier would read a different number than we hashed.
MAX_SAFE_INTEGER = 2**53 - 1

# RFC 8785 §3.2.2.2: only '"', '\\' and U+0000..U+001F are escaped; everything else, including
# U+007F and non-ASCII, is written as itself (UTF-8 on the wire).
_NEEDS_ESCAPE = re.compile(r'[\x00-\x1f"\\]')
_SHORT_ESCAPES = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}
_ESCAPE_TABLE: dict[int, str] = {cp: f"\\u{cp:04x}" for cp in range(0x20)}
_ESCAPE_TABLE.update(_SHORT_ESCAPES)
_ESCAPE_TABLE[ord('"')] = '\\"'
_ESCAPE_TABLE[ord("\\")] = "\\\\"
# RFC 8785 §3.1 requires I-JSON input: lone surrogates are not valid Unicode and cannot be UTF-8.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class CanonicalizationError(ValueError):
    """The value is outside the JSON subset RFC 8785 can canonicalize (or we support)."""


def canonicalize(value: object) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of ``value``."""
    parts: list[str] = []
    _write(value, parts, "$")
    return "".join(parts).encode("utf-8")


def canonical_str(value: object) -> str:
    """The RFC 8785 canonical text of ``value`` (before UTF-8 encoding)."""
    parts: list[str] = []
    _write(value, parts, "$")
    return "".join(parts)


def _write(value: object, out: list[str], path: str) -> None:
    # bool before int: bool is a subclass of int in Python.
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(quote(value, path))
    elif isinstance(value, int):
        out.append(_integer(value, path))
    elif isinstance(value, float):
        out.append(es_number(value, path))
    elif isinstance(value, Mapping):
        _write_object(value, out, path)
    elif isinstance(value, list | tuple):
        _write_array(value, out, path)
    else:
        raise CanonicalizationError(f"{path}: {type(value).__name__} is not a JSON value")


def _write_object(value: Mapping[object, object], out: list[str], path: str) -> None:
    keys: list[str] = []
    for key in value:
        if not isinstance(key, str):
            raise CanonicalizationError(f"{path}: object key {key!r} is not a string")
        keys.append(key)
    # RFC 8785 §3.2.3: members sorted by the UTF-16 code units of their names; big-endian UTF-16
    # bytes compare exactly like the code-unit sequences (surrogates sort below U+E000..U+FFFF).
    keys.sort(key=_utf16_key)
    out.append("{")
    for index, key in enumerate(keys):
        if index:
            out.append(",")
        out.append(quote(key, path))
        out.append(":")
        _write(value[key], out, f"{path}.{key}")
    out.append("}")


def _write_array(value: Sequence[object], out: list[str], path: str) -> None:
    out.append("[")
    for index, item in enumerate(value):
        if index:
            out.append(",")
        _write(item, out, f"{path}[{index}]")
    out.append("]")


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def quote(text: str, path: str = "$") -> str:
    """``text`` as an RFC 8785 §3.2.2.2 JSON string literal."""
    if not text.isascii() and _SURROGATE.search(text):
        raise CanonicalizationError(f"{path}: string contains a lone surrogate (not I-JSON)")
    if _NEEDS_ESCAPE.search(text) is None:
        return f'"{text}"'
    return '"' + text.translate(_ESCAPE_TABLE) + '"'


def _integer(value: int, path: str) -> str:
    if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return str(value)
    raise CanonicalizationError(
        f"{path}: integer {value} is outside the I-JSON range ±(2**53-1) (RFC 7493 §2.2)"
    )


def es_number(value: float, path: str = "$") -> str:
    """ECMAScript Number::toString of a double (ECMA-262 §7.1.12.1), as RFC 8785 §3.2.2.3 asks."""
    if not math.isfinite(value):
        raise CanonicalizationError(f"{path}: {value!r} is not a JSON number (RFC 8785 §3.2.2.3)")
    if value == 0:
        return "0"  # also -0: ECMAScript prints both as "0"
    sign = "-" if value < 0 else ""
    digits, exponent = _shortest_digits(abs(value))
    return sign + _es_layout(digits, exponent)


def _shortest_digits(value: float) -> tuple[str, int]:
    """(s, q) with value == int(s) * 10**q, s the shortest round-tripping digit string.

    Python's repr is David Gay's shortest round-trip conversion, picking the closest (then even)
    candidate: the same digit string ECMA-262 asks for.
    """
    mantissa, _, exp_text = repr(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    exponent = (int(exp_text) if exp_text else 0) - len(fraction)
    stripped = digits.rstrip("0")
    return stripped, exponent + len(digits) - len(stripped)


def _es_layout(s: str, q: int) -> str:
    k = len(s)
    n = k + q  # ECMA-262: value = 0.s * 10**n
    if k <= n <= 21:
        return s + "0" * (n - k)
    if 0 < n <= 21:
        return s[:n] + "." + s[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + s
    e = n - 1
    exp = f"e{'+' if e >= 0 else '-'}{abs(e)}"
    return s + exp if k == 1 else f"{s[0]}.{s[1:]}{exp}"
