//! `commerce topic create|list|describe|delete`: topic administration through the Kafka
//! Admin API (CreateTopics, DeleteTopics, DescribeConfigs) and Metadata.

use anyhow::{Context, bail};
use rdkafka::admin::{
    AdminClient, AdminOptions, ConfigSource, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::metadata::{Metadata, MetadataTopic};

use super::connection::{ConnectionArgs, REQUEST_TIMEOUT, parse_key_value};

#[derive(Debug, clap::Args)]
pub struct TopicArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,

    #[command(subcommand)]
    pub command: TopicCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Number of partitions.
        #[arg(long, short = 'p', default_value_t = 1)]
        partitions: i32,
        /// Replicas per partition; -1 lets the broker use its default.
        #[arg(long, short = 'r', default_value_t = -1, allow_negative_numbers = true)]
        replication_factor: i32,
        /// A topic config, repeatable: -c retention.ms=86400000.
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
    },
    /// List topics with their partition counts.
    List {
        /// Also list internal topics (names starting with `__`).
        #[arg(long)]
        internal: bool,
    },
    /// Show a topic's partitions (leader, replicas, in-sync replicas) and configs.
    Describe {
        name: String,
        /// Show every config, not only those set on the topic.
        #[arg(long)]
        all_configs: bool,
    },
    /// Delete topics.
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

pub async fn run(args: TopicArgs) -> anyhow::Result<()> {
    // Describing a topic must never create it: librdkafka lets a producer-type client (which
    // the admin client is) auto-create topics on a Metadata request unless told otherwise.
    let admin: AdminClient<DefaultClientContext> = args
        .connection
        .client_config(&[("allow.auto.create.topics", "false")])
        .create()
        .context("cannot create the Kafka admin client")?;
    let options = AdminOptions::new().request_timeout(Some(REQUEST_TIMEOUT));
    match args.command {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            let mut topic = NewTopic::new(
                &name,
                partitions,
                TopicReplication::Fixed(replication_factor),
            );
            for (key, value) in &configs {
                topic = topic.set(key, value);
            }
            let results = admin
                .create_topics([&topic], &options)
                .await
                .with_context(|| format!("cannot create topic {name}"))?;
            for result in results {
                if let Err((topic, code)) = result {
                    bail!("cannot create topic {topic}: {code}");
                }
            }
            println!("created topic {name}");
        }
        TopicCommand::List { internal } => {
            let metadata = fetch_metadata(&admin, None)?;
            let mut topics: Vec<&MetadataTopic> = metadata
                .topics()
                .iter()
                .filter(|topic| internal || !topic.name().starts_with("__"))
                .collect();
            topics.sort_by(|a, b| a.name().cmp(b.name()));
            println!("{:<40} {:>10} {:>8}", "NAME", "PARTITIONS", "REPLICAS");
            for topic in topics {
                let replicas = topic.partitions().first().map_or(0, |p| p.replicas().len());
                println!(
                    "{:<40} {:>10} {:>8}",
                    topic.name(),
                    topic.partitions().len(),
                    replicas
                );
            }
        }
        TopicCommand::Describe { name, all_configs } => {
            let metadata = fetch_metadata(&admin, Some(&name))?;
            let topic = metadata
                .topics()
                .iter()
                .find(|topic| topic.name() == name)
                .with_context(|| format!("the broker did not return topic {name}"))?;
            if let Some(error) = topic.error() {
                bail!(
                    "cannot describe topic {name}: {}",
                    rdkafka::types::RDKafkaErrorCode::from(error)
                );
            }
            print_partitions(topic);
            let resources = admin
                .describe_configs([&ResourceSpecifier::Topic(&name)], &options)
                .await
                .with_context(|| format!("cannot describe the configs of topic {name}"))?;
            println!("CONFIGS");
            for resource in resources {
                let resource = match resource {
                    Ok(resource) => resource,
                    Err(code) => bail!("cannot describe the configs of topic {name}: {code}"),
                };
                let mut entries: Vec<_> = resource
                    .entries
                    .iter()
                    .filter(|entry| all_configs || entry.source == ConfigSource::DynamicTopic)
                    .collect();
                entries.sort_by(|a, b| a.name.cmp(&b.name));
                for entry in entries {
                    let value = if entry.is_sensitive {
                        "(sensitive)"
                    } else {
                        entry.value.as_deref().unwrap_or("(null)")
                    };
                    println!("  {}={}  [{:?}]", entry.name, value, entry.source);
                }
            }
        }
        TopicCommand::Delete { names } => {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let results = admin
                .delete_topics(&names, &options)
                .await
                .context("cannot delete topics")?;
            let mut failed = Vec::new();
            for result in results {
                match result {
                    Ok(topic) => println!("deleted topic {topic}"),
                    Err((topic, code)) => failed.push(format!("{topic}: {code}")),
                }
            }
            if !failed.is_empty() {
                bail!("cannot delete {}", failed.join(", "));
            }
        }
    }
    Ok(())
}

fn fetch_metadata(
    admin: &AdminClient<DefaultClientContext>,
    topic: Option<&str>,
) -> anyhow::Result<Metadata> {
    admin
        .inner()
        .fetch_metadata(topic, REQUEST_TIMEOUT)
        .context("cannot fetch cluster metadata")
}

fn print_partitions(topic: &MetadataTopic) {
    println!("NAME        {}", topic.name());
    println!("PARTITIONS  {}", topic.partitions().len());
    println!(
        "{:>9} {:>7} {:<20} {:<20} ERROR",
        "PARTITION", "LEADER", "REPLICAS", "ISR"
    );
    let mut partitions: Vec<_> = topic.partitions().iter().collect();
    partitions.sort_by_key(|partition| partition.id());
    for partition in partitions {
        let error = partition
            .error()
            .map(|error| rdkafka::types::RDKafkaErrorCode::from(error).to_string())
            .unwrap_or_default();
        println!(
            "{:>9} {:>7} {:<20} {:<20} {}",
            partition.id(),
            partition.leader(),
            format!("{:?}", partition.replicas()),
            format!("{:?}", partition.isr()),
            error
        );
    }
}
