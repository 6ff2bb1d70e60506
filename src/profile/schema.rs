//! The JSON Schemas (SPEC §2, STYLE 5): generated from the Rust types, committed under
//! `schema/`, and checked with validators compiled from the committed files at build time.
//!
//! Owns: generating the schema text (for the committed files) and the validators. Must not:
//! read the committed files at run time (the binary embeds them, and `tests/schema_sync.rs`
//! keeps them equal to what the types generate; a validator compiled at run time cost ~2.5 ms
//! of every start-up, two of them in `llxprt chat --set …`).

use std::sync::OnceLock;

use jsonschema::ErrorIterator;
use schemars::JsonSchema;
use serde_json::Value;

/// The schema of a type as pretty JSON with a trailing newline, draft 2020-12.
pub fn schema_text<T: JsonSchema>() -> String {
    let schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>();
    let mut s = serde_json::to_string_pretty(&schema).expect("schemas are plain JSON");
    s.push('\n');
    s
}

/// `schema/profile.schema.json`, as committed (equal to the generation from
/// [`RawProfile`](super::raw::RawProfile): `tests/schema_sync.rs`).
pub const PROFILE_SCHEMA_TEXT: &str = include_str!("../../schema/profile.schema.json");

/// `schema/trace.schema.json`, as committed (equal to the generation from
/// [`Trace`](crate::simulate::trace::Trace): `tests/schema_sync.rs`).
pub const TRACE_SCHEMA_TEXT: &str = include_str!("../../schema/trace.schema.json");

// Whether a document is valid, compiled from the committed files when llxprt is built. The
// settings of `--set` and `/set` are the profile schema's `$defs/Settings`, which is what the
// `Settings` type generates (`tests/schema_sync.rs`).
mod compiled {
    #[jsonschema::validator(
        path = "schema/profile.schema.json",
        draft = Draft202012,
        methods = { is_valid = true, validate = false, iter_errors = false }
    )]
    pub(super) struct Profile;

    #[jsonschema::validator(
        path = "schema/trace.schema.json",
        draft = Draft202012,
        methods = { is_valid = true, validate = false, iter_errors = false }
    )]
    pub(super) struct Trace;

    #[jsonschema::validator(
        schema = r#"{"$ref": "urn:llxprt:profile#/$defs/Settings"}"#,
        draft = Draft202012,
        resources = { "urn:llxprt:profile" => { path = "schema/profile.schema.json" } },
        methods = { is_valid = true, validate = false, iter_errors = false }
    )]
    pub(super) struct Settings;
}

/// A committed schema: whether a document is valid is answered by a validator compiled at
/// build time; what is wrong with an invalid one, by the validator compiled from the same text
/// at run time (on first use), whose errors — their order and the branches of unions — the
/// diagnostics are made from (SPEC §2.3).
pub struct Schema {
    text: &'static str,
    root: Option<&'static str>,
    value: OnceLock<Value>,
    validator: OnceLock<jsonschema::Validator>,
    is_valid: fn(&Value) -> bool,
}

impl Schema {
    const fn new(
        text: &'static str,
        root: Option<&'static str>,
        is_valid: fn(&Value) -> bool,
    ) -> Schema {
        Schema {
            text,
            root,
            value: OnceLock::new(),
            validator: OnceLock::new(),
            is_valid,
        }
    }

    /// The schema as JSON (parsed on first use).
    pub fn value(&self) -> &Value {
        self.value.get_or_init(|| {
            let mut v: Value =
                serde_json::from_str(self.text).expect("the committed schema is JSON");
            if let Some(def) = self.root {
                // A definition checked on its own: the document's `$defs`, entered by `$ref`.
                let defs = v.get_mut("$defs").map(Value::take).unwrap_or_default();
                v = serde_json::json!({ "$ref": format!("#/$defs/{def}"), "$defs": defs });
            }
            v
        })
    }

    /// Whether `instance` is valid (no schema is compiled at run time).
    pub fn is_valid(&self, instance: &Value) -> bool {
        (self.is_valid)(instance)
    }

    /// Every error of `instance` (compiles the schema on first use; meant for invalid
    /// documents).
    pub fn iter_errors<'i>(&'i self, instance: &'i Value) -> ErrorIterator<'i> {
        self.validator
            .get_or_init(|| {
                jsonschema::draft202012::options()
                    .build(self.value())
                    .expect("the committed schemas are valid draft 2020-12 schemas")
            })
            .iter_errors(instance)
    }
}

/// The profile schema (`schema/profile.schema.json`).
pub static PROFILE: Schema = Schema::new(PROFILE_SCHEMA_TEXT, None, compiled::Profile::is_valid);

/// The trace schema (`schema/trace.schema.json`).
pub static TRACE: Schema = Schema::new(TRACE_SCHEMA_TEXT, None, compiled::Trace::is_valid);

/// The settings object (`$defs/Settings` of the profile schema): `--set`, `/set`.
pub static SETTINGS: Schema = Schema::new(
    PROFILE_SCHEMA_TEXT,
    Some("Settings"),
    compiled::Settings::is_valid,
);

/// `schema/profile.schema.json` as JSON.
pub fn profile_schema() -> &'static Value {
    PROFILE.value()
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
