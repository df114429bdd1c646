"""Evidence: content-addressed items attached to escalations and signed, short-lived links to them
(ARCHITECTURE.md step 5). ``links`` (token core), ``access`` (escalation state), ``store`` (blobs
and index), ``keyfile`` (the HMAC key), ``service`` (the witnessed operations)."""
