#!/usr/bin/env bash
# A three-node PostgreSQL 15 cluster on loopback for the Neuron's tests and load runs (SPEC §3.6):
# a primary and two synchronous standbys, synchronous_standby_names = 'ANY 1 (s1, s2)' and
# synchronous_commit = on, so that a committed batch is flushed on the primary and on at least one
# standby. PostgreSQL refuses to run as root: every server runs as the user postgres, in DIR (owned
# by postgres). Needs Debian's postgresql-15.
#
#   scripts/pg-cluster.sh start DIR PORT      primary on PORT, standbys s1, s2 on PORT+1, PORT+2
#   scripts/pg-cluster.sh stop DIR            every node, fast
#   scripts/pg-cluster.sh kill-primary DIR    SIGKILL the primary's postmaster (a machine lost)
#   scripts/pg-cluster.sh stop-node DIR N     stop node N (0 primary, 1 s1, 2 s2)
#   scripts/pg-cluster.sh start-node DIR N    start it again
#   scripts/pg-cluster.sh promote DIR [N]     promote standby N, or the one that received the most
#                                             WAL (what a failover must pick); prints its port
#   scripts/pg-cluster.sh status DIR          each node's role and WAL position
#   scripts/pg-cluster.sh sql DIR PORT SQL [DB]  runs SQL as the superuser in DB (neuron)
#
# The database is `neuron`, the user `neuron` (trust on 127.0.0.1, and pg_monitor so that it sees
# the standbys' state): postgres://neuron@127.0.0.1:PORT/neuron. The user `neuron_secret` must
# give the password `right` (scram-sha-256), for tests of a wrong password.
set -euo pipefail
# shellcheck source=scripts/postgres-common.sh
source "$(dirname "$0")/postgres-common.sh"
what="${1:?usage: pg-cluster.sh start|stop|kill-primary|stop-node|start-node|promote|status DIR ...}"
dir="${2:?the directory of the cluster}"

node_dir() { echo "$dir/node$1"; }
port_of() { cat "$(node_dir "$1")/port"; }

psql_on() {
  local port="$1"
  shift
  as_postgres "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -X -A -t -q "$@"
}

wait_ready() {
  local port="$1"
  for _ in $(seq 1 300); do
    if as_postgres "$bin/pg_isready" -h 127.0.0.1 -p "$port" -q; then
      return 0
    fi
    sleep 0.1
  done
  echo "node on port $port did not come up" >&2
  return 1
}

start_node() {
  local node="$1"
  as_postgres "$bin/pg_ctl" -D "$(node_dir "$node")/data" -l "$(node_dir "$node")/log" -w -t 60 start >/dev/null
  wait_ready "$(port_of "$node")"
}

case "$what" in
start)
  port="${3:?the port of the primary}"
  [ -x "$bin/initdb" ] || { echo "PostgreSQL 15 is not installed: apt-get install postgresql-15" >&2; exit 3; }
  mkdir -p "$dir"
  chown postgres: "$dir" 2>/dev/null || true
  chmod 700 "$dir"
  as_postgres mkdir -p "$(node_dir 0)"
  echo "$port" | as_postgres tee "$(node_dir 0)/port" >/dev/null
  as_postgres "$bin/initdb" -D "$(node_dir 0)/data" -U postgres -A trust --no-sync >/dev/null
  as_postgres tee -a "$(node_dir 0)/data/postgresql.conf" >/dev/null <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$(node_dir 0)'
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
synchronous_commit = on
synchronous_standby_names = 'ANY 1 (s1, s2)'
fsync = on
shared_buffers = 32MB
max_connections = 50
wal_keep_size = 256MB
CONF
  echo "host replication all 127.0.0.1/32 trust" | as_postgres tee -a "$(node_dir 0)/data/pg_hba.conf" >/dev/null
  # The first line that matches decides: the password rule goes before initdb's trust lines.
  hba="$(node_dir 0)/data/pg_hba.conf"
  { echo "host all neuron_secret 127.0.0.1/32 scram-sha-256"; cat "$hba"; } | as_postgres tee "$hba.new" >/dev/null
  as_postgres mv "$hba.new" "$hba"
  start_node 0
  # No standby yet: these two commit without waiting for one.
  psql_on "$port" -c "SET synchronous_commit = local" -c "CREATE ROLE neuron LOGIN" -c "GRANT pg_monitor TO neuron" \
    -c "SET password_encryption = 'scram-sha-256'" -c "CREATE ROLE neuron_secret LOGIN PASSWORD 'right'" \
    -c "CREATE DATABASE neuron OWNER neuron"
  for node in 1 2; do
    standby_port=$((port + node))
    as_postgres mkdir -p "$(node_dir "$node")"
    echo "$standby_port" | as_postgres tee "$(node_dir "$node")/port" >/dev/null
    # A fast checkpoint (not a spread one) to copy from; no -R: its postgresql.auto.conf would
    # override the application_name the synchronous standby names match.
    as_postgres "$bin/pg_basebackup" -h 127.0.0.1 -p "$port" -U postgres -D "$(node_dir "$node")/data" \
      -X stream -c fast --no-sync >/dev/null
    as_postgres touch "$(node_dir "$node")/data/standby.signal"
    as_postgres tee -a "$(node_dir "$node")/data/postgresql.conf" >/dev/null <<CONF
