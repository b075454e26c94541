# greeter-server and greeter-client images (multi-stage Rust build). Build from the
# repository root, one target per image:
#
#   docker build -f kubernetes/docker/greeter.Dockerfile --target greeter-server -t ewma-balancer/greeter-server:0.1.0 .
#   docker build -f kubernetes/docker/greeter.Dockerfile --target greeter-client -t ewma-balancer/greeter-client:0.1.0 .
#
# protoc is not needed on the builder: test-harness/greeter/build.rs takes it from the
# protoc-bin-vendored crate. Not built in this repository's CI (no container engine
# there); see docs/deployment.md.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p greeter -p loadgen --bin greeter-server --bin greeter-client \
 && mkdir /out && cp target/release/greeter-server target/release/greeter-client /out/

# glibc, libgcc and CA certificates, no shell; runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot AS greeter-server
COPY --from=build /out/greeter-server /usr/local/bin/greeter-server
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/greeter-server"]
CMD ["--host", "0.0.0.0", "--port", "8000"]

FROM gcr.io/distroless/cc-debian12:nonroot AS greeter-client
COPY --from=build /out/greeter-client /usr/local/bin/greeter-client
ENTRYPOINT ["/usr/local/bin/greeter-client"]
