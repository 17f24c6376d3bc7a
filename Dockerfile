# syntax=docker/dockerfile:1
# h4backup: one image for every role.
#   docker run IMAGE api | worker | beat | user add NAME [--admin]
#   Flower: --entrypoint h4-entrypoint IMAGE celery --app worker.app flower --port=5555
# See docker-compose.yml for the whole service: Redis, the API, workers, beat and Flower.

ARG PYTHON_IMAGE=python:3.12-slim

# --- build: the package and its locked dependencies in a virtual environment ------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/h4backup
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY api ./api
COPY cli ./cli
COPY common ./common
COPY worker ./worker
# The versions in constraints.txt, the lock every test ran with. Flower is the monitoring UI.
RUN /opt/h4backup/bin/pip install -c constraints.txt . flower \
 && /opt/h4backup/bin/pip check

# --- run: no compiler, no source tree, a user without privileges -----------------------------
FROM ${PYTHON_IMAGE}
ARG H4_UID=10046
RUN groupadd --system --gid "${H4_UID}" h4backup \
 && useradd --system --uid "${H4_UID}" --gid h4backup --home-dir /var/lib/h4backup \
      --no-create-home --shell /usr/sbin/nologin h4backup \
 && install -d -o h4backup -g h4backup -m 0700 /var/lib/h4backup /backups /restores
COPY --from=build /opt/h4backup /opt/h4backup
COPY --chmod=0755 docker/entrypoint.py /usr/local/bin/h4-entrypoint
COPY --chmod=0755 docker/healthcheck.py /usr/local/bin/h4-healthcheck

ENV PATH=/opt/h4backup/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/var/lib/h4backup \
    H4_DATA_DIR=/var/lib/h4backup \
    H4_BACKUP_DIR=/backups \
    H4_RESTORE_DIR=/restores \
    H4_HOST=0.0.0.0 \
    H4_PORT=8046

USER h4backup
WORKDIR /var/lib/h4backup
VOLUME ["/var/lib/h4backup", "/backups", "/restores"]
# 8046: the API (vCDA's port). 5555: Flower, when the image runs it.
EXPOSE 8046 5555

# Role-aware: the API answers GET /health, a worker a Celery ping, beat keeps its schedule
# written, Flower answers /healthcheck (see docker/healthcheck.py).
HEALTHCHECK --interval=30s --timeout=15s --start-period=40s --retries=3 \
    CMD ["h4-entrypoint", "h4-healthcheck"]

# h4-entrypoint turns the Redis password secret into H4_REDIS_URL, then runs h4backup.
ENTRYPOINT ["h4-entrypoint", "h4backup"]
CMD ["api"]
