//! The API description (issue 15, item 5): the document at `/api/openapi.json` passes a real
//! OpenAPI validator (openapi-spec-validator, installed by `.ci/run`), and `/api/docs` is
//! served whole from the node, with no external URL.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::process::Command;
use std::time::Duration;

use commerce_tests::http::Api;
use commerce_tests::{Node, TimeLimit};

const VALIDATOR_VERSION: &str = "0.9.0";

#[test]
fn the_openapi_document_is_valid_openapi_3_1() {
    let _limit = TimeLimit::new("the_openapi_document_is_valid", Duration::from_secs(120));
    let installed = Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        installed,
        "the OpenAPI validator is missing: `python3 -m pip install openapi-spec-validator=={VALIDATOR_VERSION}` \
         (.ci/run installs it)"
    );
    let node = Node::start();
    let document = Api::new(&node).get("/api/openapi.json", None).expect(200);
    assert!(
        document.body["openapi"]
            .as_str()
            .unwrap()
            .starts_with("3.1"),
        "{}",
        document.body["openapi"]
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, &document.text).unwrap();
    let output = Command::new("python3")
        .args([
            "-m",
            "openapi_spec_validator",
            "--validation-errors",
            "all",
            "--schema",
            "3.1",
        ])
        .arg(&path)
        .output()
        .expect("cannot run python3");
    assert!(
        output.status.success(),
        "openapi-spec-validator refused the document:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // What the validator does not judge: parameters are where the route reads them.
    for (path, item) in document.body["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let name = parameter["name"].as_str().unwrap();
                let in_path = path.contains(&format!("{{{name}}}"));
                assert_eq!(
                    parameter["in"] == "path",
                    in_path,
                    "{method} {path}: parameter {name} is `in: {}`",
                    parameter["in"]
                );
            }
        }
    }
    let list = &document.body["paths"]["/api/catalog/products"]["get"]["parameters"];
    let page = list
        .as_array()
        .unwrap()
        .iter()
        .find(|parameter| parameter["name"] == "page")
        .expect("a page parameter");
    assert_eq!(
        (&page["in"], &page["required"]),
        (&"query".into(), &false.into())
    );
}

#[test]
fn the_docs_page_and_its_assets_come_from_the_node() {
    let _limit = TimeLimit::new("the_docs_page_and_its_assets", Duration::from_secs(120));
    let node = Node::start();
    let api = Api::new(&node);
    let page = api.get("/api/docs", None).expect(200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text.to_lowercase().contains("<html"));
    let policy = page.header("content-security-policy").expect("a CSP");
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    // Every script and style sheet is this node's own, and is there.
    let mut assets = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in page.text.match_indices(attribute) {
            let rest = &page.text[at + attribute.len()..];
            assets.push(rest[..rest.find('"').unwrap()].to_string());
        }
    }
    assert!(
        assets.iter().any(|asset| asset.ends_with(".js")),
        "no script in {assets:?}"
    );
    for asset in &assets {
        assert!(asset.starts_with('/'), "{asset} is not served by the node");
        let reply = api.get(asset, None).expect(200);
        assert!(!reply.text.is_empty(), "{asset} is empty");
        for external in ["http://", "https://", "//cdn"] {
            assert!(!reply.text.contains(external), "{asset} names {external}");
        }
    }
    for external in ["http://", "https://", "//cdn"] {
        assert!(!page.text.contains(external), "the page names {external}");
    }
}
