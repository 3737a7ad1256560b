# syntax=docker/dockerfile:1
#
# stockade's container image. The wheel is built in one stage; the runtime stage
# installs it (and the dependency wheels built beside it) into a virtual
# environment, so the final image holds no compiler, no source tree and no pip
# cache. It runs as a fixed numeric uid that owns only the data volume.
#
#   docker build -t stockade .
#   docker run -p 8080:8080 -v stockade-data:/var/lib/stockade stockade
#
# Configuration comes from mounted files: /etc/stockade/config.yaml (the
# default one shipped here listens on 0.0.0.0:8080 and stores under
# /var/lib/stockade), and a policy file where that config names one.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src

# A C compiler for the packed tables' look-ups (stockade/policy/typosquat/_probe.c,
# built by setup.py into stockade's wheel): this stage only, the runtime stage gets
# the built module (checked below: the image is not made with the Python loops
# alone). Unpinned: Debian's security updates replace a pinned version.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*

# Dependencies first, read from pyproject.toml alone: this layer is rebuilt when
# they change, not on every source edit.
COPY pyproject.toml README.md ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt \
 && pip wheel --wheel-dir /wheels --requirement /tmp/requirements.txt

# Then the source, built into stockade's own wheel.
COPY setup.py ./
COPY stockade ./stockade
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --no-deps --wheel-dir /wheels .


FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/stockade/bin:$PATH

# A system user with a fixed uid, so volume ownership and the chart's
# securityContext can name it; it owns the data directory and nothing else.
RUN groupadd --system --gid 10001 stockade \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/stockade --shell /usr/sbin/nologin stockade \
 && install --directory --owner=10001 --group=10001 --mode=0750 /var/lib/stockade

# Installed from the build stage's wheels only (--no-index): the runtime stage
# never reaches an index, and the wheels are bind-mounted, not copied, so no
# layer keeps them. The venv has no pip of its own.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv --without-pip /opt/stockade \
 && pip --python /opt/stockade/bin/python install --no-index --no-cache-dir \
        --find-links /wheels /wheels/stockade-*.whl \
 && python -c 'import sys; from stockade.policy.typosquat import packed; sys.exit(packed.NATIVE is None)'

# The typosquat index files of the installed lists, built once here (as root,
# read-only to the server): a new pod maps them at its first start instead of
# building them (seconds of CPU, and a few hundred MiB while that runs). Index
# files it must build itself (a damaged one) go to its cache folder on the volume
# ($HOME/.cache/stockade), never here.
ENV STOCKADE_INDEX_PREBUILT=/opt/stockade/indexes
RUN stockade index build --into /opt/stockade/indexes

COPY docker/config.yaml /etc/stockade/config.yaml

USER 10001:10001
WORKDIR /var/lib/stockade
VOLUME ["/var/lib/stockade"]
EXPOSE 8080

# slim images have no curl: the venv's python asks /healthz (urlopen raises,
# so the command fails, on anything but a 2xx). STOCKADE_HEALTHCHECK_URL
# follows a port changed in the config.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('STOCKADE_HEALTHCHECK_URL', 'http://127.0.0.1:8080/healthz'), timeout=4)"]

ENTRYPOINT ["stockade"]
CMD ["serve", "--config", "/etc/stockade/config.yaml"]
