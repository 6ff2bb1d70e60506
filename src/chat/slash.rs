//! Reading one line of the interactive session (SPEC §8.1): a message to send, or one of the
//! seed documents' slash commands with its arguments.
//!
//! Owns: the command words and their argument shapes, and the usage message of each. Must not:
//! check values against schemas, touch the session or the store (the session does that).
//!
//! A line that starts with `//` is a message starting with `/` (the first slash is dropped), so
//! a message can begin with a slash.

use crate::profile::model::did_you_mean;
use crate::profile::raw::Policy;

/// One line of input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Nothing but whitespace.
    Empty,
    /// A message for the model.
    Message(String),
    /// A slash command.
    Command(Slash),
}

/// Which statistics `/stats` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsPart {
    /// Load balancer, backends and buckets.
    All,
    /// Load balancer and backends.
    Lb,
    /// Buckets.
    Buckets,
}

/// A slash command of SPEC §8.1. `None` arguments mean "show the current value".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slash {
    /// `/provider [name]`.
    Provider(Option<String>),
    /// `/model [name]`.
    Model(Option<String>),
    /// `/auth …` (the words after it).
    Auth(String),
    /// `/set KEY`: show a setting.
    Show(String),
    /// `/set KEY VALUE` (VALUE as typed, read as JSON else as a string).
    Set(String, String),
    /// `/set --unset KEY`.
    Unset(String),
    /// `/set modelparam K`: show a model parameter.
    ShowParam(String),
    /// `/set modelparam K V`.
    Param(String, String),
    /// `/set --unset modelparam K`.
    UnsetParam(String),
    /// `/keyfile [PATH]` (as typed, `~` kept).
    Keyfile(Option<String>),
    /// `/baseurl [URL]`.
    BaseUrl(Option<String>),
    /// `/system [TEXT]`.
    System(Option<String>),
    /// `/profile save model NAME [BUCKET…]`.
    SaveModel {
        /// Profile name.
        name: String,
        /// Buckets, in order.
        buckets: Vec<String>,
    },
    /// `/profile save loadbalancer NAME POLICY P1 P2 […]`.
    SaveLoadBalancer {
        /// Profile name.
        name: String,
        /// failover or roundrobin.
        policy: Policy,
        /// Backend profiles.
        backends: Vec<String>,
    },
    /// `/profile load [NAME]`.
    Load(Option<String>),
    /// `/profile list`.
    List,
    /// `/profile delete NAME`.
    Delete(String),
    /// `/profile set-default NAME|none`.
    SetDefault(String),
    /// `/stats [lb|buckets]`.
    Stats(StatsPart),
    /// `/diagnostics`.
    Diagnostics,
    /// `/retry`.
    Retry,
    /// `/clear`.
    Clear,
    /// `/help`.
    Help,
    /// `/quit`.
    Quit,
}

/// The command words, for `/help` and "did you mean".
pub const COMMANDS: &[&str] = &[
    "provider",
    "model",
    "auth",
    "set",
    "keyfile",
    "baseurl",
    "system",
    "profile",
    "stats",
    "diagnostics",
    "retry",
    "clear",
    "help",
    "quit",
];

const SET_USAGE: &str = "usage: /set KEY VALUE | /set KEY | /set --unset KEY | /set modelparam K V";
const PROFILE_USAGE: &str = "usage: /profile save model NAME [BUCKET…] | /profile save loadbalancer NAME failover|roundrobin P1 P2 […] | /profile load [NAME] | /profile list | /profile delete NAME | /profile set-default NAME|none";

/// Splits off the first whitespace-separated word; the rest is trimmed.
fn word(text: &str) -> (&str, &str) {
    let t = text.trim_start();
    match t.find(char::is_whitespace) {
        Some(i) => (&t[..i], t[i..].trim()),
        None => (t, ""),
    }
}

fn optional(rest: &str) -> Option<String> {
    (!rest.is_empty()).then(|| rest.to_string())
}

