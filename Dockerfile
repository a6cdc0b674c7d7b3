# syntax=docker/dockerfile:1
# One Dockerfile, one image per set of services: `docker run IMAGE <subcommand> [flags]`.
#   docker build -t eew:0.1.0 .                                   # every service (extra `services`)
#   docker build --build-arg EXTRAS= -t eew-detector:0.1.0 .      # the detector alone: the lean core
#   docker build --build-arg EXTRAS=alerting -t eew-alerting:0.1.0 .   # (or ingest, broker, dashboard)
#   docker run --rm -p 8000:8000 eew:0.1.0 detect --bootstrap-servers kafka:9092
# Stage 1 installs the package (with the trained model as package data) into a venv;
# stage 2 copies only that venv onto a slim Python and runs it as an unprivileged user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/eew && /opt/eew/bin/pip install --upgrade pip setuptools wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
COPY models ./models
# The dashboard's front end: npm packages from services/dashboard/web/package-lock.json bundled into
# services/dashboard/web/dist (package data); node stays in this stage only.
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null \
    && cd services/dashboard/web && rm -rf node_modules dist && npm ci --no-audit --no-fund --loglevel=error \
    && npm run --silent build && rm -rf node_modules && test -f dist/index.html
# Which services the image runs: the pyproject extra installed beside the core (the detector's
# runtime). Empty: the detector alone, without ObsPy, matplotlib, the web stack, PostgreSQL or MQTT.
ARG EXTRAS=services
# A regular (non-editable) install: the code and models/eew_cnnlstm_v1 land in the venv's site-packages.
RUN /opt/eew/bin/pip install ".${EXTRAS:+[$EXTRAS]}"
# Fail the build unless the installed package carries a loadable model that matches its contract
# (run from / so that /src/models cannot stand in for the installed copy).
RUN cd / && /opt/eew/bin/python -c "from models.runtime import StreamingModel; m = StreamingModel(providers=['CPUExecutionProvider']); print('model ok:', m.model_dir)" \
    && /opt/eew/bin/python -c "import services.detector.service" && /opt/eew/bin/eew --help

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="eew" \
      org.opencontainers.image.description="Streaming earthquake early warning: ingest, ONNX detector, alerting over Kafka" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 eew \
    && useradd --system --uid 10001 --gid eew --home-dir /home/eew --create-home --shell /usr/sbin/nologin eew \
    && mkdir -p /var/lib/eew && chown eew:eew /var/lib/eew
COPY --from=builder /opt/eew /opt/eew
# Services listen for /metrics /healthz /readyz on all interfaces of the container, on a fixed port.
ENV PATH=/opt/eew/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    EEW_HTTP_HOST=0.0.0.0 \
    EEW_HTTP_PORT=8000
USER 10001:10001
WORKDIR /home/eew
EXPOSE 8000
# No curl in slim images: probe /healthz with the standard library, with a timeout.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('EEW_HTTP_PORT', '8000'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=3).status == 200 else 1)"]
ENTRYPOINT ["eew"]
CMD ["--help"]
