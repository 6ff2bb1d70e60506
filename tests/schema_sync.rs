//! The committed JSON Schemas are generated artifacts (SPEC §2, STYLE 5): this test fails when
//! a committed file differs from what the types generate, and says how to regenerate it.

use llxprt::profile::raw::RawProfile;
use llxprt::profile::schema::schema_text;

fn check(path: &str, generated: &str) {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&full, generated).unwrap();
    }
    let committed = std::fs::read_to_string(&full).unwrap_or_default();
    assert!(
        committed == generated,
        "{path} is out of date with the Rust types; regenerate it with:\n    UPDATE_SCHEMA=1 cargo test --test schema_sync"
    );
}

#[test]
fn profile_schema_is_current() {
    check("schema/profile.schema.json", &schema_text::<RawProfile>());
}

#[test]
fn profile_schema_is_draft_2020_12_and_allows_dollar_schema() {
    let v: serde_json::Value = serde_json::from_str(&schema_text::<RawProfile>()).unwrap();
    assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema");
    for branch in ["RawModel", "RawLoadBalancer"] {
        assert!(
            v["$defs"][branch]["properties"]["$schema"].is_object(),
            "{branch}"
        );
    }
}
