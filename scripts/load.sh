#!/usr/bin/env bash
# Load measurements of a release `neuron serve` on loopback: the README's server numbers come from
# here. Not a test (the machine's speed decides the numbers, not the code's correctness): run it by
# hand on a quiet machine, and compare builds in one run, interleaved.
#
#   scripts/load.sh queue [BINARY…]        RSS holding 1,000 live + 10,000 queued upgrades, two
#                                          floods in a row, and its peak while each drains
#   scripts/load.sh rate  [BINARY…]        handshakes/s, latency and CPU µs a handshake:
#                                          new and existing relationships at c = 1, 16, 128
#                                          (RECEIPT=1: every handshake asks for a receipt; the
#                                          first binary must know --receipt; RECEIPT=first: only
#                                          the first binary's, against builds without receipts)
#   scripts/load.sh backends [BINARY]      the same (new relationships), on sled and on PostgreSQL
#                                          side by side: a primary and two synchronous standbys
#                                          started on this machine (scripts/pg-cluster.sh, needs
#                                          postgresql-15), whose CPU is reported too
#
# BINARY defaults to target/release/neuron (built if missing); give a second one (say, a build of
# the commit before) to measure both in one run. The load itself always comes from the first
# binary's `loadgen`, so that only the server differs. N=… sets the handshakes a rate run makes
# (default 20000), ROUNDS=… how many times each is repeated (default 2); a rate run can be narrowed
# to MODES=… (default "new existing") and CS=… (default "1 16 128").
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-rate}"
shift || true
binaries=("$@")
if [ ${#binaries[@]} -eq 0 ]; then
  [ -x target/release/neuron ] || cargo build --release --quiet
  binaries=(target/release/neuron)
fi
loadgen="${binaries[0]}"
n="${N:-20000}"
rounds="${ROUNDS:-2}"
scratch="$(mktemp -d)"
server=""
cluster=""
trap '[ -n "$server" ] && kill -9 "$server" 2>/dev/null; [ -n "$cluster" ] && scripts/pg-cluster.sh stop "$cluster"; rm -rf "$scratch"' EXIT

# Starts BINARY on a fresh data directory with the environment given; sets $server and $addr
# and $admin. With CONFIG set, serves with that configuration file.
start() {
  local binary="$1"
  shift
  local data="$scratch/data-$RANDOM"
  mkdir -p "$data"
  env "$@" NEURON_ADMIN__PORT=0 "$binary" serve --data-dir "$data" --port 0 \
    ${CONFIG:+--config "$CONFIG"} >"$data/serve.log" 2>&1 &
  server=$!
  for _ in $(seq 1 600); do
    [ -s "$data/serve.addr" ] && [ -s "$data/admin.addr" ] && break
    sleep 0.05
  done
  addr="$(cat "$data/serve.addr")"
  admin="$(cat "$data/admin.addr")"
}

stop() {
  kill -TERM "$server"
  wait "$server" || true
  server=""
}

# User plus system CPU of the server so far, in clock ticks.
ticks() {
  awk '{ print $14 + $15 }' "/proc/$server/stat"
}

# User plus system CPU of every PostgreSQL process so far, in clock ticks: every process of the
# postgres user (backends rename themselves, so their command lines do not name the cluster), which
# on a machine running nothing else of PostgreSQL is the cluster this script started.
cluster_ticks() {
  local total=0 pid
  for pid in $(pgrep -u postgres || true); do
    total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

metric() {
  curl -s "http://$admin/metrics" | awk -v name="$1" '$1 == name { print $2 }'
}

rss() {
  awk -v key="$1:" '$1 == key { printf "%.1f MiB", $2 / 1024 }' "/proc/$server/status"
}

case "$what" in
queue)
  # Two floods on one server, one after the other (SPEC §7: within 64 MiB when full, every time):
  # the resident set when both are full, and its peak while each drains.
  for binary in "${binaries[@]}"; do
    start "$binary" NEURON_WEBSOCKET__MAX_CONCURRENT_HANDSHAKES=1000 \
      NEURON_WEBSOCKET__MAX_QUEUED=10000 NEURON_WEBSOCKET__QUEUE_TIMEOUT_MS=600000
    echo "== $binary: 1,000 live + 10,000 queued, twice (RSS at start $(rss VmRSS))"
    for flood in 1 2; do
      "$loadgen" loadgen --mode idle --n 11000 --c 11000 \
        --url "ws://$addr/ws/handshake" >/dev/null 2>&1 &
      load=$!
      # Wait (up to two minutes) until both are full, then read the resident set.
      live=0
      queued=0
      for _ in $(seq 1 1200); do
        live="$(metric neuron_live_sessions)"
        queued="$(metric neuron_queue_length)"
        if [ "${live:-0}" -ge 1000 ] && [ "${queued:-0}" -ge 10000 ]; then
          break
        fi
        sleep 0.1
      done
      full="$(rss VmRSS)"
      # The peak so far stands for the fill; what follows, until all is drained, for the drain.
      kill "$load" 2>/dev/null || true
      wait "$load" 2>/dev/null || true
      drain_peak=0
      for _ in $(seq 1 1200); do
        now="$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$server/status")"
        drain_peak=$((now > drain_peak ? now : drain_peak))
        live="$(metric neuron_live_sessions)"
        queued="$(metric neuron_queue_length)"
        [ "${live:-1}" -eq 0 ] && [ "${queued:-1}" -eq 0 ] && break
        sleep 0.1
      done
      echo "flood $flood: full (live and queued) RSS $full; drained: RSS $(rss VmRSS), drain peak $(awk -v kb="$drain_peak" 'BEGIN { printf "%.1f MiB", kb / 1024 }'), process peak $(rss VmHWM)"
    done
    stop
  done
  ;;
rate)
  for round in $(seq 1 "$rounds"); do
    for mode in ${MODES:-new existing}; do
      for c in ${CS:-1 16 128}; do
        for binary in "${binaries[@]}"; do
          start "$binary" NEURON_WEBSOCKET__MAX_CONCURRENT_HANDSHAKES=1000
          before="$(ticks)"
          receipt=""
          if [ "${RECEIPT:-}" = 1 ] || { [ "${RECEIPT:-}" = first ] && [ "$binary" = "${binaries[0]}" ]; }; then
            receipt="--receipt"
          fi
          result="$("$loadgen" loadgen --mode "$mode" --n "$n" --c "$c" $receipt \
            --url "ws://$addr/ws/handshake" || true)"
          after="$(ticks)"
          completed="$(echo "$result" | awk '{ print $1 }')"
          hz="$(getconf CLK_TCK)"
          cpu="$(awk -v t=$((after - before)) -v hz="$hz" -v n="$completed" \
            'BEGIN { if (n > 0) printf "%.0f", t / hz * 1e6 / n; else print "-" }')"
          echo "round $round $mode c=$c $binary: $result; server CPU $cpu µs a handshake, peak RSS $(rss VmHWM)"
          stop
        done
      done
    done
  done
  ;;
