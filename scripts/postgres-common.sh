# Sourced by pg-cluster.sh and patroni-cluster.sh: where Debian's PostgreSQL 15 binaries are, and
# `as_postgres`, which runs a command as the user postgres when run as root (PostgreSQL refuses
# to run as root).
bin=/usr/lib/postgresql/15/bin

as_postgres() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}
