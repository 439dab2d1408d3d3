#!/usr/bin/env bash
# Three PostgreSQL 15 nodes under Patroni (>= 4) and one etcd, on loopback, for the Neuron's log
# with automatic failover (docs/replication.md). Every node runs docs/patroni/node.yml with its
# {{…}} filled in: the configuration the docs give is the one tests/patroni.rs runs. PostgreSQL
# refuses root, so etcd, Patroni and PostgreSQL run as the user postgres, in DIR.
#
#   scripts/patroni-cluster.sh start DIR PORT   etcd on PORT (PORT+1 its peers), node N's
#                                               PostgreSQL on PORT+2+N, its REST API on PORT+5+N;
#                                               returns once a leader has both others streaming
#                                               in its quorum; prints the Neuron's URL
#   scripts/patroni-cluster.sh url DIR          the Neuron's URL: the three nodes, read-write
#   scripts/patroni-cluster.sh leader DIR       the node (0, 1, 2) that is the leader, once one is
#   scripts/patroni-cluster.sh kill-node DIR N  SIGKILL node N's Patroni, postmaster and backends
#                                               (its machine is lost)
#   scripts/patroni-cluster.sh start-node DIR N start node N's Patroni again (it rejoins, rewound)
#   scripts/patroni-cluster.sh streaming DIR K  waits until the leader has K standbys streaming
#   scripts/patroni-cluster.sh status DIR       patronictl list
#   scripts/patroni-cluster.sh stop DIR         everything, at once
#
# PATRONI_BIN is the folder holding `patroni` and `patronictl` (default target/patroni-venv/bin;
# `pip install 'patroni[etcd3,psycopg3]' 'psycopg[binary]'`); etcd is Debian's etcd-server.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/postgres-common.sh
source "$(dirname "$0")/postgres-common.sh"
patroni_bin="${PATRONI_BIN:-$root/target/patroni-venv/bin}"
what="${1:?usage: patroni-cluster.sh start|url|leader|kill-node|start-node|streaming|status|stop DIR ...}"
dir="${2:?the directory of the cluster}"

base() { cat "$dir/port"; }
api_port() { echo $(($(base) + 5 + $1)); }
pg_port() { echo $(($(base) + 2 + $1)); }

# Starts node N's Patroni in a session of its own; its session id goes to DIR/nN.sid.
start_node() {
  local node="$1"
  setsid bash -c 'echo $$ >"$1"; exec "${@:2}"' _ "$dir/n$node.sid" \
    runuser -u postgres -- "$patroni_bin/patroni" "$dir/n$node.yml" \
    >>"$dir/n$node.log" 2>&1 </dev/null &
  for _ in $(seq 1 100); do
    [ -s "$dir/n$node.sid" ] && return 0
    sleep 0.05
  done
}

# 0 when node N answers its REST API as the leader, running as the primary.
is_leader() {
  curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$(api_port "$1")/primary"
}

# The leader's node number, waiting up to 120 s for one.
leader() {
  for _ in $(seq 1 600); do
    for node in 0 1 2; do
      if is_leader "$node"; then
        echo "$node"
        return 0
      fi
    done
    sleep 0.2
  done
  echo "no leader after 120 s" >&2
  return 1
}

# Runs SQL as postgres on node N's socket.
sql_on() {
  local node="$1"
  shift
  as_postgres "$bin/psql" -h "$dir/n$node" -p "$(pg_port "$node")" -U postgres -d postgres -X -A -t -q \
    -v ON_ERROR_STOP=1 "$@"
}

# Waits up to 120 s until $1 standbys stream in the leader's quorum as Patroni's etcd records it
# (role quorum_standby), each having replayed all the leader wrote. synchronous_standby_names names them a little before: a leader lost in
# between leaves no node Patroni may promote.
streaming() {
  local want="$1" node count
  for _ in $(seq 1 600); do
    node="$(leader)"
    count="$(curl -fs --max-time 2 "http://127.0.0.1:$(api_port "$node")/cluster" | python3 -c '
import json, sys
members = json.load(sys.stdin)["members"]
print(sum(1 for m in members if m.get("role") == "quorum_standby" and m.get("state") == "streaming" and m.get("lag") == 0 and m.get("replay_lag") == 0))
' 2>/dev/null || true)"
    if [ "$count" = "$want" ]; then
      return 0
    fi
    sleep 0.2
  done
  echo "the leader does not have $want standbys in its quorum after 120 s" >&2
  return 1
}

url() {
  local b
  b="$(base)"
  echo "postgres://neuron:$(cat "$dir/neuron.password")@127.0.0.1:$((b + 2)),127.0.0.1:$((b + 3)),127.0.0.1:$((b + 4))/neuron?target_session_attrs=read-write"
}

