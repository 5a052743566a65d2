# The tierproof gateway (also the simulators' image: `tierproof simulate`).
#   docker build -t tierproof .
#   docker run -v $PWD/plant.yaml:/etc/tierproof/gateway.yaml:ro -p 8000:8000 tierproof
# docker-compose.yml runs it with deploy/gateway.yaml; see README "Running with Docker".
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# sources only (.dockerignore keeps tests, data and the virtualenv out)
COPY pyproject.toml README.md ./
COPY config ./config
COPY collector ./collector
COPY store ./store
COPY kpi ./kpi
COPY api ./api
COPY simulators ./simulators
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /var/lib/tierproof --shell /usr/sbin/nologin tierproof \
    && mkdir -p /var/lib/tierproof /etc/tierproof \
    && chown tierproof:tierproof /var/lib/tierproof

# the spool, the metadata file (tag ids, gaps) and the embedded store live here: a volume,
# so that spooled batches survive a container restart
VOLUME /var/lib/tierproof
WORKDIR /var/lib/tierproof
USER tierproof
EXPOSE 8000

# alive = /api/v1/health answers, 200 (ok) or 503 (degraded: e.g. InfluxDB down while the
# gateway keeps spooling, which a restart cannot fix); see api/healthcheck.py and docs/api.md
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "api.healthcheck", "http://127.0.0.1:8000/api/v1/health"]

ENTRYPOINT ["tierproof"]
CMD ["run", "--config", "/etc/tierproof/gateway.yaml"]
