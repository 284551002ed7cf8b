//! `commerce demo` end to end: it starts its own node, seeds a catalog and stock, places
//! orders through the public API and prints the flow. It must exit 0 and name a confirmed and
//! a cancelled order.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::process::{Command, Stdio};
use std::time::Duration;

use commerce_tests::{TimeLimit, commerce_bin};

#[test]
fn demo_shows_a_confirmed_and_a_cancelled_order() {
    let _limit = TimeLimit::new("demo", Duration::from_secs(240));
    let output = Command::new(commerce_bin())
        .arg("demo")
        .stdin(Stdio::null())
        .output()
        .expect("cannot run commerce demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "commerce demo failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains(": CONFIRMED") || stdout.contains(": COMPLETED"),
        "no confirmed order in:\n{stdout}"
    );
    assert!(
        stdout.contains(": CANCELLED"),
        "no cancelled order in:\n{stdout}"
    );
    assert!(
        stdout.contains("payment_received"),
        "no notifications in:\n{stdout}"
    );
    assert!(stdout.contains("stopped the node"), "{stdout}");
}
