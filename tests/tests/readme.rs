//! The README's table of Kafka APIs is generated from the code (`commerce kafka-apis`, which
//! reads the broker's `SUPPORTED` list); this test keeps the two from drifting apart when
//! APIs are added. To fix a failure: paste the command's output between the markers.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use commerce_tests::{TimeLimit, cli};

const BEGIN: &str = "<!-- kafka-apis:begin -->";
const END: &str = "<!-- kafka-apis:end -->";

#[test]
fn readme_api_table_matches_the_served_apis() {
    let _limit = TimeLimit::new(
        "readme_api_table_matches_the_served_apis",
        Duration::from_secs(60),
    );
    let generated = cli::run_ok(&["kafka-apis"], b"", Duration::from_secs(30));
    let readme_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the workspace")
        .join("README.md");
    let readme = std::fs::read_to_string(&readme_path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", readme_path.display()));
    let start = readme
        .find(BEGIN)
        .unwrap_or_else(|| panic!("README.md has no {BEGIN} marker"))
        + BEGIN.len();
    let end = readme[start..]
        .find(END)
        .unwrap_or_else(|| panic!("README.md has no {END} marker after {BEGIN}"))
        + start;
    let in_readme = readme[start..end].trim();
    assert!(
        generated.lines().count() > 2,
        "`commerce kafka-apis` printed no table:\n{generated}"
    );
    assert_eq!(
        in_readme,
        generated.trim(),
        "README.md's Kafka API table is out of date; replace it with the output of \
         `commerce kafka-apis`"
    );
}
