"""Kubernetes readiness probe: GET /ready with the token in IFESCALATE_PROBE_TOKEN_FILE.

/ready needs a bearer token (any scope), and an httpGet probe cannot read one from a Secret, so the
probe is this exec. Exit 0 only on 200 {"status": "ready"}; otherwise print the failing checks.
"""

import json
import os
import sys
import urllib.error
import urllib.request

url = os.environ.get("IFESCALATE_PROBE_URL", "http://127.0.0.1:8080/ready")
token_file = os.environ.get("IFESCALATE_PROBE_TOKEN_FILE", "/run/secrets/api-tokens/monitoring")
with open(token_file, encoding="ascii") as handle:
    token = handle.read().strip()
request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
try:
    with urllib.request.urlopen(request, timeout=3) as response:
        body = json.loads(response.read())
except urllib.error.HTTPError as exc:
    print(f"/ready {exc.code}: {exc.read().decode(errors='replace')}")
    sys.exit(1)
except OSError as exc:
    print(f"/ready unreachable: {exc}")
    sys.exit(1)
sys.exit(0 if body.get("status") == "ready" else 1)
