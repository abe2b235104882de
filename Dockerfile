# Serving image: ONNX Runtime + FastAPI, no torch. Mount or copy a bundle directory at /models/current.
#   docker build -t authlens .
#   docker run -p 8000:8000 -v $PWD/bundles/demo:/models/current:ro \
#     -e AUTHLENS_API_KEYS=... -e AUTHLENS_ADMIN_KEY=... authlens
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY model ./model
COPY serving ./serving
COPY training ./training
RUN python -m venv /opt/authlens \
 && /opt/authlens/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/authlens/bin/pip install --no-cache-dir -c constraints.txt ".[serve]"

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 authlens
COPY --from=build /opt/authlens /opt/authlens
ENV PATH=/opt/authlens/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    AUTHLENS_LOG_FORMAT=json
USER authlens
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
# Listening on all interfaces inside the container requires API keys (or --allow-insecure).
CMD ["authlens", "serve", "--bundle", "/models/current", "--host", "0.0.0.0", "--port", "8000"]
