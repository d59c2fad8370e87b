# mapbridge, built on the official Swift image and run on Debian slim (librdkafka from Debian).
#   docker build -t mapbridge .
#   docker run --rm -v /etc/mapbridge:/etc/mapbridge:ro -v /run/haproxy:/run/haproxy \
#     -v /etc/haproxy/maps:/etc/haproxy/maps -v mapbridge-state:/var/lib/mapbridge mapbridge

FROM swift:6.3-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends librdkafka-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so that they are cached across source changes.
COPY Package.swift ./
RUN swift package resolve
COPY Sources ./Sources
COPY Tests ./Tests
RUN swift build -c release --product mapbridge --static-swift-stdlib \
    && install -D "$(swift build -c release --show-bin-path)/mapbridge" /out/mapbridge

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends librdkafka1 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/mapbridge /usr/local/bin/mapbridge
COPY config/mapbridge.yaml /etc/mapbridge/mapbridge.yaml
VOLUME /var/lib/mapbridge
ENTRYPOINT ["/usr/local/bin/mapbridge"]
CMD ["run", "--config", "/etc/mapbridge/mapbridge.yaml"]