port = $standby_port
unix_socket_directories = '$(node_dir "$node")'
primary_conninfo = 'host=127.0.0.1 port=$port user=postgres application_name=s$node'
CONF
    start_node "$node"
  done
  # Both standbys streaming, as synchronous candidates.
  for _ in $(seq 1 300); do
    streaming="$(psql_on "$port" -c "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")"
    [ "$streaming" = 2 ] && break
    sleep 0.1
  done
  echo "postgres://neuron@127.0.0.1:$port/neuron"
  ;;
stop)
  for node in 0 1 2; do
    [ -d "$(node_dir "$node")/data" ] || continue
    as_postgres "$bin/pg_ctl" -D "$(node_dir "$node")/data" -m immediate -w stop >/dev/null 2>&1 || true
  done
  ;;
kill-primary)
  pid="$(head -n 1 "$(node_dir 0)/data/postmaster.pid")"
  kill -9 "$pid"
  # The postmaster's children go with it (they notice their parent is gone).
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  ;;
stop-node)
  as_postgres "$bin/pg_ctl" -D "$(node_dir "${3:?node}")/data" -m fast -w stop >/dev/null
  ;;
start-node)
  start_node "${3:?node}"
  ;;
promote)
  node="${3:-}"
  if [ -z "$node" ]; then
    # The standby that received the most WAL: the only safe choice after the primary is lost.
    best=""
    best_lsn=""
    for candidate in 1 2; do
      lsn="$(psql_on "$(port_of "$candidate")" -c "SELECT pg_last_wal_receive_lsn()" 2>/dev/null || true)"
      [ -n "$lsn" ] || continue
      if [ -z "$best" ] || [ "$(psql_on "$(port_of "$candidate")" -c "SELECT pg_wal_lsn_diff('$lsn', '$best_lsn') > 0")" = t ]; then
        best="$candidate"
        best_lsn="$lsn"
      fi
    done
    node="${best:?no standby answered}"
  fi
  as_postgres "$bin/pg_ctl" -D "$(node_dir "$node")/data" -w promote >/dev/null
  new_port="$(port_of "$node")"
  for _ in $(seq 1 300); do
    [ "$(psql_on "$new_port" -c "SELECT pg_is_in_recovery()")" = f ] && break
    sleep 0.1
  done
  # The other standby follows the new primary (it received no more WAL than the one promoted, so
  # it can switch to the new timeline): with it streaming, 'ANY 1 (s1, s2)' is met again.
  for other in 1 2; do
    [ "$other" = "$node" ] && continue
    as_postgres "$bin/pg_ctl" -D "$(node_dir "$other")/data" status >/dev/null 2>&1 || continue
    as_postgres tee -a "$(node_dir "$other")/data/postgresql.conf" >/dev/null <<CONF
primary_conninfo = 'host=127.0.0.1 port=$new_port user=postgres application_name=s$other'
CONF
    as_postgres "$bin/pg_ctl" -D "$(node_dir "$other")/data" -l "$(node_dir "$other")/log" -m fast -w -t 60 restart >/dev/null
    for _ in $(seq 1 300); do
      streaming="$(psql_on "$new_port" -c "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")"
      [ "$streaming" -ge 1 ] && break
      sleep 0.1
    done
  done
  echo "$new_port"
  ;;
sql)
  port="${3:?the port}"
  as_postgres "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d "${5:-neuron}" -X -A -t -q -v ON_ERROR_STOP=1 -c "${4:?SQL}"
  ;;
status)
  for node in 0 1 2; do
    port="$(port_of "$node" 2>/dev/null || true)"
    [ -n "$port" ] || continue
    state="$(psql_on "$port" -c "SELECT CASE WHEN pg_is_in_recovery() THEN 'standby ' || pg_last_wal_receive_lsn() ELSE 'primary ' || pg_current_wal_lsn() END" 2>/dev/null || echo down)"
    echo "node$node port $port: $state"
  done
  ;;
*)
  echo "unknown command $what" >&2
  exit 2
  ;;
esac
