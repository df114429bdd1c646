"""RTP and RTCP on one port (RFC 5761 §4): which of the two a datagram is, from its second octet.

RTCP packet types 192-223 (SR 200, RR 201, SDES 202, BYE 203, APP 204, the feedback types 205/206)
occupy the octet where RTP has its marker bit and payload type. RTP payload types 64-95 would land
in the same range (with or without the marker bit), so RFC 5761 §4 forbids them on a multiplexed
stream, and an octet in 192-223 is then always RTCP. SRTCP keeps that octet in the clear (RFC 3711
§3.4), so the rule applies before unprotecting.
"""

from __future__ import annotations

__all__ = ["is_rtcp"]


def is_rtcp(data: bytes) -> bool:
    """True when a datagram on a multiplexed port is RTCP (second octet 192-223), else RTP."""
    return len(data) >= 2 and 192 <= data[1] <= 223
