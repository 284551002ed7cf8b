//! Running `commerce` tool commands (topic, produce, consume, bench) as a user would.

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `commerce <args>` with `stdin` as its input; kills it and panics after `timeout`.
pub fn run(args: &[&str], stdin: &[u8], timeout: Duration) -> Output {
    let mut child = Command::new(crate::commerce_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run the commerce binary");
    // Feed and drain the pipes on their own threads so a full pipe never blocks the child.
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let mut out = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let mut err = child.stderr.take().expect("piped stderr");
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("cannot wait for commerce") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = reader.join().unwrap_or_default();
            let stderr = err_reader.join().unwrap_or_default();
            panic!(
                "`commerce {}` did not finish within {timeout:?}; stdout:\n{}\nstderr:\n{}",
                args.join(" "),
                tail(&stdout),
                tail(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    Output {
        status,
        stdout: reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// Runs a command that must succeed; returns its stdout.
pub fn run_ok(args: &[&str], stdin: &[u8], timeout: Duration) -> String {
    let output = run(args, stdin, timeout);
    assert!(
        output.status.success(),
        "`commerce {}` failed ({}):\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The last 8 KiB of a command's output: enough to see where it stood.
fn tail(output: &[u8]) -> String {
    let start = output.len().saturating_sub(8 * 1024);
    String::from_utf8_lossy(output.get(start..).unwrap_or_default()).into_owned()
}
