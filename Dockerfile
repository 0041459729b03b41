# The Sígueme server image (used by docker-compose.yml).

# The web pages' libraries (Leaflet), pinned in package-lock.json, from the npm registry.
FROM node:20-bookworm-slim AS web
WORKDIR /web
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY sigueme ./sigueme
# Leaflet's dist becomes package data: the service serves it itself (no CDN).
COPY --from=web /web/node_modules/leaflet/dist ./sigueme/web/vendor/leaflet
RUN pip install . \
    && cd / && rm -rf /src \
    && useradd --system --uid 10001 --user-group --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin sigueme

WORKDIR /
USER sigueme
EXPOSE 8000
CMD ["sigueme", "serve", "--host", "0.0.0.0", "--port", "8000"]
