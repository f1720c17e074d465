# syntax=docker/dockerfile:1
#
# Content API image: `docker build -t content-api .`
# Runs `content-api serve` by default; `docker run ... content-api migrate`
# applies migrations as a separate step. Configuration comes from the
# environment (see .env.example); DATABASE_URL and JWT_SECRET are required.

############################
# Build
############################
FROM rust:1-bookworm AS builder

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libpq-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /build

# 1. Dependencies only: build against placeholder sources so this layer is
#    reused until Cargo.toml / Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

# 2. The crate itself. `migrations/` is embedded at compile time
#    (diesel_migrations::embed_migrations!), so it must be present here.
#    Touch the sources so cargo never mistakes them for the placeholders.
COPY migrations ./migrations
COPY src ./src
RUN touch src/lib.rs src/main.rs \
    && cargo build --release --locked \
    && cp target/release/content-api /usr/local/bin/content-api

############################
# Runtime
############################
FROM debian:bookworm-slim AS runtime

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libpq5 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app

COPY --from=builder /usr/local/bin/content-api /usr/local/bin/content-api

WORKDIR /app
USER 10001:10001

ENV HOST=0.0.0.0 \
    PORT=8080 \
    LOG_FORMAT=json

EXPOSE 8080

# No HTTP client in the image: bash's /dev/tcp asks /health/ready.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT:-8080} && printf 'GET /health/ready HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["content-api"]
CMD ["serve"]
