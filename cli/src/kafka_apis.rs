//! `commerce kafka-apis`: the Kafka APIs the built-in broker serves, as the markdown table
//! the README carries. Generated from `commerce_broker::api::SUPPORTED` (clipped to what the
//! codec decodes, exactly as ApiVersions advertises), so the README cannot drift: a test
//! compares the README's table with this output.

use commerce_broker::api::{SUPPORTED, supported_versions};

/// The table, one row per served API, ending with a newline.
pub fn table() -> String {
    let mut out = String::from("| API | Key | Min version | Max version |\n|---|---:|---:|---:|\n");
    // By API key, so the table does not depend on the order entries were added in.
    let mut keys: Vec<_> = SUPPORTED.iter().map(|(key, _, _)| *key).collect();
    keys.sort_by_key(|key| *key as i16);
    for key in keys {
        if let Some((min, max)) = supported_versions(key) {
            out.push_str(&format!("| {key:?} | {} | {min} | {max} |\n", key as i16));
        }
    }
    out
}

pub fn run() -> anyhow::Result<()> {
    print!("{}", table());
    Ok(())
}
