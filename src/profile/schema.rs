//! The generated JSON Schemas (SPEC §2, STYLE 5): produced from the Rust types, committed under
//! `schema/`, compiled once for validation.
//!
//! Owns: generating the schema text and the compiled validators. Must not: read the committed
//! files at run time (the binary embeds its own generation, which a test keeps equal to them).

use std::sync::OnceLock;

use schemars::JsonSchema;
use serde_json::Value;

use super::raw::RawProfile;

/// The schema of a type as pretty JSON with a trailing newline, draft 2020-12.
pub fn schema_text<T: JsonSchema>() -> String {
    let schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>();
    let mut s = serde_json::to_string_pretty(&schema).expect("schemas are plain JSON");
    s.push('\n');
    s
}

/// `schema/profile.schema.json` as generated from [`RawProfile`].
pub fn profile_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        serde_json::from_str(&schema_text::<RawProfile>()).expect("the generated schema is JSON")
    })
}

/// The compiled profile validator (compiled once per process).
pub fn profile_validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| compile(profile_schema()))
}

/// Compiles a generated schema; generated schemas always compile (a test checks each).
pub fn compile(schema: &Value) -> jsonschema::Validator {
    jsonschema::draft202012::options()
        .build(schema)
        .expect("generated schemas are valid draft 2020-12 schemas")
}

/// The schema node that describes the value at `pointer` in `instance`, following `$ref`s,
/// `items` and `additionalProperties`, and picking the branch of a union that the instance is
/// in. The node is returned as written at that position (its own `description` first).
pub fn node_at<'a>(schema: &'a Value, instance: &Value, pointer: &str) -> Option<&'a Value> {
    let mut node = schema;
    let mut inst = Some(instance);
    for token in super::jsonpos::pointer_tokens(pointer) {
        let here = branch(schema, node, inst)?;
        node = here
            .get("properties")
            .and_then(|p| p.get(&token))
            .or_else(|| here.get("items"))
            .or_else(|| here.get("additionalProperties").filter(|a| a.is_object()))?;
        inst = inst.and_then(|i| match i {
            Value::Object(o) => o.get(&token),
            Value::Array(a) => token.parse::<usize>().ok().and_then(|n| a.get(n)),
            _ => None,
        });
    }
    Some(node)
}

/// The description a schema gives for the value at `pointer` in `instance`, following `$ref`s
/// and picking the branch of a union that the instance is in. Used as a `help:` hint.
///
/// A field's own description wins over the description of the type it refers to: `policy`
/// says "`failover` or `roundrobin`", where its type's first variant would only describe
/// `failover` (SPEC §2.3: the hint must be about the offending value).
pub fn describe(schema: &Value, instance: &Value, pointer: &str) -> Option<String> {
    let node = node_at(schema, instance, pointer)?;
    let own = node.get("description").and_then(Value::as_str);
    let inst = instance.pointer(pointer);
    own.or_else(|| {
        branch(schema, node, inst)?
            .get("description")
            .and_then(Value::as_str)
    })
    .map(str::to_string)
}

/// The member names the schema allows in the object at `pointer` (for "unknown key" hints).
pub fn keys_at(schema: &Value, instance: &Value, pointer: &str) -> Vec<String> {
    node_at(schema, instance, pointer)
        .and_then(|n| branch(schema, n, instance.pointer(pointer)))
        .and_then(|n| n.get("properties"))
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix("#")
            .and_then(|p| root.pointer(p))
            .unwrap_or(node),
        None => node,
    }
}

/// Resolves `$ref` and chooses the `anyOf`/`oneOf` branch an instance belongs to: the one
/// whose `type` property accepts the instance's `type`, else the first non-null branch.
fn branch<'a>(root: &'a Value, node: &'a Value, inst: Option<&Value>) -> Option<&'a Value> {
    let node = resolve(root, node);
    let Some(branches) = node
        .get("anyOf")
        .or_else(|| node.get("oneOf"))
        .and_then(Value::as_array)
    else {
        return Some(node);
    };
    let tag = inst.and_then(|i| i.get("type"));
    let pick = branches
        .iter()
        .map(|b| resolve(root, b))
        .find(|b| tag_accepts(root, b, tag))
        .or_else(|| {
            branches
                .iter()
                .map(|b| resolve(root, b))
                .find(|b| b.get("type") != Some(&Value::from("null")))
        });
    pick.map(|b| resolve(root, b))
}

fn tag_accepts(root: &Value, branch: &Value, tag: Option<&Value>) -> bool {
    let Some(prop) = branch.get("properties").and_then(|p| p.get("type")) else {
        return false;
    };
    let prop = resolve(root, prop);
    let prop = prop
        .get("anyOf")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .map_or(prop, |b| resolve(root, b));
    let required = branch
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(|r| r.iter().any(|x| x == "type"));
    match tag {
        None => !required,
        Some(t) => {
            prop.get("enum")
                .and_then(Value::as_array)
                .is_some_and(|e| e.contains(t))
                || prop.get("const") == Some(t)
        }
    }
}