/// Reads one line.
pub fn parse(line: &str) -> Result<Input, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Ok(Input::Empty);
    }
    if let Some(escaped) = line.strip_prefix("//") {
        return Ok(Input::Message(format!("/{escaped}")));
    }
    let Some(command) = line.trim_start().strip_prefix('/') else {
        return Ok(Input::Message(line.to_string()));
    };
    let (name, rest) = word(command);
    let no_args = |s: Slash| {
        if rest.is_empty() {
            Ok(s)
        } else {
            Err(format!("/{name} takes no arguments"))
        }
    };
    let slash = match name {
        "provider" => Slash::Provider(single(name, rest)?),
        "model" => Slash::Model(single(name, rest)?),
        "auth" => Slash::Auth(rest.to_string()),
        "set" => parse_set(rest)?,
        "keyfile" => Slash::Keyfile(optional(rest)),
        "baseurl" => Slash::BaseUrl(single(name, rest)?),
        "system" => Slash::System(optional(rest)),
        "profile" => parse_profile(rest)?,
        "stats" => match rest {
            "" => Slash::Stats(StatsPart::All),
            "lb" => Slash::Stats(StatsPart::Lb),
            "buckets" => Slash::Stats(StatsPart::Buckets),
            _ => return Err("usage: /stats [lb|buckets]".into()),
        },
        "diagnostics" => no_args(Slash::Diagnostics)?,
        "retry" => no_args(Slash::Retry)?,
        "clear" => no_args(Slash::Clear)?,
        "help" => Slash::Help,
        "quit" => no_args(Slash::Quit)?,
        _ => {
            let hint = did_you_mean(name, COMMANDS.iter().copied())
                .map(|s| format!("; did you mean /{s}?"))
                .unwrap_or_default();
            return Err(format!(
                "unknown command /{name}{hint} (/help lists the commands; start a message with // to send a slash)"
            ));
        }
    };
    Ok(Input::Command(slash))
}

/// At most one word.
fn single(name: &str, rest: &str) -> Result<Option<String>, String> {
    let (first, more) = word(rest);
    if more.is_empty() {
        Ok(optional(first))
    } else {
        Err(format!("usage: /{name} [{}]", name.to_uppercase()))
    }
}

fn parse_set(rest: &str) -> Result<Slash, String> {
    let (first, after) = word(rest);
    match first {
        "" => Err(SET_USAGE.into()),
        "--unset" => {
            let (key, more) = word(after);
            match (key, word(more)) {
                ("modelparam", (k, "")) if !k.is_empty() => Ok(Slash::UnsetParam(k.to_string())),
                ("" | "modelparam", _) => Err(SET_USAGE.into()),
                (k, ("", _)) => Ok(Slash::Unset(k.to_string())),
                _ => Err(SET_USAGE.into()),
            }
        }
        "modelparam" => {
            let (k, v) = word(after);
            match (k, v) {
                ("", _) => Err(SET_USAGE.into()),
                (k, "") => Ok(Slash::ShowParam(k.to_string())),
                (k, v) => Ok(Slash::Param(k.to_string(), v.to_string())),
            }
        }
        key if after.is_empty() => Ok(Slash::Show(key.to_string())),
        key => Ok(Slash::Set(key.to_string(), after.to_string())),
    }
}

