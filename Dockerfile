# syntax=docker/dockerfile:1
# One image for every siesa-sync process: the three services (`run extractor|transformer|
# loader`), the operator CLI (`topics create`, `status`, ...) and the simulators
# (`sim siesa|kong`). docker-compose.yml picks the process with `command:`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so that editing the sources does not
# reinstall them (tomllib is in the 3.11 standard library).
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY services/ services/
COPY simulators/ simulators/
COPY schemas/ schemas/
COPY mappings/ mappings/
COPY config/ config/

# Why an *editable* install: services/common/settings.py finds schemas/, mappings/ and
# config/ from its own file (ROOT = Path(__file__).resolve().parents[2]). A plain
# `pip install .` would copy the packages into site-packages, where ROOT becomes
# /usr/local/lib/python3.11 and no schemas/ exists. `pip install -e .` installs the
# `siesa-sync` console script and an import finder that maps the `services` and
# `simulators` packages to /app/services and /app/simulators, so ROOT is /app whatever
# the working directory, for `siesa-sync ...` and `python -m services.<name>` alike.
RUN pip install --no-deps -e . \
    && python -c "from services.common.settings import ROOT; assert str(ROOT) == '/app', ROOT; from services.common.serde import default_serde; default_serde()" \
    && siesa-sync --help > /dev/null

# Run as an unprivileged user; the code and config stay root-owned and read-only to it.
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin siesa
USER siesa

ENTRYPOINT ["siesa-sync"]
CMD ["--help"]
