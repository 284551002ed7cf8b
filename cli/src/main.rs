//! `commerce`: the one binary. It is the composition root (it parses configuration and wires
//! storage, broker, services and gateway together) and it carries the operator tools: Kafka
//! admin and data commands that work against any Kafka-compatible broker, and the load generator.

mod cluster;
mod cluster_event_consume;
mod cluster_event_log;
mod config;
mod demo;
mod event_consume;
mod event_log;
mod kafka_apis;
mod node_event_log;
mod services;
mod start;
mod tools;
mod user;

use clap::{Parser, Subcommand};

/// glibc's malloc serves the broker's 1 MiB request and read buffers with fresh mmaps that
/// page-fault on every request (a third of the consume path's CPU in a profile); mimalloc
/// keeps and reuses them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `commerce --version`: the package version and the commit it was built from (`cli/build.rs`
/// stamps it: a short commit id, `-dirty` when the sources had uncommitted changes, or
/// `unknown` when built outside a git checkout).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("COMMERCE_GIT_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "commerce",
    version = VERSION,
    about = "DistributedCommerce: an e-commerce platform and Kafka-compatible log in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node (single node on embedded defaults when no flags are given).
    Start(Box<start::StartArgs>),
    /// Create, list, describe and delete topics on any Kafka-compatible broker.
    Topic(tools::topic::TopicArgs),
    /// Produce stdin lines as records to a topic.
    Produce(tools::produce::ProduceArgs),
    /// Consume records from a topic and print them.
    Consume(tools::consume::ConsumeArgs),
    /// List, describe and delete consumer groups; reset their committed offsets.
    Group(tools::group::GroupArgs),
    /// End-to-end load generator (produce or consume) printing MB/s, records/s and latency.
    Bench(tools::bench::BenchArgs),
    /// Print the Kafka APIs and versions the built-in broker serves (the README's table).
    KafkaApis,
    /// Manage accounts in a stopped node's identity store.
    User(user::UserArgs),
    /// Run a local cluster, or show a cluster's nodes and Raft groups.
    Cluster(cluster::ClusterArgs),
    /// Seed a catalog and stock, place orders through the public API, print the flow.
    Demo(demo::DemoArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Start(args) => start::run(*args).await,
            Command::Topic(args) => tools::topic::run(args).await,
            Command::Produce(args) => tools::produce::run(args).await,
            Command::Consume(args) => tools::consume::run(args).await,
            Command::Bench(args) => tools::bench::run(args).await,
            Command::KafkaApis => kafka_apis::run(),
            Command::Group(args) => tools::group::run(args).await,
            Command::User(args) => user::run(args).await,
            Command::Cluster(args) => cluster::run(args).await,
            Command::Demo(args) => demo::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
