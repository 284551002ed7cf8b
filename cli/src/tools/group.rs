//! `commerce group list|describe|delete|reset-offsets`: consumer-group administration, in the
//! manner of `kafka-consumer-groups.sh`, through librdkafka: ListGroups + DescribeGroups
//! (`fetch_group_list`), OffsetFetch (`committed_offsets`), ListOffsets (watermarks),
//! DeleteGroups (admin API) and OffsetCommit from outside the group (for resets).
//!
//! Offsets are only reset while the group has no members, as Kafka's tool insists: a live
//! member would overwrite the reset with its next commit.

use anyhow::{Context, bail};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::connection::{ConnectionArgs, REQUEST_TIMEOUT};

#[derive(Debug, clap::Args)]
pub struct GroupArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,

    #[command(subcommand)]
    pub command: GroupCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum GroupCommand {
    /// List consumer groups with their state and member count.
    List,
    /// Show a group's state, members (with their assigned partitions) and committed offsets
    /// with the lag behind each partition's end.
    Describe { group: String },
    /// Delete groups without members, with their committed offsets.
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Move a group's committed offsets for a topic (only while the group has no members).
    ResetOffsets {
        group: String,
        /// The topic whose offsets move (all its partitions).
        #[arg(long)]
        topic: String,
        /// To each partition's log start.
        #[arg(long, group = "target")]
        to_earliest: bool,
        /// To each partition's end (skip everything there now).
        #[arg(long, group = "target")]
        to_latest: bool,
        /// To this offset (clipped to each partition's range).
        #[arg(long, group = "target")]
        to_offset: Option<i64>,
        /// Apply the reset; without it the plan is only printed.
        #[arg(long)]
        execute: bool,
    },
}

/// Where a reset moves the offsets.
#[derive(Debug, Clone, Copy)]
enum Target {
    Earliest,
    Latest,
    Offset(i64),
}

pub async fn run(args: GroupArgs) -> anyhow::Result<()> {
    if let GroupCommand::Delete { groups } = &args.command {
        return delete(&args.connection, groups).await;
    }
    // The rest are blocking librdkafka calls: keep them off the runtime.
    tokio::task::spawn_blocking(move || match args.command {
        GroupCommand::List => list(&args.connection),
        GroupCommand::Describe { group } => describe(&args.connection, &group),
        GroupCommand::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            execute,
        } => {
            let target = match (to_earliest, to_latest, to_offset) {
                (true, _, _) => Target::Earliest,
                (_, true, _) => Target::Latest,
                (_, _, Some(offset)) => Target::Offset(offset),
                _ => bail!("say where to: --to-earliest, --to-latest or --to-offset N"),
            };
            reset(&args.connection, &group, &topic, target, execute)
        }
        GroupCommand::Delete { .. } => Ok(()),
    })
    .await
    .context("the group task panicked")?
}

/// A consumer that never subscribes: it only asks questions (and commits for resets) under
/// `group`.
fn client(connection: &ConnectionArgs, group: &str) -> anyhow::Result<BaseConsumer> {
    connection
        .client_config(&[("group.id", group), ("enable.auto.commit", "false")])
        .create()
        .context("cannot create the Kafka client")
}

fn list(connection: &ConnectionArgs) -> anyhow::Result<()> {
    let consumer = client(connection, super::consume::ASSIGN_GROUP_ID)?;
    let groups = consumer
        .fetch_group_list(None, REQUEST_TIMEOUT)
        .context("cannot list groups")?;
    let mut rows: Vec<(&str, &str, usize)> = groups
        .groups()
        .iter()
        .map(|group| (group.name(), group.state(), group.members().len()))
        .collect();
    rows.sort_unstable();
    println!("{:<40} {:<22} MEMBERS", "GROUP", "STATE");
    for (name, state, members) in rows {
        println!("{name:<40} {state:<22} {members}");
    }
    Ok(())
}

