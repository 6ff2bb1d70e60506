//! The profile store's listing and default, as the command line and the session both show and
//! set them (SPEC §8.1 `profile list`, `profile set-default`, `/profile list`,
//! `/profile set-default`).

use serde_json::{Value, json};

use super::table::{Align, Table};
use crate::face::{CmdError, Streams, exit};
use crate::profile::model::Profile;
use crate::profile::names::same_profile_name;
use crate::profile::store::Store;

/// `profile list` (also the session's `/profile list`).
pub fn list(store: &Store, json: bool, io: &mut Streams<'_>) -> Result<u8, CmdError> {
    let default = store.default_profile()?;
    let is_default = |n: &str| default.as_deref().is_some_and(|d| same_profile_name(d, n));
    let listed = store.list();
    if json {
        let rows: Vec<Value> = listed
            .iter()
            .map(|l| {
                let mut o = json!({"name": l.name, "default": is_default(&l.name)});
                match &l.profile {
                    Ok(Profile::Model(m)) => {
                        o["kind"] = json!("model");
                        o["provider"] = json!(m.provider);
                        o["model"] = json!(m.model);
                    }
                    Ok(Profile::LoadBalancer(lb)) => {
                        o["kind"] = json!("loadbalancer");
                        o["policy"] = json!(lb.policy.as_str());
                        o["backends"] = json!(lb.backends);
                    }
                    Err(e) => o["invalid"] = json!(e),
                }
                o
            })
            .collect();
        writeln!(
            io.out,
            "{}",
            serde_json::to_string_pretty(&rows).expect("plain JSON")
        )?;
        return Ok(exit::OK);
    }
    if listed.is_empty() {
        writeln!(
            io.err,
            "no profiles in {}; create one with llxprt profile save model NAME --provider P --model M",
            store.profiles_dir().display()
        )?;
    }
    // SPEC §8.1: one line per profile (more only when a cell must wrap to fit the width),
    // aligned: `* name  model  provider/model` or `  name  loadbalancer  policy  backends`.
    let mut t = Table::new(&[Align::Left; 4]);
    for l in &listed {
        let mark = if is_default(&l.name) { '*' } else { ' ' };
        let name = format!("{mark} {}", l.name);
        t.row(match &l.profile {
            Ok(Profile::Model(m)) => {
                vec![name, "model".into(), format!("{}/{}", m.provider, m.model)]
            }
            Ok(Profile::LoadBalancer(lb)) => vec![
                name,
                "loadbalancer".into(),
                lb.policy.as_str().into(),
                lb.backends.join(", "),
            ],
            Err(e) => vec![name, format!("(invalid: {e})")],
        });
    }
    io.out
        .write_all(t.render(crate::terminal::report_width()).as_bytes())?;
    Ok(exit::OK)
}

/// `profile set-default NAME|none` (also the session's).
pub fn set_default(store: &Store, name: &str, io: &mut Streams<'_>) -> Result<u8, CmdError> {
    if name.eq_ignore_ascii_case("none") {
        store.set_default(None)?;
        writeln!(io.err, "no default profile")?;
        return Ok(exit::OK);
    }
    // The check that it exists and the write are one step (SPEC §1: concurrent processes).
    let actual = store.set_default_existing(name)?;
    writeln!(io.err, "default profile: {actual}")?;
    Ok(exit::OK)
}
