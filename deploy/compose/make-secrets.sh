#!/bin/sh
# Makes everything deploy/compose/docker-compose.yml reads from ./secrets: the witness signing key and the
# evidence link key shared by every instance, API tokens (imported into every instance at start), an
# internal CA with certificates for the instances and the edge, and passwords. Existing files are kept
# (re-running never rotates a key by accident; docs/runbook.md, "Key rotation", says how to rotate).
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
cd secrets

[ -f witness_ed25519.pem ] || openssl genpkey -algorithm ed25519 -out witness_ed25519.pem
[ -f evidence_link.key ] || head -c 32 /dev/urandom > evidence_link.key
[ -f postgres-password ] || openssl rand -hex 24 > postgres-password
[ -f database-url ] || printf 'postgresql://ifescalate:%s@postgres:5432/ifescalate\n' "$(cat postgres-password)" > database-url
[ -f grafana-admin-password ] || openssl rand -hex 16 > grafana-admin-password

# API tokens in ifescalate's own format, made by ifescalate itself in a throwaway data dir.
scratch=$(mktemp -d)
for name in monitoring council; do
  if [ ! -f "$name-token" ]; then
    scope=auditor
    [ "$name" = council ] && scope=council
    ifescalate tokens --data-dir "$scratch" create "$name" --scope "$scope" > "$name-token"
  fi
done
rm -rf "$scratch"

if [ ! -f ca.crt ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
    -subj "/CN=ifescalate internal CA" -keyout ca.key -out ca.crt
fi
issue() { # NAME SUBJECT_ALT_NAMES
  [ -f "$1.crt" ] && return
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
    -keyout "$1.key" -out "$1.csr"
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$2" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 397 \
    -extfile "$1.ext" -out "$1.crt"
  rm -f "$1.csr" "$1.ext"
}
issue instance "DNS:ifescalate-1,DNS:ifescalate-2,DNS:localhost"
issue edge "DNS:${EDGE_ADDRESS:-localhost},DNS:kamailio"
# The containers run as uid 10001 (ifescalate) and root (kamailio): make the files readable to them.
chmod 0644 ./*
echo "secrets ready in $(pwd)"
