# An IVR node of the multi-node profile (docker-compose.yml, profile "tier"): the ivr image plus Debian's
# Kamailio, so `ivr run` manages its own front (front.mode managed) and `ivr tier run` its tier. Build context:
# the repository root.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /srv/ivr
RUN apt-get update \
    && apt-get install -y --no-install-recommends flite espeak-ng sox kamailio kamailio-extra-modules \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY ivr ./ivr
RUN pip install . && useradd --system --home-dir /srv/ivr ivr && mkdir -p /srv/ivr/run && chown ivr /srv/ivr/run
USER ivr
CMD ["ivr", "run", "/srv/ivr/config/ivr.yaml", "--run-dir", "/srv/ivr/run"]
