"""A second, independent Kafka client against a commerce node: kafka-python.

Produces N keyed records with KafkaProducer (acks=all), then consumes them as a member of a
consumer group with KafkaConsumer, commits synchronously and reads the committed offsets
back. Prints one JSON object on stdout for the Rust test (tests/tests/python_client.rs) to
check; exits non-zero on any client error.

usage: roundtrip.py BOOTSTRAP TOPIC GROUP N
"""

import json
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition


def main():
    bootstrap, topic, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    futures = [
        producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
        for i in range(count)
    ]
    producer.flush(timeout=30)
    acked = [future.get(timeout=30) for future in futures]
    producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=10000,
        heartbeat_interval_ms=1000,
    )
    values = []
    deadline = time.time() + 60
    while len(values) < count and time.time() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            values.extend(record.value.decode() for record in records)
    consumer.commit()
    partitions = sorted(consumer.partitions_for_topic(topic))
    committed = {
        str(partition): consumer.committed(TopicPartition(topic, partition))
        for partition in partitions
    }
    consumer.close()

    print(json.dumps({
        "acked": len(acked),
        "acked_offsets": {
            str(partition): max(
                (meta.offset for meta in acked if meta.partition == partition), default=-1
            )
            for partition in partitions
        },
        "values": sorted(values),
        "committed": committed,
    }))


if __name__ == "__main__":
    main()
