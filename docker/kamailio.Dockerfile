# The front: Debian's Kamailio (bookworm ships 5.6.3, the version the rendered cfg is tested with).
# The cfg is not baked in: the front-config service renders it from the IVR YAML into a shared volume.
FROM debian:bookworm-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends kamailio kamailio-extra-modules kamailio-tls-modules \
    && rm -rf /var/lib/apt/lists/*
STOPSIGNAL SIGTERM
ENTRYPOINT ["kamailio", "-DD", "-E", "-m", "64", "-M", "8", "-x", "tlsf"]
CMD ["-f", "/run/ivr-front/kamailio.cfg"]
