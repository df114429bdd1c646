#!/bin/sh
# Container entrypoint for ifescalate (deploy/compose, deploy/k8s).
#
# Before `serve`, it puts the shared secrets where the service expects them, mode 0600 (the service
# refuses a key readable by others), so every instance signs one witness chain with one key and opens
# every evidence link:
#   $SECRETS_DIR/witness-key/witness_ed25519.pem  -> $DATA_DIR/witness_ed25519.pem
#   $SECRETS_DIR/evidence-key/evidence_link.key   -> $DATA_DIR/evidence_link.key
# and imports the API tokens listed in IFESCALATE_TOKEN_IMPORTS ("principal:scope:file ...", e.g.
# "monitoring:auditor:/run/secrets/api-tokens/monitoring") with `ifescalate tokens import`, so one
# secret works on every instance (Prometheus, probes, council agents). Missing secrets are skipped: the
# service then makes its own on first start, which is right for one instance only.
set -eu

DATA_DIR=${IFESCALATE_DATA_DIR:-/var/lib/ifescalate}
SECRETS_DIR=${IFESCALATE_SECRETS_DIR:-/run/secrets}
CONFIG=${IFESCALATE_CONFIG:-/etc/ifescalate/ifescalate.yaml}
API=${IFESCALATE_API:-0.0.0.0:8080}

# The database URL holds a password: take it from a file (a secret) when one is named.
if [ -n "${IFESCALATE_DATABASE_URL_FILE:-}" ]; then
  IFESCALATE_DATABASE_URL=$(cat "$IFESCALATE_DATABASE_URL_FILE")
  export IFESCALATE_DATABASE_URL
fi

mkdir -p "$DATA_DIR"
chmod 0700 "$DATA_DIR"

install_secret() { # SOURCE TARGET
  if [ -f "$1" ]; then
    if [ -f "$2" ] && ! cmp -s "$1" "$2"; then
      echo "entrypoint: replacing $2 with $1 (key rotation)" >&2
    fi
    install -m 0600 "$1" "$2"
  fi
}
install_secret "$SECRETS_DIR/witness-key/witness_ed25519.pem" "$DATA_DIR/witness_ed25519.pem"
install_secret "$SECRETS_DIR/evidence-key/evidence_link.key" "$DATA_DIR/evidence_link.key"

for item in ${IFESCALATE_TOKEN_IMPORTS:-}; do
  principal=${item%%:*}
  rest=${item#*:}
  scope=${rest%%:*}
  file=${rest#*:}
  ifescalate tokens --data-dir "$DATA_DIR" import "$principal" --scope "$scope" --token-file "$file"
done

exec ifescalate serve --config "$CONFIG" --data-dir "$DATA_DIR" --api "$API" "$@"
