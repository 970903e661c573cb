# syntax=docker/dockerfile:1
#
# wxlogin: one static binary on a distroless base, running as an
# unprivileged user, with the bbolt database on a volume.
#
#   docker build -t wxlogin .
#   docker run -d --name wxlogin -p 8080:8080 -v wxlogin-data:/data \
#     -e WECHAT_APPID=wx… -e WECHAT_APPSECRET=… -e WECHAT_TOKEN=… \
#     -e WXLOGIN_PUBLIC_URL=https://login.example.com wxlogin
#
# Demo mode (no WECHAT_APPID) refuses a non-loopback address unless told:
#   docker run --rm -p 127.0.0.1:8080:8080 -e WXLOGIN_DEMO=1 wxlogin

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# CGO_ENABLED=0: a static binary that needs no libc in the final image.
# -trimpath and no VCS stamping: the same sources give the same binary.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux go build -trimpath -buildvcs=false -ldflags="-s -w" -o /out/wxlogin . \
 && mkdir -p /out/data

# distroless/static: CA certificates (for api.weixin.qq.com), tzdata and a
# "nonroot" user (65532), and nothing else: no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/wxlogin /usr/local/bin/wxlogin
# The volume's mount point, owned by the user that writes the database.
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV WXLOGIN_ADDR=:8080 \
    WXLOGIN_DB=/data/wxlogin.db \
    WXLOGIN_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8080
# No HEALTHCHECK: the image has no shell or curl. Probe over HTTP instead:
# liveness GET /healthz, readiness GET /readyz (see README, Operations).
# docker stop sends SIGTERM: streams are told to reconnect, in-flight
# callbacks finish and the database is closed within WXLOGIN_SHUTDOWN_GRACE
# (10 s); give docker longer than that: docker stop -t 15.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/wxlogin"]
