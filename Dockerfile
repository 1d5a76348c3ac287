# The Herald image compose.yaml runs (every process: web, workers, beat).
FROM python:3.11-slim
COPY --from=ghcr.io/astral-sh/uv:0.13 /uv /usr/local/bin/uv
WORKDIR /app
ENV UV_LINK_MODE=copy PATH=/app/.venv/bin:$PATH HERALD_VAR_DIR=/app/var
# Dependencies first (a layer that changes only with uv.lock), then the code.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-install-project
COPY . .
RUN uv sync --frozen \
    && HERALD_PRODUCTION=1 SECRET_KEY=build DATABASE_URL=sqlite:////tmp/build.sqlite3 \
       python manage.py collectstatic --noinput
EXPOSE 8000
