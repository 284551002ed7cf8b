#![allow(clippy::unwrap_used, clippy::indexing_slicing)]
use super::*;

fn key(seed: u8) -> RecordKey {
    RecordKey::from_bytes([seed; KEY_LEN]).unwrap()
}

const VALUE: &[u8] = br#"{"id":"e-1","type":"ReleaseInventory","aggregate_id":"ord-1","data":{}}"#;

fn record(value: &[u8]) -> SignedRecord<'_> {
    SignedRecord {
        topic: "inventory-commands",
        key: Some(b"ord-1"),
        value: Some(value),
    }
}

#[test]
fn a_signed_record_verifies_under_the_same_key() {
    let key = key(7);
    let header = key.sign(record(VALUE));
    assert!(header.starts_with(&format!("v1:{}:", key.id())));
    assert_eq!(key.verify(record(VALUE), Some(header.as_bytes())), Ok(()));
    // The same key rebuilt from its operator copy verifies it too.
    let copy = RecordKey::from_hex(&format!("{}\n", key.to_hex()), "copy").unwrap();
    assert_eq!(copy, key);
    assert_eq!(copy.verify(record(VALUE), Some(header.as_bytes())), Ok(()));
}

#[test]
fn a_record_without_the_header_is_unsigned() {
    assert_eq!(
        key(7).verify(record(VALUE), None),
        Err(Unverified::Unsigned)
    );
}

#[test]
fn a_tampered_payload_key_or_topic_does_not_verify() {
    let key = key(7);
    let header = key.sign(record(VALUE));
    let altered = VALUE
        .to_vec()
        .into_iter()
        .map(|b| if b == b'1' { b'2' } else { b })
        .collect::<Vec<u8>>();
    assert_eq!(
        key.verify(record(&altered), Some(header.as_bytes())),
        Err(Unverified::Mismatch)
    );
    let other_key = SignedRecord {
        key: Some(b"ord-2"),
        ..record(VALUE)
    };
    assert_eq!(
        key.verify(other_key, Some(header.as_bytes())),
        Err(Unverified::Mismatch)
    );
    let no_key = SignedRecord {
        key: None,
        ..record(VALUE)
    };
    assert_eq!(
        key.verify(no_key, Some(header.as_bytes())),
        Err(Unverified::Mismatch)
    );
    let other_topic = SignedRecord {
        topic: "payment-commands",
        ..record(VALUE)
    };
    assert_eq!(
        key.verify(other_topic, Some(header.as_bytes())),
        Err(Unverified::Mismatch)
    );
    // Moving bytes between key and value does not make the same input.
    let shifted = SignedRecord {
        topic: "inventory-commands",
        key: Some(b"ord-1{"),
        value: Some(&VALUE[1..]),
    };
    assert_eq!(
        key.verify(shifted, Some(header.as_bytes())),
        Err(Unverified::Mismatch)
    );
}

#[test]
fn a_signature_made_with_another_key_is_refused_as_such() {
    let ours = key(7);
    let theirs = key(8);
    let header = theirs.sign(record(VALUE));
    assert_eq!(
        ours.verify(record(VALUE), Some(header.as_bytes())),
        Err(Unverified::OtherKey {
            found: theirs.id().to_string(),
            expected: ours.id().to_string()
        })
    );
    // Claiming our key id does not help without our key.
    let forged = header.replace(theirs.id(), ours.id());
    assert_eq!(
        ours.verify(record(VALUE), Some(forged.as_bytes())),
        Err(Unverified::Mismatch)
    );
}

#[test]
fn a_header_that_is_not_a_v1_signature_is_malformed() {
    let key = key(7);
    let good = key.sign(record(VALUE));
    for bad in [
        String::new(),
        "garbage".to_string(),
        good.replacen("v1", "v2", 1),
        format!("{good}:extra"),
        format!("v1:{}:zz", key.id()),
        format!("v1:{}:abc", key.id()),
    ] {
        assert_eq!(
            key.verify(record(VALUE), Some(bad.as_bytes())),
            Err(Unverified::Malformed),
            "{bad}"
        );
    }
    assert_eq!(
        key.verify(record(VALUE), Some(&[0xff, 0xfe])),
        Err(Unverified::Malformed)
    );
}

#[test]
fn derived_keys_are_stable_per_secret_and_differ_between_secrets() {
    let one = RecordKey::derive(b"a shared secret").unwrap();
    assert_eq!(one, RecordKey::derive(b"a shared secret").unwrap());
    assert_ne!(one, RecordKey::derive(b"another secret").unwrap());
    assert_ne!(one.to_hex(), hex(b"a shared secret"));
    assert!(RecordKey::from_hex("abcd", "short").is_err());
    assert!(RecordKey::from_hex(&"g".repeat(64), "not hex").is_err());
    assert_eq!(format!("{one:?}"), format!("RecordKey({})", one.id()));
}

#[tokio::test]
async fn waiting_for_the_key_ends_when_it_is_installed_or_on_stop() {
    let keys = RecordKeys::default();
    let (stop, mut stopped) = watch::channel(false);
    let waiting = {
        let keys = keys.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move { keys.wait(&mut stopped).await })
    };
    tokio::task::yield_now().await;
    keys.install(key(3));
    assert_eq!(waiting.await.unwrap(), Some(key(3)));

    let empty = RecordKeys::default();
    stop.send(true).unwrap();
    assert_eq!(empty.wait(&mut stopped).await, None);
}
