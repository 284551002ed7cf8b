//! A second, independent client library against the broker: kafka-python (pure Python, its
//! own protocol implementation). tests/python/roundtrip.py produces records with
//! KafkaProducer and consumes them in a group with KafkaConsumer, committing; the offsets it
//! committed are then read back through librdkafka (OffsetFetch), so both clients agree on
//! what the broker stored. Needs `python3` with kafka-python 2.2.15 (`.ci/run` installs it).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use commerce_tests::{Node, TimeLimit, group, kafka};

const RECORDS: usize = 60;
const PARTITIONS: i32 = 3;

/// Runs the script; panics with its stderr unless it succeeds within `timeout`.
fn run_python(args: &[&str], timeout: Duration) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/roundtrip.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run python3 (install Python 3 and kafka-python==2.2.15)");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        err
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "roundtrip.py did not finish within {timeout:?}; stderr:\n{}",
                err_reader.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = err_reader.join().unwrap_or_default();
    assert!(
        status.success(),
        "roundtrip.py failed ({status}); is kafka-python==2.2.15 installed? stderr:\n{stderr}"
    );
    reader.join().unwrap()
}

#[test]
fn kafka_python_produces_consumes_in_a_group_and_commits() {
    let _limit = TimeLimit::new(
        "kafka_python_produces_consumes_in_a_group_and_commits",
        Duration::from_secs(180),
    );
    let node = Node::start();
    let bootstrap = node.bootstrap();
    kafka::create_topic(&bootstrap, "python-orders", PARTITIONS, &[]);

    let out = run_python(
        &[
            &bootstrap,
            "python-orders",
            "python-group",
            &RECORDS.to_string(),
        ],
        Duration::from_secs(150),
    );
    let report: serde_json::Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|error| panic!("roundtrip.py printed no JSON ({error}):\n{out}"));

    assert_eq!(report["acked"], RECORDS);
    let mut expected: Vec<String> = (0..RECORDS).map(|i| format!("v{i}")).collect();
    expected.sort();
    let values: Vec<String> = report["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|value| value.as_str().unwrap().to_string())
        .collect();
    assert_eq!(values, expected, "kafka-python consumed every record once");

    // What kafka-python committed is the end of each partition, and librdkafka reads the
    // same offsets back from the broker.
    let mut total = 0;
    for partition in 0..PARTITIONS {
        let (_, end) = kafka::watermarks(&bootstrap, "python-orders", partition);
        total += end;
        let key = partition.to_string();
        assert_eq!(
            report["committed"][&key], end,
            "kafka-python's view of {partition}"
        );
        assert_eq!(report["acked_offsets"][&key], end - 1);
        assert_eq!(
            group::committed(&bootstrap, "python-group", "python-orders", partition),
            Some(end),
            "librdkafka's view of {partition}"
        );
    }
    assert_eq!(total, RECORDS as i64);
}
