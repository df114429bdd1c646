# ifescalate service image (deploy/compose, deploy/k8s). Build from the repository root:
#   docker build -t ifescalate:dev .
# Debian 12 + Python 3.11, like the development machines (PEERS.md: av < 19 needs Python < 3.12 there).
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
# ca-certificates: verifying experts' TLS (sip.tls_ca). libsodium comes inside the PyNaCl wheel.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/ifescalate ifescalate \
 && install -d -o ifescalate -g ifescalate -m 0700 /var/lib/ifescalate
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY deploy/docker/entrypoint.sh /usr/local/bin/ifescalate-entrypoint
COPY deploy/docker/probe.py /usr/local/lib/ifescalate/probe.py
COPY deploy/config/ifescalate.yaml /etc/ifescalate/ifescalate.yaml
USER 10001
# SIP over TLS (only the edge connects), the HTTP API (/health /ready /metrics), RTP/RTCP (media.port_*).
EXPOSE 5061/tcp 8080/tcp 40000-40199/udp
HEALTHCHECK --interval=15s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2)"
ENTRYPOINT ["/usr/local/bin/ifescalate-entrypoint"]
