# Palaver in a container: a release build, then a slim Debian image with the optional media
# tools (OCR, PDF thumbnails). Not built on the development machine (it cannot pull base
# images); it needs only Debian's packages and crates.io.
#
#   docker build -t palaver .
#   docker run -p 3000:3000 -v palaver-data:/var/lib/palaver palaver
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/palaver

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tesseract-ocr tesseract-ocr-eng poppler-utils \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/palaver palaver \
 && mkdir -p /var/lib/palaver && chown palaver:palaver /var/lib/palaver
COPY --from=build /src/target/release/palaver /usr/local/bin/palaver
USER palaver
ENV PALAVER_DATA_DIR=/var/lib/palaver PALAVER_LISTEN=0.0.0.0:3000 PALAVER_LOG_FORMAT=json
VOLUME /var/lib/palaver
EXPOSE 3000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/3000 && printf 'GET /readyz HTTP/1.0\\r\\n\\r\\n' >&3 && head -1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/palaver"]
CMD ["serve"]
