# The llmopt image: one binary, every service (`llmopt run <service>`), on an empty base.
#
#   docker build -t llmopt/llmopt:0.1.0 .
#   docker run --rm llmopt/llmopt:0.1.0 run ingest --config /etc/llmopt/llmopt.toml
#
# Without a daemon (this project's machines): scripts/image-build.sh lays out the same final stage
# with buildah from a locally built binary; both use scripts/image-rootfs.sh, so the two images
# hold the same files.

############################################################################ build
FROM rust:1.95-bookworm AS build

# rdkafka 0.39 (features ssl, tokio) builds the bundled librdkafka 2.12 with its own configure
# script and make (not cmake: the cmake-build feature is off, see rdkafka-sys in Cargo.lock) and
# links the system OpenSSL (openssl-sys, via pkg-config) and zlib (libz-sys). The rust image has
# gcc, make and most -dev packages already; listing them keeps the build honest if it changes.
# ca-certificates: the CA bundle image-rootfs.sh copies into the final stage.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential pkg-config libssl-dev zlib1g-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin llmopt \
 && install -D -m 0755 target/release/llmopt /out/llmopt

# The final stage's root filesystem: the binary at /llmopt, the libraries ldd lists (libssl,
# libcrypto, libz, libgcc_s, libm, libc and the loader), CA certificates, /etc/passwd and
# /etc/group with nonroot (65532), /tmp (1777).
RUN scripts/image-rootfs.sh /out/llmopt /rootfs

############################################################################ final
FROM scratch

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="llmopt" \
      org.opencontainers.image.description="Closed-loop optimizer for fleets of LLM applications: ingest, aggregator, detector, decision, actuator and quantizer services in one binary" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://example.invalid/llmopt" \
      org.opencontainers.image.base.name="scratch"

COPY --from=build /rootfs /

ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    HOME=/home/nonroot
USER 65532:65532
WORKDIR /tmp
# /health, /ready and /metrics of `llmopt run <service>` ([admin] listen).
EXPOSE 9464

# Liveness of `llmopt run <service>` through its admin endpoint; `llmopt probe` is the image's
# own HTTP client (there is no shell or curl). Kubernetes uses its httpGet probes instead.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/llmopt", "probe", "http://127.0.0.1:9464/health"]
ENTRYPOINT ["/llmopt"]
CMD ["--help"]
