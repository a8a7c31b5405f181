# Prometheus for docker/compose.yaml: Debian 12's package, scraping every replica's --stats port
# (docker/prometheus.yml finds them by DNS, as HAProxy does).
#   podman build -f docker/prometheus.Dockerfile -t polyecho-prometheus docker/
FROM debian:bookworm-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
 && rm -rf /var/lib/apt/lists/*
COPY prometheus.yml /etc/prometheus/prometheus.yml
USER prometheus
EXPOSE 9090
ENTRYPOINT ["prometheus", "--config.file=/etc/prometheus/prometheus.yml", \
            "--storage.tsdb.path=/var/lib/prometheus/metrics2", "--web.listen-address=:9090"]
