//! Bad input on the Kafka port is refused (the connection is closed) and changes nothing:
//! a client on another connection keeps producing and consuming, and the node stays up.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use commerce_tests::{Node, TimeLimit, kafka};

/// How long the broker has to close a connection after bad input.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn garbage_frames_are_refused_while_a_client_keeps_working() {
    let _limit = TimeLimit::new(
        "garbage_frames_are_refused_while_a_client_keeps_working",
        Duration::from_secs(120),
    );
    let mut node = Node::start();
    with_client_traffic(&mut node, "garbage", |node| {
        // A well-framed request with an API key that does not exist and random content.
        let mut framed = random_bytes(1, 516);
        framed[..4].copy_from_slice(&512_i32.to_be_bytes());
        framed[4..6].copy_from_slice(&0x4242_u16.to_be_bytes());
        assert_closed(
            node,
            &framed,
            "a frame with an unknown API key and random body",
        );

        // Random bytes with no structure at all.
        assert_closed(node, &random_bytes(2, 4096), "4 KiB of random bytes");

        // A valid header for ApiVersions v3 followed by a body that is truncated garbage.
        let mut truncated = Vec::new();
        truncated.extend_from_slice(&12_i32.to_be_bytes()); // length: exactly the header below
        truncated.extend_from_slice(&18_i16.to_be_bytes()); // ApiVersions
        truncated.extend_from_slice(&3_i16.to_be_bytes()); // v3 (flexible)
        truncated.extend_from_slice(&7_i32.to_be_bytes()); // correlation id
        truncated.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff]); // client id length way past the frame
        assert_closed(
            node,
            &truncated,
            "a request whose fields run past its frame",
        );
    });
}

#[test]
fn oversized_and_negative_frame_lengths_are_refused_while_a_client_keeps_working() {
    let _limit = TimeLimit::new(
        "oversized_and_negative_frame_lengths_are_refused_while_a_client_keeps_working",
        Duration::from_secs(120),
    );
    let mut node = Node::start();
    with_client_traffic(&mut node, "oversized", |node| {
        // 1 GiB announced: the broker must refuse it from the length prefix alone, not wait
        // for (or allocate) the body.
        let mut oversized = (1_i32 << 30).to_be_bytes().to_vec();
        oversized.extend_from_slice(&random_bytes(3, 1024));
        assert_closed(node, &oversized, "a 1 GiB length prefix");

        let mut negative = (-1_i32).to_be_bytes().to_vec();
        negative.extend_from_slice(&random_bytes(4, 64));
        assert_closed(node, &negative, "a negative length prefix");
    });
}

/// Runs `attack` while a producer sends records in the background, then checks that every
/// record was acknowledged and reads back, and that the node is still running.
fn with_client_traffic(node: &mut Node, name: &str, attack: impl FnOnce(&Node)) {
    let topic = format!("bad-frames-{name}");
    kafka::create_topic(&node.bootstrap(), &topic, 2, &[]);
    let producer = Arc::new(kafka::producer(&node.bootstrap(), &[]));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = std::thread::spawn({
        let (producer, stop, topic) = (Arc::clone(&producer), Arc::clone(&stop), topic.clone());
        move || {
            let mut sent = 0_u32;
            // At least 200 records, and keep going until the attack is over.
            while sent < 200 || !stop.load(Ordering::Relaxed) {
                kafka::send(
                    &producer,
                    &topic,
                    Some(&format!("k{}", sent % 4)),
                    &format!("v{sent}"),
                    None,
                    None,
                );
                sent += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            sent
        }
    });

    attack(node);

    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().expect("the sender thread panicked");
    let acked = kafka::flush_all_acked(&producer);
    assert_eq!(
        acked.len(),
        sent as usize,
        "every record sent during the attack is acknowledged"
    );
    let stored = kafka::read_all(&node.bootstrap(), &topic, &[0, 1], Duration::from_secs(60));
    let mut stored_values: Vec<&[u8]> = stored.iter().map(|r| r.value.as_slice()).collect();
    let mut acked_values: Vec<&[u8]> = acked.iter().map(|r| r.value.as_slice()).collect();
    stored_values.sort_unstable();
    acked_values.sort_unstable();
    assert!(
        stored_values == acked_values,
        "the records read back are exactly those acknowledged"
    );
    node.assert_running();
}

/// Sends `bytes` on a fresh connection and asserts the broker closes it.
fn assert_closed(node: &Node, bytes: &[u8], what: &str) {
    let mut stream = TcpStream::connect_timeout(&node.kafka_addr(), Duration::from_secs(5))
        .expect("cannot connect");
    stream
        .set_read_timeout(Some(CLOSE_TIMEOUT))
        .expect("set_read_timeout");
    stream
        .set_write_timeout(Some(CLOSE_TIMEOUT))
        .expect("set_write_timeout");
    // A write error means the broker already closed the connection, which is the point.
    if stream.write_all(bytes).is_err() {
        return;
    }
    let mut buf = [0_u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue, // an error response before closing is fine
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::BrokenPipe
                ) =>
            {
                return;
            }
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("{what}: the broker kept the connection open for {CLOSE_TIMEOUT:?}")
            }
            Err(error) => panic!("{what}: unexpected read error {error}"),
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift64), so a failure can be replayed.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1D_u64 ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}