backends)
  binary="${binaries[0]}"
  cluster="$scratch/cluster"
  # The cluster runs as postgres, which must reach its folder inside this root-only scratch.
  chmod 711 "$scratch"
  port=$((20000 + RANDOM % 20000))
  url="$(scripts/pg-cluster.sh start "$cluster" "$port")"
  echo "== PostgreSQL 15: primary on $port, standbys s1 and s2, synchronous_standby_names = 'ANY 1 (s1, s2)', synchronous_commit = on, fsync = on"
  hz="$(getconf CLK_TCK)"
  for round in $(seq 1 "$rounds"); do
    for c in 1 16 128; do
      for backend in sled postgres; do
        config=""
        if [ "$backend" = postgres ]; then
          config="$scratch/postgres-$RANDOM.toml"
          cat >"$config" <<TOML
[storage]
backend = "postgres"
[storage.postgres]
url = "$url"
log = "load-$RANDOM$RANDOM"
[[providers]]
npi = "1234567893"
name = "Demo Provider"
TOML
        fi
        CONFIG="$config" start "$binary" NEURON_WEBSOCKET__MAX_CONCURRENT_HANDSHAKES=1000
        before="$(ticks)"
        cluster_before="$(cluster_ticks)"
        result="$("$loadgen" loadgen --mode new --n "$n" --c "$c" ${RECEIPT:+--receipt} \
          --url "ws://$addr/ws/handshake" || true)"
        after="$(ticks)"
        cluster_after="$(cluster_ticks)"
        completed="$(echo "$result" | awk '{ print $1 }')"
        cpu="$(awk -v t=$((after - before)) -v hz="$hz" -v n="$completed" \
          'BEGIN { if (n > 0) printf "%.0f", t / hz * 1e6 / n; else print "-" }')"
        database="$(awk -v t=$((cluster_after - cluster_before)) -v hz="$hz" -v n="$completed" \
          'BEGIN { if (n > 0) printf "%.0f", t / hz * 1e6 / n; else print "-" }')"
        extra=""
        [ "$backend" = postgres ] && extra="; the cluster's CPU $database µs a handshake"
        echo "round $round $backend c=$c: $result; server CPU $cpu µs a handshake$extra"
        stop
      done
    done
  done
  ;;
*)
  echo "usage: scripts/load.sh queue|rate|backends [BINARY…]" >&2
  exit 2
  ;;
esac
