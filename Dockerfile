# medulla-imaging-exporter: a small, non-root image, pinned by constraints.txt (the very file
# CI installs from). The configuration is a mounted file:
#   docker build -t medulla-imaging-exporter .
#   docker run -d -p 9867:9867 \
#     -v /etc/medulla-imaging-exporter:/etc/medulla-imaging-exporter:ro medulla-imaging-exporter
# tests/test_dockerfile.py lints this file with hadolint and runs its install and start steps
# in a fresh virtual environment, since CI cannot run Docker.

FROM python:3.11-slim-bookworm AS build
ENV VIRTUAL_ENV=/opt/medulla-imaging-exporter \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY exporter/ exporter/
RUN python -m venv "$VIRTUAL_ENV" \
    && "$VIRTUAL_ENV/bin/pip" install --no-cache-dir -c constraints.txt .

FROM python:3.11-slim-bookworm
ENV VIRTUAL_ENV=/opt/medulla-imaging-exporter
ENV PATH="$VIRTUAL_ENV/bin:$PATH" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/medulla-imaging-exporter /opt/medulla-imaging-exporter
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin medulla-exporter
USER 10001
EXPOSE 9867
# No curl in the image: Python's urllib. With --web.config.file serving HTTPS, set
# HEALTHCHECK_URL=https://127.0.0.1:9867/-/healthy (the certificate is not checked on this
# loopback call) and health_checks_without_auth: true if basic auth is on.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
    CMD ["python", "-c", "import os, ssl, urllib.request as u; u.urlopen(os.environ.get('HEALTHCHECK_URL', 'http://127.0.0.1:9867/-/healthy'), timeout=4, context=ssl._create_unverified_context())"]
ENTRYPOINT ["medulla-imaging-exporter"]
CMD ["--config.file", "/etc/medulla-imaging-exporter/config.yml"]
