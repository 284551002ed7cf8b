#!/usr/bin/env bash
# End-to-end figures for the README: one `commerce start` node on a fresh data directory,
# driven by `commerce bench` (librdkafka). Usage: bench/run-e2e.sh [records] (default 2000000).
set -euo pipefail
cd "$(dirname "$0")/.."
records="${1:-2000000}"
cargo build --release -p commerce >/dev/null
bin=target/release/commerce
data=$(mktemp -d)
kafka_port=$((20000 + RANDOM % 10000))
http_port=$((kafka_port + 1))
"$bin" start --data-dir "$data" --kafka-addr "127.0.0.1:$kafka_port" --http-addr "127.0.0.1:$http_port" \
  --log-flush interval:1000 >"$data/node.log" 2>&1 &
node=$!
trap 'kill -TERM $node 2>/dev/null; wait $node 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$kafka_port") 2>/dev/null && break
  sleep 0.1
done
brokers="127.0.0.1:$kafka_port"
echo "== produce, 1 KiB records, acks=1, 1 partition"
"$bin" bench produce -b "$brokers" -t bench-acks1 --partitions 1 -n "$records" --acks 1 2>/dev/null
echo "== consume (librdkafka), the same topic"
"$bin" bench consume -b "$brokers" -t bench-acks1 -n "$records" 2>/dev/null
echo "== fetch (raw Fetch requests, no record decoding), the same topic"
"$bin" bench fetch -b "$brokers" -t bench-acks1 2>/dev/null
echo "== produce, 1 KiB records, acks=all, 1 partition"
"$bin" bench produce -b "$brokers" -t bench-acksall --partitions 1 -n "$records" --acks all 2>/dev/null
