# The monitor service image: CPU only, no torch (the trainer client's torch parts are not used here).
#
#   docker build -t training-health-monitor .
#   docker run -p 8765:8765 -e MONITOR_API_TOKEN=... -v monitor-data:/data training-health-monitor
#
# Alone it serves from SQLite in /data; docker-compose.yml points it at PostgreSQL instead.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
COPY . .
# Editable: migrations/ and alembic.ini live next to the package (monitor.store.migrate finds
# them from the package's own path), so the code must run from this source tree.
RUN pip install --editable ".[server]" \
 && python -c "import monitor.app, monitor.store.migrate; print('import ok')"

FROM python:${PYTHON_VERSION}-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MONITOR_DATABASE_URL=sqlite:////data/monitor.db \
    MONITOR_LOG_JSON=true
RUN groupadd --system --gid 10001 monitor \
 && useradd --system --uid 10001 --gid monitor --home-dir /app --no-create-home monitor \
 && mkdir /data && chown monitor:monitor /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
USER monitor
VOLUME ["/data"]
EXPOSE 8765
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8765/healthz', timeout=4)"]
CMD ["python", "-m", "monitor", "serve", "--host", "0.0.0.0", "--port", "8765"]
