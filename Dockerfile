# The collector service (and the live demo agent) built from this repository.
FROM python:3.11-slim

WORKDIR /app
COPY constraints.txt ./
COPY instrumentation/ instrumentation/
COPY exporter/ exporter/
RUN pip install --no-cache-dir -c constraints.txt ./instrumentation './exporter[collector,demo]' \
    && useradd --system --home-dir /var/lib/conversation-analytics --create-home analytics

USER analytics
WORKDIR /var/lib/conversation-analytics
# OTLP/gRPC, OTLP/HTTP, /metrics + health + read API
EXPOSE 4317 4318 9464
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
    CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:9464/readyz', timeout=2)" || exit 1
ENTRYPOINT ["conversation-analytics"]
CMD ["collector", "--grpc-endpoint", "0.0.0.0:4317", "--http-endpoint", "0.0.0.0:4318", "--metrics-endpoint", "0.0.0.0:9464"]
