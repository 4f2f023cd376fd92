# syntax=docker/dockerfile:1
# One image for every siesa-sync process, built from the wheel (not an editable
# checkout): the three services (`run extractor|transformer|loader`) and the operator
# CLI (`topics create`, `status`, ...) in the `runtime` target (the default); the
# simulators (`sim siesa|kong|wms`) in the `sim` target, which adds the [sim] extra.
# Every dependency comes from the hashed lock files in requirements/.
ARG PYTHON=3.13

# -- 1. the wheel -------------------------------------------------------------------
FROM python:${PYTHON}-slim AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 UV_PYTHON_DOWNLOADS=never
WORKDIR /src
COPY requirements/tools.txt requirements/tools.txt
RUN pip install --require-hashes --no-deps -r requirements/tools.txt
COPY pyproject.toml README.md ./
COPY services/ services/
COPY simulators/ simulators/
COPY schemas/ schemas/
COPY mappings/ mappings/
COPY config/tenants.yaml config/tenants.yaml
RUN uv build --wheel --no-build-isolation --python python --out-dir /dist

# -- 2. the runtime: the locked runtime set, then the wheel without resolving again ---
FROM python:${PYTHON}-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements/runtime.txt /tmp/runtime.txt
RUN pip install --require-hashes --no-deps -r /tmp/runtime.txt && rm /tmp/runtime.txt
COPY --from=wheel /dist/ /tmp/dist/
RUN pip install --no-deps /tmp/dist/*.whl \
    && rm -rf /tmp/dist \
    && siesa-sync --version \
    && python -c "from services.common.serde import default_serde; default_serde()"
# The tenants of the compose setup (docker-compose.yml points the services at it); a
# deployment mounts its own there or names another file in <SERVICE>_TENANTS_FILE.
COPY config/tenants.docker.yaml /etc/siesa-sync/tenants.yaml

# Run as an unprivileged user; the installed code and config stay root-owned.
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin siesa
USER 10001
WORKDIR /tmp

# Liveness of whichever service this container runs (its /healthz on 127.0.0.1);
# docker-compose.yml asks readiness (`health --ready`) to order start-up.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["siesa-sync", "health"]

ENTRYPOINT ["siesa-sync"]
CMD ["--help"]

# -- 3. the simulators: the runtime plus the [sim] extra's locked set -----------------
FROM runtime AS sim
USER root
COPY requirements/sim.txt /tmp/sim.txt
RUN pip install --require-hashes --no-deps -r /tmp/sim.txt && rm /tmp/sim.txt
USER 10001
# A simulator serves no /healthz; docker-compose.yml checks its /_admin/stats.
HEALTHCHECK NONE

# The default target: the services' image, with no simulator dependency in it.
FROM runtime
