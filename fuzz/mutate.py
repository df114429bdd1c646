"""Mutations aimed at text protocols: bytes, lines, headers, CRLF games and length lies.

Every mutation takes the input and a ``random.Random`` and returns new bytes; the same seed and
input give the same output, so a run can be replayed with its seed.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

MAX_INPUT = 70_000  # a little over the 65,535-byte message limit, so the limit paths run too

# fmt: off
# Bytes and tokens that sit on grammar boundaries of SIP, URIs, digest and SDP.
TOKENS: tuple[bytes, ...] = (
    b"\r\n", b"\n", b"\r", b"\r\n ", b"\r\n\t", b"\r\n\r\n", b" ", b"\t", b"\x00", b"\x7f",
    b"\xff", b"\xc3\xa9", b"\xe2\x80\xa8", b"\xf0\x9f\x98\x80", b"\xed\xa0\x80", b"\xc0\xaf",
    b";", b",", b":", b"=", b"@", b"<", b">", b'"', b"\\", b'\\"', b"%", b"%00", b"%zz", b"%4",
    b"[", b"]", b"[::1]", b"[2001:db8::1]:5060", b"?", b"&", b"/", b"*", b"+", b"-", b".",
    b";branch=z9hG4bK", b";tag=", b";rport", b";received=", b";maddr=", b";transport=tcp",
    b";lr", b";q=0.5", b";expires=", b"sip:", b"sips:", b"tel:", b"SIP/2.0", b"SIP/2.0/UDP ",
    b"Digest ", b'realm=""', b'nonce="', b"nc=", b"qop=auth", b"algorithm=SHA-256",
    b"algorithm=MD5-sess", b"a=rtpmap:", b"a=crypto:", b"a=fmtp:", b"m=audio ", b"c=IN IP6 ",
    b"0", b"-1", b"4294967296", b"99999999999999999999", b"65536", b"1e9", b"0x10", b"\xd9\xa3",
    b"\xef\xbc\x91",  # a fullwidth digit and an Arabic-Indic digit: str.isdigit() is True for both
)

HEADER_NAMES: tuple[bytes, ...] = (
    b"Via", b"v", b"From", b"f", b"To", b"t", b"Call-ID", b"i", b"CSeq", b"Contact", b"m",
    b"Content-Length", b"l", b"Content-Type", b"c", b"Max-Forwards", b"Expires", b"Require",
    b"Proxy-Require", b"Supported", b"k", b"Authorization", b"Proxy-Authorization",
    b"WWW-Authenticate", b"Route", b"Record-Route", b"Accept", b"Content-Encoding", b"e",
    b"Unsupported", b"Min-Expires", b"Date", b"Allow", b"X-IF-Trace-ID",
)

INTERESTING_NUMBERS: tuple[bytes, ...] = (
    b"0", b"1", b"-1", b"+1", b"007", b"70", b"255", b"256", b"65535", b"65536", b"2147483647",
    b"2147483648", b"4294967295", b"4294967296", b"18446744073709551616", b"9" * 40, b"1.5",
    b" 5", b"5 ", b"\xd9\xa3", b"\xef\xbc\x91", b"\xc2\xb2", b"1_000", b"",
)

# fmt: on

_CONTENT_LENGTH_RE = re.compile(rb"(?im)^(content-length|l)[ \t]*:[ \t]*([^\r\n]*)")
_NUMBER_RE = re.compile(rb"\d+")

Mutation = Callable[[bytes, random.Random, Sequence[bytes]], bytes]


def _pos(data: bytes, rng: random.Random) -> int:
    return rng.randint(0, len(data))


def flip_bit(data: bytes, rng: random.Random, _: Sequence[bytes]) -> bytes:
    if not data:
        return bytes([rng.randrange(256)])
    i = rng.randrange(len(data))
    return data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1 :]


def set_byte(data: bytes, rng: random.Random, _: Sequence[bytes]) -> bytes:
    if not data:
        return bytes([rng.randrange(256)])
    i = rng.randrange(len(data))
    value = rng.choice(
        (0, 9, 10, 13, 32, 34, 44, 58, 59, 60, 62, 127, 128, 255, rng.randrange(256))
    )
    return data[:i] + bytes([value]) + data[i + 1 :]


def insert_token(data: bytes, rng: random.Random, _: Sequence[bytes]) -> bytes:
    i = _pos(data, rng)
    return data[:i] + rng.choice(TOKENS) + data[i:]


def delete_range(data: bytes, rng: random.Random, _: Sequence[bytes]) -> bytes:
    if not data:
        return data
    i = rng.randrange(len(data))
    return data[:i] + data[i + rng.randint(1, min(64, len(data) - i)) :]


def duplicate_range(data: bytes, rng: random.Random, _: Sequence[bytes]) -> bytes:
    if not data:
        return data
    i = rng.randrange(len(data))
    chunk = data[i : i + rng.randint(1, 64)]
    j = _pos(data, rng)
    return data[:j] + chunk + data[j:]


def truncate(data: bytes, rng: random.Random, _: Sequence[bytes]) -> bytes:
    return data[: _pos(data, rng)]


def huge_value(data: bytes, rng: random.Random, _: Sequence[bytes]) -> bytes:
    """Repeat a short piece until it is very long: long tokens, many params, deep nesting."""
    if not data:
        return b"A" * rng.choice((1000, 70_000))
    i = rng.randrange(len(data))
    chunk = data[i : i + rng.randint(1, 8)] or b"A"
    count = rng.choice((100, 1000, 10_000, 60_000)) // len(chunk)
    return data[:i] + chunk * count + data[i:]


def splice(data: bytes, rng: random.Random, pool: Sequence[bytes]) -> bytes:
    """The head of this input with the tail of another."""
    other = rng.choice(pool) if pool else data
    return data[: _pos(data, rng)] + other[_pos(other, rng) :]


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n")


def splice_line(data: bytes, rng: random.Random, pool: Sequence[bytes]) -> bytes:
    """Insert a line (a header, most of the time) from another seed."""
    lines = _lines(data)
    donor = _lines(rng.choice(pool)) if pool else lines
    lines.insert(rng.randint(min(1, len(lines)), len(lines)), rng.choice(donor))
    return b"\r\n".join(lines)


def duplicate_line(data: bytes, rng: random.Random, _: Sequence[bytes]) -> bytes:
    lines = _lines(data)
    i = rng.randrange(len(lines))
    lines.insert(rng.randint(0, len(lines)), lines[i])
    return b"\r\n".join(lines)


def delete_line(data: bytes, rng: random.Random, _: Sequence[bytes]) -> bytes:
    lines = _lines(data)
    del lines[rng.randrange(len(lines))]
    return b"\r\n".join(lines)


def swap_lines(data: bytes, rng: random.Random, _: Sequence[bytes]) -> bytes:
    lines = _lines(data)
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return b"\r\n".join(lines)


def new_header(data: bytes, rng: random.Random, _: Sequence[bytes]) -> bytes:
    """An extra header, often a duplicate of a single-valued one, with an odd value."""
    lines = _lines(data)
    value = rng.choice((*TOKENS, *INTERESTING_NUMBERS, b"<sip:x@y>;tag=1", b"a, b, ,c"))
    sep = rng.choice((b": ", b":", b" : ", b"\t:\t", b":\r\n "))
    header = rng.choice(HEADER_NAMES) + sep + value
    lines.insert(rng.randint(min(1, len(lines)), len(lines)), header)
    return b"\r\n".join(lines)


def crlf_game(data: bytes, rng: random.Random, _: Sequence[bytes]) -> bytes:
    """Bare LF or CR line ends, folding, a stray blank line, doubled CRLF."""
    choice = rng.randrange(6)
    if choice == 0:
        return data.replace(b"\r\n", b"\n")
    if choice == 1:
        return data.replace(b"\r\n", b"\r")
    if choice == 2:
        return data.replace(b"\r\n", b"\r\n ", 1 + rng.randrange(4))
    if choice == 3:
        return b"\r\n" * rng.randint(1, 3) + data
    i = data.find(b"\r\n", _pos(data, rng))
    if i < 0:
        return data + b"\r\n"
    insert = b"\r\n" if choice == 4 else rng.choice((b"\r\n\t", b"\n ", b"\r\r\n", b"\r\n\r\n"))
    return data[:i] + insert + data[i:]


def content_length_lie(data: bytes, rng: random.Random, _: Sequence[bytes]) -> bytes:
    """Rewrite Content-Length to a wrong, odd or absurd value (or drop it)."""
    match = _CONTENT_LENGTH_RE.search(data)
    if match is None:
        return new_header(data, rng, ())
    if rng.randrange(8) == 0:
        return data[: match.start()] + data[match.end() :]
    value = rng.choice(INTERESTING_NUMBERS)
    if rng.randrange(2) == 0:
        body = len(data.partition(b"\r\n\r\n")[2])
        value = str(max(0, body + rng.randint(-3, 3))).encode()
    return data[: match.start(2)] + value + data[match.end(2) :]


def number_change(data: bytes, rng: random.Random, _: Sequence[bytes]) -> bytes:
    """Replace one decimal number (port, CSeq, Max-Forwards, status, ...) with an odd one."""
    numbers = list(_NUMBER_RE.finditer(data))
    if not numbers:
        return insert_token(data, rng, ())
    match = rng.choice(numbers)
    return data[: match.start()] + rng.choice(INTERESTING_NUMBERS) + data[match.end() :]


def case_change(data: bytes, rng: random.Random, _: Sequence[bytes]) -> bytes:
    if not data:
        return data
    i = rng.randrange(len(data))
    j = i + rng.randint(1, 32)
    return data[:i] + data[i:j].swapcase() + data[j:]


# fmt: off
MUTATIONS: tuple[Mutation, ...] = (
    flip_bit, set_byte, insert_token, insert_token, delete_range, duplicate_range, truncate,
    huge_value, splice, splice_line, duplicate_line, delete_line, swap_lines, new_header,
    crlf_game, content_length_lie, number_change, number_change, case_change,
)
# fmt: on


def mutate(data: bytes, rng: random.Random, pool: Sequence[bytes]) -> bytes:
    """Apply one to four stacked mutations; the result never exceeds MAX_INPUT bytes."""
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
        data = rng.choice(MUTATIONS)(data, rng, pool)
        if len(data) > MAX_INPUT:
            data = data[:MAX_INPUT]
    return data
