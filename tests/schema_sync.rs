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

#[test]
fn trace_schema_is_current() {
    check(
        "schema/trace.schema.json",
        &schema_text::<llxprt::simulate::trace::Trace>(),
    );
}

#[test]
fn every_example_trace_validates_against_the_committed_schema() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schema/trace.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let v = jsonschema::draft202012::new(&schema).unwrap();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles-examples/traces");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            let doc: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            assert!(v.is_valid(&doc), "{}", p.display());
            n += 1;
        }
    }
    assert!(n >= 10);
}