/// A group as DescribeGroups shows it (owned: librdkafka's list borrows from its result).
struct GroupSummary {
    state: String,
    protocol_type: String,
    protocol: String,
    members: Vec<MemberSummary>,
}

struct MemberSummary {
    id: String,
    client_id: String,
    host: String,
    assignment: Option<Vec<u8>>,
}

/// The group as DescribeGroups sees it; `None` if the broker does not know it (Dead).
fn find_group(consumer: &BaseConsumer, group: &str) -> anyhow::Result<Option<GroupSummary>> {
    let groups = consumer
        .fetch_group_list(Some(group), REQUEST_TIMEOUT)
        .with_context(|| format!("cannot describe group {group}"))?;
    let found = groups
        .groups()
        .iter()
        .find(|info| info.name() == group && info.state() != "Dead");
    Ok(found.map(|info| GroupSummary {
        state: info.state().to_string(),
        protocol_type: info.protocol_type().to_string(),
        protocol: info.protocol().to_string(),
        members: info
            .members()
            .iter()
            .map(|member| MemberSummary {
                id: member.id().to_string(),
                client_id: member.client_id().to_string(),
                host: member.client_host().to_string(),
                assignment: member.assignment().map(<[u8]>::to_vec),
            })
            .collect(),
    }))
}