fn parse_profile(rest: &str) -> Result<Slash, String> {
    let words: Vec<&str> = rest.split_whitespace().collect();
    let owned = |w: &[&str]| w.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
    match words.as_slice() {
        ["save", "model", name, buckets @ ..] => Ok(Slash::SaveModel {
            name: (*name).to_string(),
            buckets: owned(buckets),
        }),
        ["save", "loadbalancer", name, policy, backends @ ..] => {
            let policy = match *policy {
                "failover" => Policy::Failover,
                "roundrobin" => Policy::Roundrobin,
                other => {
                    return Err(format!(
                        "unknown policy \"{other}\": a load balancer is failover or roundrobin"
                    ));
                }
            };
            if backends.len() < 2 {
                return Err("a load balancer needs at least 2 backends".into());
            }
            Ok(Slash::SaveLoadBalancer {
                name: (*name).to_string(),
                policy,
                backends: owned(backends),
            })
        }
        ["load"] => Ok(Slash::Load(None)),
        ["load", name] => Ok(Slash::Load(Some((*name).to_string()))),
        ["list"] => Ok(Slash::List),
        ["delete", name] => Ok(Slash::Delete((*name).to_string())),
        ["set-default", name] => Ok(Slash::SetDefault((*name).to_string())),
        _ => Err(PROFILE_USAGE.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(line: &str) -> Slash {
        match parse(line) {
            Ok(Input::Command(c)) => c,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn messages_empty_lines_and_the_double_slash_escape() {
        assert_eq!(parse("   ").unwrap(), Input::Empty);
        assert_eq!(
            parse("hello /there").unwrap(),
            Input::Message("hello /there".into())
        );
        assert_eq!(
            parse("//etc/hosts?").unwrap(),
            Input::Message("/etc/hosts?".into())
        );
        assert_eq!(
            parse("  spaced  \n").unwrap(),
            Input::Message("  spaced  ".into())
        );
    }

    #[test]
    fn set_forms() {
        assert_eq!(
            cmd("/set streaming disabled"),
            Slash::Set("streaming".into(), "disabled".into())
        );
        assert_eq!(
            cmd("/set custom-headers {\"x-a\": \"1 2\"}"),
            Slash::Set("custom-headers".into(), "{\"x-a\": \"1 2\"}".into()),
            "the value is the rest of the line"
        );
        assert_eq!(
            cmd("/set context-limit"),
            Slash::Show("context-limit".into())
        );
        assert_eq!(
            cmd("/set --unset context-limit"),
            Slash::Unset("context-limit".into())
        );
        assert_eq!(
            cmd("/set modelparam temperature 0.5"),
            Slash::Param("temperature".into(), "0.5".into())
        );
        assert_eq!(
            cmd("/set modelparam temperature"),
            Slash::ShowParam("temperature".into())
        );
        assert_eq!(
            cmd("/set --unset modelparam top_p"),
            Slash::UnsetParam("top_p".into())
        );
        for bad in [
            "/set",
            "/set --unset",
            "/set --unset a b",
            "/set modelparam",
            "/set --unset modelparam",
        ] {
            assert!(parse(bad).unwrap_err().starts_with("usage: /set"), "{bad}");
        }
    }

    #[test]
    fn model_setup_commands() {
        assert_eq!(cmd("/provider"), Slash::Provider(None));
        assert_eq!(
            cmd("/provider anthropic"),
            Slash::Provider(Some("anthropic".into()))
        );
        assert_eq!(cmd("/model  gpt-4o "), Slash::Model(Some("gpt-4o".into())));
        assert!(parse("/model a b").is_err());
        assert_eq!(
            cmd("/keyfile ~/my keys/k"),
            Slash::Keyfile(Some("~/my keys/k".into()))
        );
        assert_eq!(
            cmd("/baseurl http://x/v1"),
            Slash::BaseUrl(Some("http://x/v1".into()))
        );
        assert_eq!(
            cmd("/system Be brief.  Really."),
            Slash::System(Some("Be brief.  Really.".into()))
        );
        assert_eq!(cmd("/system"), Slash::System(None));
        assert_eq!(
            cmd("/auth anthropic login team1"),
            Slash::Auth("anthropic login team1".into())
        );
    }

    #[test]
    fn profile_forms() {
        assert_eq!(
            cmd("/profile save model work team1 team2"),
            Slash::SaveModel {
                name: "work".into(),
                buckets: vec!["team1".into(), "team2".into()]
            }
        );
        assert_eq!(
            cmd("/profile save loadbalancer ha roundrobin a b c"),
            Slash::SaveLoadBalancer {
                name: "ha".into(),
                policy: Policy::Roundrobin,
                backends: vec!["a".into(), "b".into(), "c".into()]
            }
        );
        assert!(
            parse("/profile save loadbalancer ha random a b")
                .unwrap_err()
                .contains("random")
        );
        assert!(
            parse("/profile save loadbalancer ha failover a")
                .unwrap_err()
                .contains("at least 2")
        );
        assert_eq!(cmd("/profile load"), Slash::Load(None));
        assert_eq!(cmd("/profile load x"), Slash::Load(Some("x".into())));
        assert_eq!(cmd("/profile list"), Slash::List);
        assert_eq!(cmd("/profile delete x"), Slash::Delete("x".into()));
        assert_eq!(
            cmd("/profile set-default none"),
            Slash::SetDefault("none".into())
        );
        assert!(
            parse("/profile")
                .unwrap_err()
                .starts_with("usage: /profile")
        );
        assert!(parse("/profile save model").is_err());
    }

    #[test]
    fn plain_commands_and_unknown_ones() {
        assert_eq!(cmd("/stats"), Slash::Stats(StatsPart::All));
        assert_eq!(cmd("/stats lb"), Slash::Stats(StatsPart::Lb));
        assert_eq!(cmd("/stats buckets"), Slash::Stats(StatsPart::Buckets));
        assert!(parse("/stats all").is_err());
        for (line, s) in [
            ("/diagnostics", Slash::Diagnostics),
            ("/retry", Slash::Retry),
            ("/clear", Slash::Clear),
            ("/help", Slash::Help),
            ("/quit", Slash::Quit),
        ] {
            assert_eq!(cmd(line), s);
        }
        assert!(parse("/quit now").is_err());
        let e = parse("/modle x").unwrap_err();
        assert!(
            e.contains("unknown command /modle; did you mean /model?"),
            "{e}"
        );
    }
}
