# The ivr image: controller + SIP workers (`ivr run`), the demo CRM (`python -m ivr.democrm`) and the
# front renderer (`ivr front render`). Build context: the repository root (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /srv/ivr
# flite, espeak-ng and sox: the offline text to speech of `say` steps (ivr/tts).
RUN apt-get update && apt-get install -y --no-install-recommends flite espeak-ng sox && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY ivr ./ivr
RUN pip install . && useradd --system --home-dir /srv/ivr ivr && mkdir -p /srv/ivr/run && chown ivr /srv/ivr/run
USER ivr
# config/ and prompts/ are mounted at /srv/ivr/config and /srv/ivr/prompts.
CMD ["ivr", "run", "/srv/ivr/config/ivr.yaml", "--run-dir", "/srv/ivr/run"]
