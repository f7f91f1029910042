# berth's container image: a release build of the one binary on Debian 12 slim.
#
#   docker build -t berth:latest .
#
# No image is published yet; deploy/ refers to `berth:latest`, so build and push this to your
# own registry first. (Not built in this repository's CI: its machines run no Docker engine.)

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p berth \
 && install -D -m 0755 target/release/berth /out/berth

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 berth \
 && useradd --system --uid 10001 --gid berth --home-dir /var/lib/berth --shell /usr/sbin/nologin berth \
 && install -d -o berth -g berth -m 0750 /var/lib/berth
COPY --from=builder /out/berth /usr/local/bin/berth
USER 10001:10001
ENV BERTH_ADDR=0.0.0.0:5000 \
    BERTH_DATA_DIR=/var/lib/berth
VOLUME ["/var/lib/berth"]
EXPOSE 5000
ENTRYPOINT ["berth", "serve"]
