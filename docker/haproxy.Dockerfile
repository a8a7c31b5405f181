# The load balancer for docker/compose.yaml: Debian 12's HAProxy with docker/haproxy.cfg.
#   podman build -f docker/haproxy.Dockerfile -t polyecho-haproxy docker/
# socat is there to talk to the admin socket: podman exec LB sh -c 'echo "show stat" | socat stdio /tmp/haproxy.sock'
FROM debian:bookworm-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy socat >/dev/null \
 && rm -rf /var/lib/apt/lists/*
COPY haproxy.cfg /etc/haproxy/haproxy.cfg
USER haproxy
EXPOSE 7007
STOPSIGNAL SIGUSR1
# -db: stay in the foreground as PID 1 and log to stderr. -W: master-worker, so `podman kill
# --signal HUP` reloads the configuration.
ENTRYPOINT ["haproxy", "-W", "-db", "-f", "/etc/haproxy/haproxy.cfg"]
