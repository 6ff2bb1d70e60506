//! What a turn runs on: the engine's plan for a profile and each backend's resolved settings,
//! built the same way for a chat turn and a serve request (SPEC §3, §5.3).
//!
//! Owns: looking a backend up in the store, and which OAuth buckets count as refreshable when
//! the plan is built. Must not: apply a face's own overrides (the chat session's parameters,
//! a serve request's sampling fields: the faces add them to the backends afterwards), or touch
//! the network.

use std::sync::Arc;

use crate::driver::plan::build_plan;
use crate::engine::Plan;
use crate::engine::plan::MidStream;
use crate::profile::model::{ModelProfile, Profile};
use crate::profile::resolve::ResolvedBackend;
use crate::profile::settings::Settings;
use crate::profile::store::Store;

/// What a turn runs on: the engine's plan and each backend's resolved settings.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The plan (its `lb` names the profile being run).
    pub plan: Arc<Plan>,
    /// The backends, with `modelParams` and §3.1 settings as sent.
    pub backends: Vec<ResolvedBackend>,
}

/// A backend profile by name from the store (model profiles only).
pub fn lookup_backend(store: &Store, name: &str) -> Result<ModelProfile, String> {
    match store.load_backend(name).map_err(|e| e.to_string())? {
        Profile::Model(m) => Ok(m),
        Profile::LoadBalancer(_) => Err(format!("backend \"{name}\" is a load balancer")),
    }
}

/// The plan and backends of `profile` (named `name`) with `session` settings over every
/// backend's (SPEC §3) and `mid_stream` as the face's default (SPEC §3.2). An OAuth bucket
/// counts as refreshable when its stored login has a refresh token (SPEC §5.3).
pub fn resolve(
    store: &Store,
    name: &str,
    profile: &Profile,
    session: &Settings,
    mid_stream: MidStream,
) -> Result<(Plan, Vec<ResolvedBackend>), String> {
    let root = store.root().to_path_buf();
    let refreshable = |provider: &str, bucket: &str| {
        crate::auth::store::has_refresh_token(&root, provider, bucket)
    };
    build_plan(
        name,
        profile,
        &|n: &str| lookup_backend(store, n),
        session,
        mid_stream,
        &refreshable,
    )
}
