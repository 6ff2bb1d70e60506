//! Numbers a schema accepts as integers that the typed parse cannot read (SPEC §7: a number
//! too large for its type is a clear error naming its place, never serde's "data did not
//! match any variant").
//!
//! JSON Schema's `integer` is any number with no fractional part, so it takes `2000.0`, `1e5`
//! and numbers past the Rust type (`18446744073709551616` for a `u64`; `4294967296` for a
//! `u32` whose schema sets its own `minimum` and so lost schemars' `maximum`). The schema's
//! `format` (`uint32`, `uint64`, …) names the type. Only consulted once the typed parse has
//! failed on a document the schema accepted.
//!
//! Owns: finding those numbers. Must not: decide anything else about a document.

use serde_json::{Number, Value};

use super::diagnostic::Finding;
use super::jsonpos::escape_token;
use super::schema;

/// 2^64: the first whole number no `u64` holds.
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

/// Every number in `instance` at a place where `root_schema` wants an integer that the Rust
/// type behind it cannot hold, as findings placed at the number.
pub fn unreadable_integers(root_schema: &Value, instance: &Value) -> Vec<Finding> {
    let mut numbers = Vec::new();
    collect_numbers(instance, String::new(), &mut numbers);
    numbers
        .into_iter()
        .filter_map(|(pointer, n)| {
            let node = schema::node_at(root_schema, instance, &pointer)?;
            if !wants_integer(node) {
                return None;
            }
            let format = node.get("format").and_then(Value::as_str);
            problem(&n, largest(format))
                .map(|(message, help)| Finding::error(pointer, message).help(help))
        })
        .collect()
}

fn collect_numbers(v: &Value, pointer: String, out: &mut Vec<(String, Number)>) {
    match v {
        Value::Number(n) => out.push((pointer, n.clone())),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                collect_numbers(x, format!("{pointer}/{i}"), out);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                collect_numbers(x, format!("{pointer}/{}", escape_token(k)), out);
            }
        }
        _ => {}
    }
}

fn wants_integer(node: &Value) -> bool {
    match node.get("type") {
        Some(Value::String(t)) => t == "integer",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "integer"),
        _ => false,
    }
}

/// The largest value of the integer type a schema `format` names (a `u64` when it names none).
fn largest(format: Option<&str>) -> u64 {
    match format {
        Some("uint8") => u8::MAX.into(),
        Some("uint16") => u16::MAX.into(),
        Some("uint32") => u32::MAX.into(),
        Some("int8") => i8::MAX as u64,
        Some("int16") => i16::MAX as u64,
        Some("int32") => i32::MAX as u64,
        Some("int64" | "int") => i64::MAX as u64,
        _ => u64::MAX,
    }
}

/// What is wrong with `n` as an integer of at most `max`, with a hint; `None` when nothing is
/// (a negative number is the schema's `minimum`'s business).
fn problem(n: &Number, max: u64) -> Option<(String, String)> {
    let too_large = || {
        (
            format!("the number is too large (at most {max})"),
            format!("use a whole number no larger than {max}"),
        )
    };
    if let Some(v) = n.as_u64() {
        return (v > max).then(too_large);
    }
    if n.is_i64() {
        return None;
    }
    let f = n.as_f64()?;
    if f >= TWO_POW_64 || f > max as f64 {
        return Some(too_large());
    }
    Some((
        "expected a whole number, found a number written with a decimal point or exponent"
            .to_string(),
        format!("write it as a whole number: {}", f.trunc()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "big": {"type": ["integer", "null"], "format": "uint64", "minimum": 1},
            "small": {"type": "integer", "format": "uint32", "minimum": 1},
            "free": {"type": "object"}
        }})
    }

    fn pointers(instance: &Value) -> Vec<String> {
        unreadable_integers(&schema(), instance)
            .into_iter()
            .map(|f| format!("{} {}", f.pointer, f.message))
            .collect()
    }

    #[test]
    fn numbers_past_their_type_or_written_as_decimals_are_named() {
        let doc: Value = serde_json::from_str(
            r#"{"big": 18446744073709551616, "small": 4294967296, "free": {"t": 1.0}}"#,
        )
        .unwrap();
        assert_eq!(
            pointers(&doc),
            [
                "/big the number is too large (at most 18446744073709551615)",
                "/small the number is too large (at most 4294967295)",
            ]
        );
        let doc: Value = serde_json::from_str(r#"{"big": 2000.0, "small": 1e3}"#).unwrap();
        let found = unreadable_integers(&schema(), &doc);
        assert_eq!(found.len(), 2);
        assert_eq!(
            found[0].help.as_deref(),
            Some("write it as a whole number: 2000")
        );
    }

    #[test]
    fn numbers_that_fit_are_not_named() {
        let doc: Value = serde_json::from_str(
            r#"{"big": 18446744073709551615, "small": 4294967295, "free": {"t": 1e300}}"#,
        )
        .unwrap();
        assert!(pointers(&doc).is_empty());
    }
}
