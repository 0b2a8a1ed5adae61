# The modal-gpu-action command line tool as a small image, for other CI systems and docker users:
#   docker run --rm -v "$PWD:/workspace" -e MODAL_TOKEN_ID -e MODAL_TOKEN_SECRET \
#       modal-gpu-action run --gpu L4 --test-path tests

# Build: dependencies first (a layer that changes only with uv.lock), then the package.
FROM ghcr.io/astral-sh/uv:0.13.9-python3.12-bookworm-slim AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=0
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY src ./src
RUN uv sync --frozen --no-dev --no-editable

# Run: the same Python, the virtual environment and nothing else, as a user without privileges.
FROM python:3.12-slim-bookworm
RUN useradd --create-home --uid 10001 action
COPY --from=build --chown=action:action /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1
USER 10001
WORKDIR /workspace
# Isolated mode: /workspace is the checkout, and nothing committed there is imported as our code.
ENTRYPOINT ["/app/.venv/bin/python", "-I", "-m", "modal_gpu_action"]
CMD ["--help"]
