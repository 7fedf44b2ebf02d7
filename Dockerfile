# The base: the public Python image. tools/image_check.py builds this file where no registry
# is reachable, from a Debian base of its own (with Python 3.11 and pip) given here.
ARG BASE_IMAGE=python:3.11-slim

# Build the two wheels: the client (clients/python, with the generated stubs of generated/)
# and the server (src/), which depends on it.
FROM ${BASE_IMAGE} AS build
WORKDIR /build
COPY pyproject.toml setup.py README.md ./
COPY src ./src
COPY generated ./generated
COPY clients ./clients
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels ./clients/python . \
    && pip wheel --no-cache-dir --wheel-dir /wheels --find-links /wheels .

# Run as an unprivileged user; without AGENTSTORE_DATABASE_URL the embedded PostgreSQL keeps
# its data in the /data volume.
FROM ${BASE_IMAGE}
RUN useradd --create-home --uid 10001 agentstore \
    && mkdir /data && chown agentstore:agentstore /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER agentstore
# Reachable from outside the container, so keys are required: make them on the same volume
# or database with `docker run --entrypoint agentstore -v agentstore-data:/data IMAGE keys
# create --app APP --role writer`.
ENV AGENTSTORE_LISTEN=0.0.0.0:50051 \
    AGENTSTORE_AUTH=api-key \
    AGENTSTORE_DATA_DIR=/data
VOLUME /data
EXPOSE 50051
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
    CMD python -c "import grpc; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; \
s = g.HealthStub(grpc.insecure_channel('127.0.0.1:50051')).Check(h.HealthCheckRequest(), timeout=2); \
raise SystemExit(s.status != h.HealthCheckResponse.SERVING)"
ENTRYPOINT ["agentstore", "serve"]