fn describe(connection: &ConnectionArgs, group: &str) -> anyhow::Result<()> {
    let consumer = client(connection, group)?;
    let info = find_group(&consumer, group)?;
    let offsets = committed_offsets(&consumer)?;
    let Some(info) = info else {
        bail!("group {group} does not exist");
    };
    println!(
        "group {group}: state {}, protocol {} {}, {} member(s)",
        info.state,
        info.protocol_type,
        info.protocol,
        info.members.len()
    );
    if !info.members.is_empty() {
        println!();
        println!(
            "{:<60} {:<24} {:<20} ASSIGNMENT",
            "MEMBER-ID", "CLIENT-ID", "HOST"
        );
        for member in &info.members {
            let assignment = member
                .assignment
                .as_deref()
                .and_then(decode_assignment)
                .map(|topics| {
                    topics
                        .iter()
                        .map(|(topic, partitions)| format!("{topic}:{partitions:?}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            println!(
                "{:<60} {:<24} {:<20} {assignment}",
                member.id, member.client_id, member.host
            );
        }
    }
    println!();
    println!(
        "{:<32} {:>9} {:>14} {:>14} {:>8}",
        "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"
    );
    for (topic, partition, offset) in offsets {
        let (_, end) = consumer
            .fetch_watermarks(&topic, partition, REQUEST_TIMEOUT)
            .with_context(|| format!("cannot read the end of {topic}/{partition}"))?;
        println!(
            "{topic:<32} {partition:>9} {offset:>14} {end:>14} {:>8}",
            end.saturating_sub(offset).max(0)
        );
    }
    Ok(())
}

/// Every (topic, partition, offset) the client's group has committed. OffsetFetch through
/// librdkafka needs the partitions named, so every partition of every topic is asked for.
fn committed_offsets(consumer: &BaseConsumer) -> anyhow::Result<Vec<(String, i32, i64)>> {
    let metadata = consumer
        .fetch_metadata(None, REQUEST_TIMEOUT)
        .context("cannot fetch cluster metadata")?;
    let mut query = TopicPartitionList::new();
    for topic in metadata.topics() {
        if topic.name().starts_with("__") {
            continue;
        }
        for partition in topic.partitions() {
            query.add_partition(topic.name(), partition.id());
        }
    }
    if query.count() == 0 {
        return Ok(Vec::new());
    }
    let answer = consumer
        .committed_offsets(query, REQUEST_TIMEOUT)
        .context("cannot fetch committed offsets")?;
    let mut offsets: Vec<(String, i32, i64)> = answer
        .elements()
        .iter()
        .filter_map(|element| match element.offset() {
            Offset::Offset(offset) => {
                Some((element.topic().to_string(), element.partition(), offset))
            }
            _ => None,
        })
        .collect();
    offsets.sort();
    Ok(offsets)
}

async fn delete(connection: &ConnectionArgs, groups: &[String]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = connection
        .client_config(&[])
        .create()
        .context("cannot create the Kafka admin client")?;
    let names: Vec<&str> = groups.iter().map(String::as_str).collect();
    let options = AdminOptions::new().request_timeout(Some(REQUEST_TIMEOUT));
    let results = admin
        .delete_groups(&names, &options)
        .await
        .context("DeleteGroups failed")?;
    let mut failed = 0;
    for result in results {
        match result {
            Ok(group) => println!("deleted group {group}"),
            Err((group, code)) => {
                eprintln!("cannot delete group {group}: {code}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} group(s) not deleted");
    }
    Ok(())
}

fn reset(
    connection: &ConnectionArgs,
    group: &str,
    topic: &str,
    target: Target,
    execute: bool,
) -> anyhow::Result<()> {
    let consumer = client(connection, group)?;
    if let Some(info) = find_group(&consumer, group)?
        && !info.members.is_empty()
    {
        bail!(
            "group {group} has {} active member(s) (state {}): stop them before resetting offsets",
            info.members.len(),
            info.state
        );
    }
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .context("cannot fetch cluster metadata")?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|found| found.name() == topic && found.error().is_none())
        .map(|found| found.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        bail!("topic {topic} does not exist");
    }
    let mut plan = TopicPartitionList::new();
    println!("{:<32} {:>9} {:>10}", "TOPIC", "PARTITION", "NEW-OFFSET");
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
            .with_context(|| format!("cannot read the range of {topic}/{partition}"))?;
        let offset = match target {
            Target::Earliest => low,
            Target::Latest => high,
            Target::Offset(offset) => offset.clamp(low, high),
        };
        println!("{topic:<32} {partition:>9} {offset:>10}");
        plan.add_partition_offset(topic, partition, Offset::Offset(offset))
            .with_context(|| format!("cannot plan {topic}/{partition}"))?;
    }
    if !execute {
        println!("(dry run: add --execute to apply)");
        return Ok(());
    }
    consumer
        .commit(&plan, CommitMode::Sync)
        .with_context(|| format!("cannot commit the new offsets of group {group}"))?;
    println!("offsets of group {group} reset");
    Ok(())
}

/// The topics and partitions in a consumer-protocol assignment (any version: they all start
/// with version, then [topic, [partition]]). `None` if the bytes are not one.
fn decode_assignment(bytes: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    let mut input = bytes;
    let _version = take_i16(&mut input)?;
    let topics = take_i32(&mut input)?;
    let mut out = Vec::new();
    for _ in 0..topics.max(0) {
        let len = usize::try_from(take_i16(&mut input)?).ok()?;
        let name = input.get(..len)?;
        let name = String::from_utf8(name.to_vec()).ok()?;
        input = input.get(len..)?;
        let count = take_i32(&mut input)?;
        let mut partitions = Vec::new();
        for _ in 0..count.max(0) {
            partitions.push(take_i32(&mut input)?);
        }
        out.push((name, partitions));
    }
    Some(out)
}

fn take_i16(input: &mut &[u8]) -> Option<i16> {
    let (head, rest) = input.split_first_chunk::<2>()?;
    *input = rest;
    Some(i16::from_be_bytes(*head))
}

fn take_i32(input: &mut &[u8]) -> Option<i32> {
    let (head, rest) = input.split_first_chunk::<4>()?;
    *input = rest;
    Some(i32::from_be_bytes(*head))
}

#[cfg(test)]
mod tests {
    use super::decode_assignment;

    #[test]
    fn assignments_decode_and_garbage_does_not() {
        let mut bytes = vec![0, 1, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2];
        bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 3]);
        assert_eq!(
            decode_assignment(&bytes),
            Some(vec![("t".to_string(), vec![0, 3])])
        );
        assert_eq!(decode_assignment(bytes.get(..9).unwrap_or_default()), None);
    }
}
