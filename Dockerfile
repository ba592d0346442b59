# Production image: api, worker and migrate, without the embedded Temporal server.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -tags nodev -trimpath -ldflags='-s -w' -o /out/p2p ./cmd/p2p

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/p2p /usr/local/bin/p2p
USER nonroot
ENTRYPOINT ["/usr/local/bin/p2p"]
