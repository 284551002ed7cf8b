#!/usr/bin/env bash
# Produce figures for a replicated cluster against one node: three `commerce start` nodes
# formed with --peers on fresh data directories (every partition a Raft group on all three),
# driven by `commerce bench produce --acks all`; then one single node (no --peers) driven
# with --acks 1. Then `commerce bench transactions` on each (transactions of 10 records over
# every partition, one after the other).
# Usage: bench/run-cluster.sh [records] [partitions] (default 300000, 3).
# COMMERCE_BIN=<path> uses that binary instead of building target/release/commerce.
set -euo pipefail
cd "$(dirname "$0")/.."
records="${1:-300000}"
partitions="${2:-3}"
# The paced runs send this many records at 5000/s (10 s), for latency rather than queueing.
paced=50000
# Transactions per transactional run.
transactions=300
if [[ -n "${COMMERCE_BIN:-}" ]]; then
  bin="$COMMERCE_BIN"
else
  cargo build --release -p commerce >/dev/null
  bin=target/release/commerce
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Ports: node N of the cluster gets base+3N (Kafka), +1 (HTTP), +2 (Raft); the single node
# gets base+12 and base+13.
base=$((20000 + RANDOM % 20000))
kafka_port() { echo $((base + 3 * $1)); }
http_port() { echo $((base + 3 * $1 + 1)); }
raft_port() { echo $((base + 3 * $1 + 2)); }
for port in $(seq "$base" $((base + 14))); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is taken; run again" >&2
    exit 1
  fi
done

wait_for_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1 after 20 s; node logs in $work" >&2
  tail -n 20 "$work"/*.log >&2
  return 1
}

# Waits until `commerce topic describe` names a leader for every partition of topic $2 on
# brokers $1.
wait_for_leaders() {
  for _ in $(seq 1 60); do
    local described
    described=$("$bin" topic describe "$2" -b "$1" 2>/dev/null || true)
    local led
    led=$(awk '$1 ~ /^[0-9]+$/ && $2 >= 0 && $NF ~ /\]$/ { n++ } END { print n + 0 }' <<<"$described")
    if [[ "$led" -ge "$partitions" ]]; then
      echo "$described"
      return 0
    fi
    sleep 0.5
  done
  echo "topic $2 has no leader for every partition after 30 s:" >&2
  echo "$described" >&2
  return 1
}

peers=""
for id in 1 2 3; do peers+="${peers:+,}$id=127.0.0.1:$(raft_port "$id")"; done
brokers=""
for id in 1 2 3; do
  mkdir -p "$work/node-$id"
  "$bin" start --node-id "$id" --data-dir "$work/node-$id" \
    --kafka-addr "127.0.0.1:$(kafka_port "$id")" --http-addr "127.0.0.1:$(http_port "$id")" \
    --raft-addr "127.0.0.1:$(raft_port "$id")" --peers "$peers" \
    --log-flush interval:1000 >"$work/node-$id.log" 2>&1 &
  pids+=($!)
  brokers+="${brokers:+,}127.0.0.1:$(kafka_port "$id")"
done
for id in 1 2 3; do wait_for_port "$(kafka_port "$id")"; done
# The controller group needs a leader, and all three nodes must have registered, before a
# topic with three replicas can be placed.
for _ in $(seq 1 60); do
  if curl -fsS "http://127.0.0.1:$(http_port 1)/cluster/status" 2>/dev/null |
    jq -e '(.nodes | length) == 3 and ([.groups[] | select(.group == 0 and .leader != null)] | length) == 1' >/dev/null 2>&1; then
    break
  fi
  sleep 0.5
done

echo "== 3-node cluster ($brokers): topic bench-cluster, $partitions partitions, replication factor 3"
"$bin" topic create bench-cluster -p "$partitions" -r 3 -b "$brokers" >/dev/null
wait_for_leaders "$brokers" bench-cluster
echo "== produce, 1 KiB records, acks=all, 3-node cluster"
"$bin" bench produce -b "$brokers" -t bench-cluster --partitions "$partitions" -n "$records" \
  --acks all 2>/dev/null
echo "== latency: 5000 records/s (1 KiB), acks=all, 3-node cluster"
"$bin" bench produce -b "$brokers" -t bench-cluster -n "$paced" --rate 5000 --linger-ms 1 \
  --acks all 2>/dev/null
echo "== transactions of 10 records (1 KiB), 3-node cluster"
"$bin" bench transactions -b "$brokers" -t bench-cluster -n "$transactions" \
  --records-per-txn 10 2>/dev/null

single=4
mkdir -p "$work/single"
"$bin" start --data-dir "$work/single" --kafka-addr "127.0.0.1:$(kafka_port "$single")" \
  --http-addr "127.0.0.1:$(http_port "$single")" --log-flush interval:1000 \
  >"$work/single.log" 2>&1 &
pids+=($!)
wait_for_port "$(kafka_port "$single")"
single_broker="127.0.0.1:$(kafka_port "$single")"
echo "== single node ($single_broker): topic bench-single, $partitions partitions"
"$bin" topic create bench-single -p "$partitions" -b "$single_broker" >/dev/null
wait_for_leaders "$single_broker" bench-single >/dev/null
echo "== produce, 1 KiB records, acks=1, single node"
"$bin" bench produce -b "$single_broker" -t bench-single --partitions "$partitions" \
  -n "$records" --acks 1 2>/dev/null
echo "== latency: 5000 records/s (1 KiB), acks=1, single node"
"$bin" bench produce -b "$single_broker" -t bench-single -n "$paced" --rate 5000 --linger-ms 1 \
  --acks 1 2>/dev/null
echo "== transactions of 10 records (1 KiB), single node"
"$bin" bench transactions -b "$single_broker" -t bench-single -n "$transactions" \
  --records-per-txn 10 2>/dev/null
