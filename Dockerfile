# OpenDispatch: `opendispatch serve` on 0.0.0.0:8080 as a non-root user, the SQLite database
# (with its -wal, -shm and .lock files) in the /data volume. For PostgreSQL, set
# OPENDISPATCH_DATABASE=postgresql://... (compose.yaml runs two servers on one database).
# Without a Docker engine, tests/acceptance/test_container.py runs this file's command line,
# environment, user and health check as they are written here (see README, "Container").

FROM python:3.11-slim AS build
# Every dependency has a manylinux wheel for Python 3.11: no compiler in either stage.
RUN python -m venv /opt/opendispatch
COPY pyproject.toml README.md /src/
COPY src /src/src
RUN /opt/opendispatch/bin/pip install --no-cache-dir /src

FROM python:3.11-slim
COPY --from=build /opt/opendispatch /opt/opendispatch
# A fixed numeric uid: orchestrators that check "runAsNonRoot" can see it is not root, and a
# host directory mounted at /data can be given to it (chown 10001:10001 DIR).
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin opendispatch \
    && install --directory --owner=10001 --group=10001 --mode=0750 /data
ENV PATH=/opt/opendispatch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    OPENDISPATCH_HOST=0.0.0.0 \
    OPENDISPATCH_PORT=8080 \
    OPENDISPATCH_DATABASE=sqlite:////data/opendispatch.db
WORKDIR /data
VOLUME /data
USER 10001:10001
EXPOSE 8080
# No curl in the slim image: Python asks /health (200 once ready; 503 while starting, stopping,
# or once the SQLite file is lost), on the port the server was given.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('OPENDISPATCH_PORT', '8080'), timeout=4)"]
# SIGTERM (docker stop) lets requests and sends in flight finish. Any other command runs in
# place of `serve`: `docker run --rm -v DATA:/data IMAGE apps create ...`.
ENTRYPOINT ["opendispatch"]
CMD ["serve"]