case "$what" in
start)
  port="${3:?the first port of the cluster}"
  [ -x "$bin/initdb" ] || { echo "PostgreSQL 15 is not installed: apt-get install postgresql-15" >&2; exit 3; }
  command -v etcd >/dev/null || { echo "etcd is not installed: apt-get install etcd-server" >&2; exit 3; }
  [ -x "$patroni_bin/patroni" ] || { echo "Patroni is not in $patroni_bin: pip install 'patroni[etcd3,psycopg3]' 'psycopg[binary]'" >&2; exit 3; }
  mkdir -p "$dir"
  chown postgres: "$dir" 2>/dev/null || true
  chmod 700 "$dir"
  echo "$port" >"$dir/port"
  secret() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }
  secret >"$dir/neuron.password"
  superuser="$(secret)"
  replication="$(secret)"
  rewind="$(secret)"
  as_postgres etcd --name e0 --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
    --listen-peer-urls "http://127.0.0.1:$((port + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((port + 1))" \
    --initial-cluster "e0=http://127.0.0.1:$((port + 1))" >"$dir/etcd.log" 2>&1 </dev/null &
  echo $! >"$dir/etcd.pid"
  for _ in $(seq 1 300); do
    curl -fs --max-time 2 "http://127.0.0.1:$port/health" | grep -q '"health":"true"' && break
    sleep 0.1
  done
  for node in 0 1 2; do
    mkdir -p "$dir/n$node"
    sed -e "s|{{NAME}}|n$node|g" -e "s|{{HOST}}|127.0.0.1|g" \
      -e "s|{{API_PORT}}|$(api_port "$node")|g" -e "s|{{PG_PORT}}|$(pg_port "$node")|g" \
      -e "s|{{ETCD_HOSTS}}|127.0.0.1:$port|g" -e "s|{{DATA_DIR}}|$dir/n$node/data|g" \
      -e "s|{{SOCKET_DIR}}|$dir/n$node|g" -e "s|{{NETWORK}}|127.0.0.1/32|g" \
      -e "s|{{SUPERUSER_PASSWORD}}|$superuser|g" -e "s|{{REPLICATION_PASSWORD}}|$replication|g" \
      -e "s|{{REWIND_PASSWORD}}|$rewind|g" "$root/docs/patroni/node.yml" >"$dir/n$node.yml"
    if grep -q '{{' "$dir/n$node.yml"; then
      echo "docs/patroni/node.yml has a field this script does not fill in" >&2
      exit 1
    fi
  done
  chown -R postgres: "$dir" 2>/dev/null || true
  chmod 600 "$dir"/n?.yml "$dir/neuron.password"
  # The first node bootstraps the cluster; the others copy it once it leads.
  start_node 0
  [ "$(leader)" = 0 ]
  neuron_password="$(cat "$dir/neuron.password")"
  sql_on 0 -c "SET synchronous_commit = local" \
    -c "CREATE ROLE neuron LOGIN PASSWORD '$neuron_password'" -c "GRANT pg_monitor TO neuron" \
    -c "CREATE DATABASE neuron OWNER neuron"
  start_node 1
  start_node 2
  streaming 2
  url
  ;;
url)
  url
  ;;
leader)
  leader
  ;;
streaming)
  streaming "${3:?how many standbys}"
  ;;
kill-node)
  node="${3:?node}"
  # The postmaster runs in a session of its own (Patroni starts it so): both sessions go.
  postmaster="$(head -n 1 "$dir/n$node/data/postmaster.pid" 2>/dev/null || true)"
  pkill -KILL -s "$(cat "$dir/n$node.sid")" || true
  if [ -n "$postmaster" ]; then
    pkill -KILL -P "$postmaster" || true
    kill -KILL "$postmaster" 2>/dev/null || true
    pkill -KILL -s "$postmaster" || true
  fi
  for _ in $(seq 1 100); do
    [ -n "$postmaster" ] && kill -0 "$postmaster" 2>/dev/null || break
    sleep 0.05
  done
  ;;
start-node)
  rm -f "$dir/n${3:?node}.sid"
  start_node "$3"
  ;;
status)
  as_postgres "$patroni_bin/patronictl" -c "$dir/n0.yml" list
  ;;
stop)
  for node in 0 1 2; do
    [ -s "$dir/n$node.sid" ] && { pkill -KILL -s "$(cat "$dir/n$node.sid")" || true; }
    [ -d "$dir/n$node/data" ] && as_postgres "$bin/pg_ctl" -D "$dir/n$node/data" -m immediate -w stop >/dev/null 2>&1 || true
  done
  [ -s "$dir/etcd.pid" ] && { kill -KILL "$(cat "$dir/etcd.pid")" 2>/dev/null || true; }
  pkill -KILL -f "etcd --name e0 --data-dir $dir/etcd" || true
  ;;
*)
  echo "unknown command $what" >&2
  exit 2
  ;;
esac
