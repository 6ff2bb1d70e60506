//! The committed JSON Schemas are generated artifacts (SPEC §2, STYLE 5): this test fails when
//! a committed file differs from what the types generate, and says how to regenerate it.

use llxprt::profile::raw::RawProfile;
use llxprt::profile::schema::schema_text;
use serde_json::{Value, json};

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

/// `--set` and `/set` are checked against the profile schema's `$defs/Settings` (the binary
/// compiles no schema at run time): it must be what the `Settings` type generates, with the
/// same definitions under it.
#[test]
fn settings_schema_is_the_profile_schemas_settings_definition() {
    use llxprt::profile::settings::Settings;
    let profile: serde_json::Value = serde_json::from_str(&schema_text::<RawProfile>()).unwrap();
    let serde_json::Value::Object(mut own) =
        serde_json::from_str(&schema_text::<Settings>()).unwrap()
    else {
        panic!("the settings schema is an object");
    };
    let defs = own.remove("$defs").unwrap_or_default();
    own.remove("$schema");
    own.remove("title");
    assert_eq!(serde_json::Value::Object(own), profile["$defs"]["Settings"]);
    for (name, def) in defs.as_object().unwrap() {
        assert_eq!(&profile["$defs"][name], def, "$defs/{name}");
    }
}

/// What a validator says about a document, the branches of unions included.
fn errors_of(errors: jsonschema::ErrorIterator<'_>) -> Vec<String> {
    errors.map(|e| outline(&e, 0)).collect()
}

/// An error and, for a union, each branch's errors; schema locations left out (the settings
/// schema is entered through a `$ref` in one validator and is the root in the other).
fn outline(e: &jsonschema::ValidationError<'_>, depth: usize) -> String {
    use jsonschema::error::ValidationErrorKind as K;
    use std::fmt::Write;
    let pad = "  ".repeat(depth);
    let mut s = format!("{pad}{e} @{}", e.instance_path().as_str());
    if let K::AnyOf { context } | K::OneOfNotValid { context } = e.kind() {
        for (i, branch) in context.iter().enumerate() {
            let _ = write!(s, "\n{pad} branch {i}:");
            for sub in branch {
                s.push('\n');
                s.push_str(&outline(sub, depth + 1));
            }
        }
    }
    s
}

fn json_files(dir: &str) -> Vec<(String, Value)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut v = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json")
            && let Ok(doc) = serde_json::from_slice(&std::fs::read(&p).unwrap())
        {
            v.push((p.display().to_string(), doc));
        }
    }
    v
}

/// A document and variants of it: each member removed, each value replaced by values of
/// other types and out of range.
fn variants(doc: &Value) -> Vec<Value> {
    fn walk(root: &Value, here: &Value, pointer: &str, out: &mut Vec<Value>) {
        let children: Vec<(String, &Value)> = match here {
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| (k.replace('~', "~0").replace('/', "~1"), v))
                .collect(),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), v))
                .collect(),
            _ => return,
        };
        for (token, child) in children {
            let p = format!("{pointer}/{token}");
            for replacement in [
                Value::Null,
                json!(-1),
                json!(0),
                json!(1.5),
                json!(1_000_000_000_000u64),
                json!("x"),
                json!(true),
                json!([]),
                json!({}),
                json!({"unknown-key": 1}),
            ] {
                let mut v = root.clone();
                *v.pointer_mut(&p).unwrap() = replacement;
                out.push(v);
            }
            let mut v = root.clone();
            match v.pointer_mut(pointer).unwrap() {
                Value::Object(m) => {
                    m.shift_remove(&token.replace("~1", "/").replace("~0", "~"));
                }
                Value::Array(a) => {
                    a.remove(token.parse().unwrap());
                }
                _ => {}
            }
            out.push(v);
            walk(root, child, &p, out);
        }
    }
    let mut out = vec![doc.clone()];
    walk(doc, doc, "", &mut out);
    out
}

/// Validity is decided by validators compiled at build time (`jsonschema` macros), errors by
/// one compiled at run time from the same committed text: both must agree on what is valid,
/// for every broken fixture, example profile and example trace and many variants of each.
#[test]
fn build_time_validators_agree_with_run_time_ones() {
    use llxprt::profile::schema::{PROFILE, SETTINGS, TRACE};
    use llxprt::profile::settings::Settings;
    let compile = |schema: &Value| jsonschema::draft202012::new(schema).unwrap();
    let committed = |path: &str| -> Value {
        serde_json::from_slice(
            &std::fs::read(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap(),
        )
        .unwrap()
    };
    let profile = compile(&committed("schema/profile.schema.json"));
    let trace = compile(&committed("schema/trace.schema.json"));
    // What `--set` was checked against before: the schema the `Settings` type generates.
    let settings = compile(&serde_json::from_str(&schema_text::<Settings>()).unwrap());
    let mut docs = json_files("tests/fixtures/broken");
    docs.extend(json_files("profiles-examples"));
    let (mut valid, mut invalid) = (0, 0);
    for (path, doc) in &docs {
        for v in variants(doc) {
            let ok = profile.is_valid(&v);
            assert_eq!(PROFILE.is_valid(&v), ok, "{path}: {v}");
            if ok {
                valid += 1;
            } else {
                invalid += 1;
            }
            if let Some(s) = v.get("ephemeralSettings") {
                assert_eq!(SETTINGS.is_valid(s), settings.is_valid(s), "{path}: {s}");
                assert_eq!(
                    errors_of(SETTINGS.iter_errors(s)),
                    errors_of(settings.iter_errors(s)),
                    "{path}: {s}"
                );
            }
        }
    }
    assert!(
        valid >= 100 && invalid >= 1000,
        "{valid} valid, {invalid} invalid"
    );
    let traces = json_files("profiles-examples/traces");
    assert!(traces.len() >= 10);
    for (path, doc) in &traces {
        assert!(TRACE.is_valid(doc), "{path}");
        for v in variants(doc) {
            assert_eq!(TRACE.is_valid(&v), trace.is_valid(&v), "{path}: {v}");
        }
    }
}
