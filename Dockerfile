# saserve container image: a build stage with the -dev packages and a runtime
# stage with only the shared libraries, the binary and the default config.
#
#   docker build -t saserve .                         portable x86-64-v3 (AVX2/FMA) binary
#   docker build --build-arg NATIVE=1 -t saserve:native .
#                                                     -march=native of the BUILD machine: faster
#                                                     (e.g. AVX-512 VNNI kernels), runs only on
#                                                     CPUs with at least that instruction set
#   docker run --rm -p 8080:8080 -v /srv/models:/models:ro saserve
#                                                     serves /models/model.gguf on 0.0.0.0:8080
#
# Settings: config/saserve.json is installed as /etc/saserve/saserve.json (mount
# your own there, or a Kubernetes ConfigMap); every key can be overridden with a
# SASERVE_* variable (-e SASERVE_SLOTS=8). Environment wins over flags, so
# SASERVE_MODEL and SASERVE_HOST set below are changed with -e, not with -m/--host.
# Do not pass SASERVE_* variables that saserve does not know: they stop start-up.

ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
ARG NATIVE=0
ARG MAKE_JOBS=
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config libopenblas-dev libjansson-dev libmicrohttpd-dev \
      libuv1-dev libpcre2-dev libpng-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY config/ config/
COPY engine/ engine/
COPY server/ server/
COPY docker/probe.c docker/probe.c
RUN make NATIVE="${NATIVE}" -j"${MAKE_JOBS:-$(nproc)}" build/saserve \
 && cc -std=c11 -O2 -Wall -Wextra -o build/saserve-probe docker/probe.c \
 && ./build/saserve serve --help >/dev/null

FROM ${BASE_IMAGE} AS runtime
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libopenblas0-pthread libjansson4 libmicrohttpd12 libuv1 libpcre2-8-0 libpng16-16 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 saserve \
 && useradd --no-log-init --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin saserve \
 && mkdir -p /models /etc/saserve
COPY --from=build /src/build/saserve /src/build/saserve-probe /usr/local/bin/
COPY config/saserve.json /etc/saserve/saserve.json
# the committed phiDNN image classifier (1.5 MB), served at /v2/models/phidnn-fmnist; the
# config file's relative vision_model path does not exist in the image, the variable wins
COPY config/models/phidnn-fmnist.gguf /usr/share/saserve/phidnn-fmnist.gguf

# The model is mounted here; listen on every interface of the container.
ENV SASERVE_MODEL=/models/model.gguf \
    SASERVE_HOST=0.0.0.0 \
    SASERVE_VISION_MODEL=/usr/share/saserve/phidnn-fmnist.gguf
VOLUME ["/models"]
USER 10001:10001
EXPOSE 8080
# saserve drains on SIGTERM: /health turns 503, in-flight requests finish
# within shutdown_grace (10 s by default), then it exits 0. Give the runtime
# a stop timeout longer than that (docker stop -t 30, compose stop_grace_period).
STOPSIGNAL SIGTERM
# saserve-probe asks 127.0.0.1:$SASERVE_PORT (default 8080); if you move the port in
# the config file instead of with SASERVE_PORT, set PROBE_PORT to match.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["/usr/local/bin/saserve-probe", "/health"]
ENTRYPOINT ["/usr/local/bin/saserve"]
CMD ["serve", "--config", "/etc/saserve/saserve.json"]
