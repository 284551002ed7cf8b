//! A time limit per test. Rust's test harness has none, and a test blocked inside a client
//! call cannot be interrupted from its own thread, so a watchdog thread ends the whole test
//! process when a limit expires, after killing the nodes it started and printing their logs:
//! a hang becomes a loud failure instead of a stuck CI job and orphaned processes.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::Duration;

/// Running node processes, so the watchdog can kill them: (pid, log file).
static LIVE_NODES: Mutex<Vec<(u32, PathBuf)>> = Mutex::new(Vec::new());

pub(crate) fn register(pid: u32, log: PathBuf) {
    if let Ok(mut live) = LIVE_NODES.lock() {
        live.push((pid, log));
    }
}

pub(crate) fn unregister(pid: u32) {
    if let Ok(mut live) = LIVE_NODES.lock() {
        live.retain(|(live_pid, _)| *live_pid != pid);
    }
}

/// Ends the test process if dropped later than `limit` after creation.
pub struct TimeLimit {
    done: Sender<()>,
}

impl TimeLimit {
    pub fn new(name: &'static str, limit: Duration) -> TimeLimit {
        let (done, wait) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = wait.recv_timeout(limit) {
                eprintln!("\n*** test {name} exceeded its time limit of {limit:?}; aborting ***");
                let live = LIVE_NODES
                    .lock()
                    .map(|live| live.clone())
                    .unwrap_or_default();
                for (pid, log) in live {
                    let _ = std::process::Command::new("kill")
                        .arg("-KILL")
                        .arg(pid.to_string())
                        .status();
                    eprintln!("--- log of node pid {pid} ({}) ---", log.display());
                    eprintln!("{}", crate::node::tail(&log, 200));
                }
                std::process::exit(101);
            }
        });
        TimeLimit { done }
    }
}

impl Drop for TimeLimit {
    fn drop(&mut self) {
        let _ = self.done.send(());
    }
}
