#!/bin/sh
# Starts polyecho-server as PID 1 (exec, so SIGTERM reaches it directly).
#
#   image [SERVER FLAGS...]      e.g.  --backend fork --mode line
#   image COMMAND [ARGS...]      runs COMMAND instead (polyecho-client, sh, ...)
#
# Environment (defaults that arguments override):
#   POLYECHO_BACKEND   concurrency model, like --backend
#   POLYECHO_FLAGS     more server flags, split on spaces, like "--workers 2 --mode line"
#   POLYECHO_STATS     HOST:PORT for --stats (metrics and the live page), e.g. 0.0.0.0:9100
# --host 0.0.0.0 and --port 7007 are added unless given, and --backend ARG replaces
# POLYECHO_BACKEND. The server refuses a flag given twice: do not repeat one of POLYECHO_FLAGS
# on the command line.
set -eu

case "${1:-}" in
  -*|'') ;;
  *) exec "$@" ;;
esac

# has FLAG ARGS...: true when ARGS contain FLAG or FLAG=...
has() {
  flag=$1
  shift
  for arg in "$@"; do
    case "$arg" in "$flag" | "$flag"=*) return 0 ;; esac
  done
  return 1
}

# Environment flags are word-split on purpose (POLYECHO_FLAGS="--workers 2").
# shellcheck disable=SC2086
set -- ${POLYECHO_FLAGS:-} "$@"
if [ -n "${POLYECHO_BACKEND:-}" ] && ! has --backend "$@"; then set -- --backend "$POLYECHO_BACKEND" "$@"; fi
if [ -n "${POLYECHO_STATS:-}" ] && ! has --stats "$@"; then set -- --stats "$POLYECHO_STATS" "$@"; fi
has --port "$@" || set -- --port 7007 "$@"
has --host "$@" || set -- --host 0.0.0.0 "$@"
exec polyecho-server "$@"
