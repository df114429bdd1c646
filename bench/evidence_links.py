"""Evidence link tokens: CPU time per mint and per check, next to Ed25519 over the same payload.

The reference is what the design rejected: signing links with the witness's Ed25519 key
(docs/evidence.md, "Why HMAC"). Figures are process CPU time per operation (``time.process_time``),
the best of ``--repeats`` runs of ``--rounds`` operations, so another process on the machine
inflates them less than wall time would.

* ``mint``           LinkSigner.mint (encode + HMAC-SHA256 + base64url)
* ``verify ok``      LinkSigner.verify of a good token
* ``verify forged``  LinkSigner.verify of a token with a flipped byte (refused at the tag)
* ``ed25519 sign`` / ``ed25519 verify``  cryptography's Ed25519 over the same payload bytes

Usage: python bench/evidence_links.py [--rounds 20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ifescalate.evidence.links import LinkBadSignature, LinkSigner

NOW = 1_800_000_000.0


def per_op(fn: Callable[[], object], rounds: int, repeats: int) -> float:
    """Best CPU microseconds per call over ``repeats`` runs."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(rounds):
            fn()
        best = min(best, time.process_time() - start)
    return best / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    signer = LinkSigner(bytes(32))
    sha = hashlib.sha256(b"evidence").hexdigest()
    esc = "0123456789abcdef0123456789abcdef"
    token, _ = signer.mint(escalation_id=esc, evidence_id=sha, now=NOW, expert_id="carol")
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[20] ^= 1
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    payload = bytes(raw[:-32])
    key = Ed25519PrivateKey.generate()
    signature = key.sign(payload)
    public = key.public_key()

    def refuse() -> None:
        try:
            signer.verify(forged, now=NOW)
        except LinkBadSignature:
            return
        raise AssertionError("a forged token verified")

    n, r = args.rounds, args.repeats
    rows = [
        ("mint", per_op(lambda: signer.mint(escalation_id=esc, evidence_id=sha, now=NOW), n, r)),
        ("verify ok", per_op(lambda: signer.verify(token, now=NOW), n, r)),
        ("verify forged", per_op(refuse, n, r)),
        ("ed25519 sign", per_op(lambda: key.sign(payload), n, r)),
        ("ed25519 verify", per_op(lambda: public.verify(signature, payload), n, r)),
    ]
    print(f"token {len(token)} characters; ed25519 token would be {len(token) + 43} characters")
    for name, us in rows:
        print(f"{name:15s} {us:8.2f} us/op CPU")
    verify = dict(rows)
    print(
        f"ed25519 verify / HMAC verify ok = {verify['ed25519 verify'] / verify['verify ok']:.1f}x; "
        f"ed25519 verify / HMAC refuse forged = "
        f"{verify['ed25519 verify'] / verify['verify forged']:.1f}x"
    )


if __name__ == "__main__":
    main()
