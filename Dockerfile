# coachpay: the API, the worker and the one-off commands (db upgrade, payouts run).
# Build: docker build -t coachpay .   (compose.yaml builds it too)
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first, from the lock alone: this layer is rebuilt only when uv.lock
# changes. --no-dev: no test tools, and no pgserver (the 'embedded' extra is not asked for).
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY . .
# The project itself as a regular (non-editable) install: the image needs no source tree.
RUN uv sync --frozen --no-dev --no-editable

FROM python:${PYTHON_VERSION}-slim-bookworm
RUN groupadd --system --gid 10001 coachpay \
    && useradd --system --uid 10001 --gid coachpay --no-create-home --home-dir /app coachpay
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    COACHPAY_ENV=production \
    COACHPAY_HOST=0.0.0.0 \
    COACHPAY_PORT=8000
WORKDIR /app
USER coachpay:coachpay
EXPOSE 8000
CMD ["coachpay", "serve", "--no-jobs"]
