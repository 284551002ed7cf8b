//! `commerce cluster up`: a local cluster for development. One `commerce start` child
//! process per node, on ports counted up from the bases (node N gets base + N - 1), data in
//! `DIR/node-N`, output in `DIR/node-N.log`. Ctrl-c (or SIGTERM) stops every node with
//! SIGTERM, so each flushes and closes its logs as a lone node would.

use anyhow::Context;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// How many nodes
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=9))]
    nodes: u16,
    /// Where each node's data directory and log go
    #[arg(long, default_value = "./cluster")]
    data_dir: PathBuf,
    /// Kafka port of node 1
    #[arg(long, default_value_t = 9092)]
    kafka_port: u16,
    /// HTTP port of node 1
    #[arg(long, default_value_t = 8080)]
    http_port: u16,
    /// Raft port of node 1
    #[arg(long, default_value_t = 9701)]
    raft_port: u16,
}

struct Member {
    id: u16,
    kafka: SocketAddr,
    http: SocketAddr,
    raft: SocketAddr,
}

fn local(port: u16, id: u16) -> anyhow::Result<SocketAddr> {
    let port = port
        .checked_add(id - 1)
        .ok_or_else(|| anyhow::anyhow!("port {port} + {} is past 65535", id - 1))?;
    Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let members = (1..=args.nodes)
        .map(|id| {
            Ok(Member {
                id,
                kafka: local(args.kafka_port, id)?,
                http: local(args.http_port, id)?,
                raft: local(args.raft_port, id)?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let peers = members
        .iter()
        .map(|member| format!("{}={}", member.id, member.raft))
        .collect::<Vec<_>>()
        .join(",");
    let exe = std::env::current_exe().context("cannot find the commerce binary")?;
    let mut children: Vec<(u16, Child)> = Vec::new();
    let mut summary = String::new();
    for member in &members {
        let log_path = args.data_dir.join(format!("node-{}.log", member.id));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let child = Command::new(&exe)
            .arg("start")
            .args(["--node-id", &member.id.to_string()])
            .arg("--data-dir")
            .arg(args.data_dir.join(format!("node-{}", member.id)))
            .args(["--kafka-addr", &member.kafka.to_string()])
            .args(["--http-addr", &member.http.to_string()])
            .args(["--raft-addr", &member.raft.to_string()])
            .args(["--peers", &peers])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start node {}", member.id))?;
        children.push((member.id, child));
        let _ = writeln!(
            summary,
            "node {}: kafka {} http {} raft {} log {}",
            member.id,
            member.kafka,
            member.http,
            member.raft,
            log_path.display()
        );
    }
    print!("{summary}");
    println!(
        "cluster of {} nodes up; `commerce cluster status --http-addr {}` shows it; ctrl-c stops it",
        members.len(),
        members
            .first()
            .map_or_else(String::new, |m| m.http.to_string())
    );
    wait_for_stop(&mut children).await?;
    stop_all(children).await;
    Ok(())
}

/// Returns on ctrl-c / SIGTERM, or once every node has exited on its own.
async fn wait_for_stop(children: &mut [(u16, Child)]) -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    let mut running: Vec<bool> = vec![true; children.len()];
    loop {
        tokio::select! {
            result = tokio::signal::ctrl_c() => return result.context("cannot listen for ctrl-c"),
            _ = terminate.recv() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        for ((id, child), alive) in children.iter_mut().zip(running.iter_mut()) {
            if *alive && let Ok(Some(status)) = child.try_wait() {
                *alive = false;
                eprintln!("node {id} exited ({status}); see its log");
            }
        }
        if running.iter().all(|alive| !alive) {
            anyhow::bail!("every node has exited");
        }
    }
}

async fn stop_all(children: Vec<(u16, Child)>) {
    for (_, child) in &children {
        if let Some(pid) = child.id() {
            // `kill -TERM` rather than an unsafe libc call for the one signal tokio cannot send.
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
    }
    for (id, mut child) in children {
        match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
            Ok(Ok(status)) => println!("node {id} stopped ({status})"),
            Ok(Err(error)) => eprintln!("node {id}: {error}"),
            Err(_) => {
                eprintln!("node {id} did not stop within {STOP_TIMEOUT:?}; killing it");
                let _ = child.kill().await;
            }
        }
    }
}
