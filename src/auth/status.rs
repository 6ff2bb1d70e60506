//! `llxprt auth status [PROVIDER]` and the session's `/auth` (SPEC §6.3): each stored bucket
//! with its kind, expiry, whether it has a refresh token, its cooldown and last use from the
//! shared engine state (SPEC §5.9, keys `bucket/<provider>/<bucket>`).
//!
//! Owns: the report's fields (JSON) and its text form. Must not: show a key or token (only
//! their presence), or change the state.

use serde_json::{Value, json};

use super::store::{self, Listed};
use crate::auth::credentials::StoredCredential;
use crate::engine::state::SharedState;
use crate::provider::Provider;
use crate::report::table::{Align, Table};
use crate::timefmt::{local_relative, parse_rfc3339, rfc3339};

/// One row per stored bucket, of `only` or of every provider.
pub fn report(
    root: &std::path::Path,
    only: Option<&Provider>,
    shared: &SharedState,
    now: u64,
) -> Vec<Value> {
    store::list(root, only)
        .into_iter()
        .map(|l| row(&l, shared, now))
        .collect()
}

fn row(l: &Listed, shared: &SharedState, now: u64) -> Value {
    let state = shared.buckets.get(&format!("{}/{}", l.provider, l.bucket));
    let cooldown = state
        .and_then(|s| s.cooldown_until)
        .filter(|&u| u > now)
        .map(rfc3339);
    let last_used = state.and_then(|s| s.stats.last_used).map(rfc3339);
    let mut o = json!({
        "provider": l.provider,
        "bucket": l.bucket,
        "path": l.path.display().to_string(),
        "cooldown_until": cooldown,
        "last_used": last_used,
    });
    match &l.credential {
        Ok(StoredCredential::Apikey { .. }) => {
            o["kind"] = json!("apikey");
            o["expires_at"] = Value::Null;
            o["expired"] = Value::Null;
            o["refresh_token"] = Value::Null;
        }
        Ok(StoredCredential::Oauth {
            expires_at_ms,
            refresh_token,
            ..
        }) => {
            o["kind"] = json!("oauth");
            o["expires_at"] = json!(expires_at_ms.map(rfc3339));
            o["expired"] = json!(expires_at_ms.map(|t| t <= now));
            o["refresh_token"] = json!(refresh_token.is_some());
        }
        Err(problem) => {
            o["kind"] = json!("unreadable");
            o["problem"] = json!(problem);
        }
    }
    o
}

/// The text form (SPEC §8.1): an aligned table fitted to `width`, one row per bucket, times
/// in local time relative to `now`, `—` where a value does not apply (an API key's expiry).
pub fn lines(rows: &[Value], now: u64, width: usize) -> Vec<String> {
    if rows.is_empty() {
        return vec![
            "no bucket logins stored; log in with llxprt auth login PROVIDER BUCKET".to_string(),
        ];
    }
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let when = |v: &Value| v.as_str().and_then(parse_rfc3339);
    let mut t = Table::new(&[Align::Left; 6]).header(&[
        "bucket",
        "kind",
        "expires",
        "refresh token",
        "cooling until",
        "last used",
    ]);
    for r in rows {
        let bucket = format!("{}/{}", s(&r["provider"]), s(&r["bucket"]));
        let kind = s(&r["kind"]);
        let (expires, refresh) = match kind.as_str() {
            "oauth" => {
                let expires = match (when(&r["expires_at"]), &r["expired"]) {
                    (Some(t), Value::Bool(true)) => format!("expired {}", local_relative(t, now)),
                    (Some(t), _) => local_relative(t, now),
                    (None, _) => "unknown".to_string(),
                };
                let refresh = if r["refresh_token"] == json!(true) {
                    "yes"
                } else {
                    "no"
                };
                (expires, refresh.to_string())
            }
            "unreadable" => {
                t.row(vec![bucket, format!("unreadable: {}", s(&r["problem"]))]);
                continue;
            }
            _ => ("—".to_string(), "—".to_string()),
        };
        t.row(vec![
            bucket,
            kind,
            expires,
            refresh,
            when(&r["cooldown_until"]).map_or_else(|| "—".to_string(), |u| local_relative(u, now)),
            when(&r["last_used"]).map_or_else(|| "never".to_string(), |u| local_relative(u, now)),
        ]);
    }
    t.render(width).lines().map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::BucketState;

    #[test]
    fn rows_show_presence_never_values() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let oauth = StoredCredential::Oauth {
            version: 1,
            access_token: "at-secret".into(),
            refresh_token: Some("rt-secret".into()),
            expires_at_ms: Some(1000),
            token_url: None,
            client_id: None,
            scope: None,
        };
        store::write(root, "anthropic", "team1", &oauth).unwrap();
        let key = StoredCredential::Apikey {
            version: 1,
            key: "sk-secret".into(),
        };
        store::write(root, "openai", "k", &key).unwrap();
        let mut shared = SharedState::default();
        let mut b = BucketState {
            cooldown_until: Some(9000),
            ..BucketState::default()
        };
        b.stats.last_used = Some(500);
        shared.buckets.insert("openai/k".into(), b);
        let rows = report(root, None, &shared, 2000);
        let text = lines(&rows, 2000, 120).join("\n");
        let all = format!("{text}{}", Value::Array(rows.clone()));
        assert!(!all.contains("secret"), "{all}");
        // Providers in the table's order: openai first.
        assert_eq!(rows[1]["expired"], json!(true));
        assert_eq!(rows[0]["cooldown_until"], json!(rfc3339(9000)));
        let line = |start: &str| {
            text.lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("{start}: {text}"))
                .to_string()
        };
        let cells = |l: String| -> Vec<String> {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect()
        };
        let oauth = cells(line("anthropic/team1"));
        assert_eq!(oauth[1], "oauth", "{text}");
        assert!(
            oauth[2].starts_with("expired ") && oauth[2].ends_with(" (1 s ago)"),
            "{text}"
        );
        assert_eq!(oauth[3..], ["yes", "—", "never"], "{text}");
        let key = cells(line("openai/k"));
        assert_eq!(key[1..4], ["apikey", "—", "—"], "{text}");
        assert!(
            key[4].ends_with("(in 7 s)") && key[5].ends_with("(1 s ago)"),
            "{text}"
        );
        assert!(!text.contains("null"), "{text}");
        let only = crate::provider::find("openai").unwrap();
        assert_eq!(report(root, Some(only), &shared, 2000).len(), 1);
    }
}
