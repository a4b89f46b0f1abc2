# The engine worker image: `docker build -t reco-stream .`; docker-compose.yml builds it too.
# Runs `reco run` (the console script from pyproject.toml) as an unprivileged user. Settings come
# from RECO_* environment variables (see streams/settings.py and docs/operations.md).
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY online_models ./online_models
COPY schemas ./schemas
# NUMBA_CACHE_DIR: the engine's compiled kernels are built into the image (as root, below) and
# loaded from there at start instead of compiling for seconds (docs/decisions/0017). numba needs
# the directory writable by the running user, and recompiles there if the host's CPU differs.
ENV NUMBA_CACHE_DIR=/var/lib/reco/kernels
RUN pip install . \
 && useradd --system --uid 10001 --gid 0 --home-dir /var/lib/reco --create-home reco \
 && mkdir -p /var/lib/reco/state /var/lib/reco/kernels \
 && cd / && python -c "from online_models.compiled import warm_up; print(warm_up().describe())" \
 && chown -R 10001:0 /var/lib/reco \
 && chmod -R g=u /var/lib/reco

USER 10001
ENV RECO_STATE_DIR=/var/lib/reco/state \
    RECO_METRICS_PORT=9100
VOLUME ["/var/lib/reco/state"]
EXPOSE 9100

# Liveness: /healthz answers 200 while the processing loop turns (readiness is /readyz).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('RECO_METRICS_PORT', '9100'), timeout=4)"

ENTRYPOINT ["reco"]
CMD ["run"]
