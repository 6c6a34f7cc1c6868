FROM scratch
ARG VERSION=1.0
ENV APP_HOME=/srv/app PATH_EXTRA="a b"
LABEL org.opencontainers.image.version=$VERSION maintainer.name="Jane Doe"
MAINTAINER jane@example.com
EXPOSE 80 443/tcp 53/udp
VOLUME ["/data", "/var/log"]
USER 1000:1000
WORKDIR $APP_HOME
SHELL ["/bin/bash", "-c"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=3s --retries=3 CMD curl -f http://localhost/ || exit 1
ONBUILD COPY . /src
ENTRYPOINT ["/app"]
CMD echo "$APP_HOME"
