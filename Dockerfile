# Builds the single `rebake` binary. The runtime image needs git (Git sources) and CA
# certificates (HTTPS registries).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p rebake

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends git ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/rebake /usr/local/bin/rebake
ENTRYPOINT ["/usr/local/bin/rebake"]
CMD ["--config", "/etc/rebake/rebake.yaml", "up"]
