# syntax=docker/dockerfile:1
#
# Latchkey's container image: the release binary on a distroless,
# non-root runtime (glibc, CA certificates, nothing else: no shell).
#
#   docker build -t latchkey:0.1.0 .
#   docker run --rm -p 50051:50051 -p 8080:8080 latchkey:0.1.0
#
# The Helm chart (helm/latchkey) runs this image with its own arguments
# (`serve --config /etc/latchkey/latchkey.toml --no-migrate`, and
# `migrate` for the migration Job); tests/blackbox/test_dockerfile.py checks
# that this file, the chart and the binary agree.

# ---- build ------------------------------------------------------------------
# The toolchain of Cargo.toml's rust-version or newer; Debian 12, the same
# glibc as the runtime below.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Cached registry and target directory; the binary is copied out of the cache
# in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin latchkey \
    && install -D -m 0755 target/release/latchkey /out/usr/local/bin/latchkey \
    && install -d -m 0750 /out/var/lib/latchkey

# ---- runtime ----------------------------------------------------------------
# distroless "nonroot": uid/gid 65532, no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/usr/local/bin/latchkey /usr/local/bin/latchkey
# The data directory (the embedded SQLite database when no PostgreSQL URL is
# given), owned by the runtime user; mount a volume here to keep it.
COPY --from=build --chown=65532:65532 /out/var/lib/latchkey /var/lib/latchkey
USER 65532:65532
WORKDIR /var/lib/latchkey
# 50051: gRPC (internal only). 8080: HTTP (public: OAuth2, JWKS, /healthz, /readyz).
EXPOSE 50051 8080
# Kubernetes probes the gRPC health service itself (the chart's probes);
# the image has no shell or client to run a Docker HEALTHCHECK with.
HEALTHCHECK NONE
ENTRYPOINT ["/usr/local/bin/latchkey"]
CMD ["serve", "--grpc-addr", "0.0.0.0:50051", "--http-addr", "0.0.0.0:8080", "--data-dir", "/var/lib/latchkey"]
