//! The session (SPEC §8.1, §5.8): what is loaded, what the user changed on top of it, and the
//! conversation, which llxprt keeps itself.
//!
//! Owns: the loaded profile (or none), the model setup made with `/provider`, `/model`,
//! `/baseurl`, `/keyfile`, the session settings (`/set`, `--set`, `/system`) and model
//! parameters, the history (only complete replies are appended; a failed or cancelled turn's
//! user message is kept aside for `/retry`, not in the history), and building each turn's plan.
//! Must not: print, or run a turn any other way than [`super::turn::run_turn`].
//!
//! Decisions where SPEC is silent (also in the README):
//! - `/profile load` starts a fresh model setup (the `/provider`…`/keyfile` changes belonged to
//!   the previous profile); the handler then clears the session overrides (SPEC §8.1), but the
//!   first load, of the command line's profile, keeps `--set`/`--param`/`--system`, which were
//!   given for it. The conversation stays.
//! - `/provider` while a load balancer is loaded leaves it (nothing is loaded afterwards) and
//!   starts a model setup from scratch: no settings, parameters or buckets of the old profile.
//! - A model setup that differs from the loaded profile's provider, model or base URL runs
//!   under the backend name `session/<provider>` — a name no profile can have — so its engine
//!   state never resets a stored profile's circuit or statistics (SPEC §5.9 fingerprints).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde_json::{Map, Value};

use super::turn::{TurnOutcome, run_turn};
use crate::conversation::prepare::{Prepared, lookup_backend, resolve};
use crate::driver::Ending;
use crate::driver::plan::build_plan;
use crate::engine::plan::MidStream;
use crate::face::{CmdError, exit};
use crate::profile::diagnostic::Severity;
use crate::profile::model::{ModelProfile, Profile};
use crate::profile::names::same_profile_name;
use crate::profile::settings::Settings;
use crate::profile::store::{Store, StoreError};
use crate::shell::protocol::{Role, Turn};

mod oauth;
mod overrides;

pub use overrides::Part;

/// A profile loaded into the session.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Its name as stored.
    pub name: String,
    /// The validated profile.
    pub profile: Profile,
    /// The load's warnings (messages).
    pub warnings: Vec<String>,
    /// Its file.
    pub path: PathBuf,
}

/// The model setup typed in the session over the loaded model profile.
#[derive(Debug, Clone, Default)]
struct Identity {
    provider: Option<String>,
    model: Option<String>,
    base_url: Option<String>,
    keyfile: Option<String>,
    /// `--set auth-key=…` on the command line (never typed in the session, SPEC §7). Never
    /// shown: this struct is not printed.
    key: Option<String>,
    /// `/provider` was used: nothing of the loaded profile's model setup is kept.
    fresh: bool,
    /// `/auth P enable` (true) or `disable` (false): P's OAuth `default` login or the API key.
    oauth: Option<bool>,
}

/// The interactive session (also the one-shot's single turn).
pub struct Session {
    store: Store,
    loaded: Option<Loaded>,
    ident: Identity,
    /// `/set` values as typed (canonical keys), checked one by one.
    overrides: Map<String, Value>,
    /// `overrides` read as settings.
    settings: Settings,
    /// `/set modelparam`, `--param`: over every backend's `modelParams`.
    params: Map<String, Value>,
    history: Vec<Turn>,
    retry: Option<String>,
    mid_stream_default: MidStream,
    /// `--record TRACE` (SPEC §9.2).
    pub recorder: Option<crate::record::Recorder>,
    /// `/set quiet true`, `--quiet`: hide the live notes. A session-only switch, never saved
    /// nor cleared (SPEC §8.1).
    quiet: bool,
    /// The interactive session (not the one-shot): hints name slash commands (SPEC §8.1).
    interactive: bool,
}

impl Session {
    /// An empty session; `mid_stream_default` is the driver's (terminal or not, SPEC §3.2).
    pub fn new(store: Store, mid_stream_default: MidStream) -> Session {
        Session {
            store,
            loaded: None,
            ident: Identity::default(),
            overrides: Map::new(),
            settings: Settings::default(),
            params: Map::new(),
            history: Vec::new(),
            retry: None,
            mid_stream_default,
            recorder: None,
            quiet: false,
            interactive: false,
        }
    }

    /// Marks the session interactive: its hints name the session's own commands.
    #[must_use]
    pub fn interactive(mut self) -> Self {
        self.interactive = true;
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The loaded profile.
    pub fn loaded(&self) -> Option<&Loaded> {
        self.loaded.as_ref()
    }

    /// Whether a load balancer is loaded.
    pub fn lb_loaded(&self) -> bool {
        matches!(
            self.loaded,
            Some(Loaded {
                profile: Profile::LoadBalancer(_),
                ..
            })
        )
    }

    /// The conversation.
    pub fn history(&self) -> &[Turn] {
        &self.history
    }

    /// Loads a profile (fully validated; a load balancer only with all its backends, SPEC
    /// §8.1). The conversation stays; the model setup starts afresh.
    ///
    /// A profile that does not load is an exit-3 error naming its file (SPEC §8.1).
    pub fn load(&mut self, name: &str) -> Result<&Loaded, CmdError> {
        let (profile, diags) = self.store.load(name).map_err(|e| match e {
            StoreError::Missing { ref suggestion, .. } => match self.store.path_of(name) {
                Ok(path) => CmdError::new(
                    exit::CONFIG,
                    format!("{e} (no file {})", path.display()),
                )
                .help(match suggestion {
                    // SPEC §8.1: a missing profile name gets a did-you-mean.
                    Some(s) => format!("did you mean \"{s}\"?"),
                    // SPEC §8.1: hints in the session use the session's own commands.
                    None if self.interactive => format!(
                        "/profile list shows the profiles; /profile save model {name} saves the current model setup as {name}"
                    ),
                    None => format!(
                        "re-save it (llxprt profile save model|loadbalancer {name} …), or pick one from llxprt profile list"
                    ),
                }),
                Err(e) => e.into(),
            },
            other => other.into(),
        })?;
        let actual = self
            .store
            .names()
            .into_iter()
            .find(|n| same_profile_name(n, name))
            .unwrap_or_else(|| name.to_string());
        let path = self.store.path_of(&actual)?;
        if matches!(profile, Profile::LoadBalancer(_)) {
            // Never run with fewer backends: every backend must load now.
            build_plan(
                &actual,
                &profile,
                &|n: &str| lookup_backend(&self.store, n),
                &Settings::default(),
                self.mid_stream_default,
                &|_: &str, _: &str| false,
            )
            .map_err(|e| {
                CmdError::new(exit::CONFIG, format!("{}: {e}", path.display())).help(format!(
                    "re-save it, or run llxprt profile validate {}",
                    path.display()
                ))
            })?;
        }
        let warnings = diags
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .map(|d| d.message.clone())
            .collect();
        self.ident = Identity::default();
        Ok(self.loaded.insert(Loaded {
            name: actual,
            profile,
            warnings,
            path,
        }))
    }

    /// Forgets the conversation (`/clear`).
    pub fn clear(&mut self) {
        self.history.clear();
        self.retry = None;
    }

    /// The last failed or cancelled message, taken for `/retry`.
    pub fn take_retry(&mut self) -> Option<String> {
        self.retry.take()
    }

    /// The model setup the next turn runs when no load balancer is loaded: the loaded model
    /// profile with the session's `/provider`, `/model`, `/baseurl` and `/keyfile` applied,
    /// and the backend name it runs under (see the module doc).
    pub fn model_setup(&self) -> Result<(String, ModelProfile), String> {
        let base = match &self.loaded {
            Some(Loaded {
                name,
                profile: Profile::Model(m),
                ..
            }) => Some((name.as_str(), m)),
            Some(l) => {
                return Err(format!("load balancer \"{}\" is loaded", l.name));
            }
            None => None,
        };
        let keep = base.filter(|_| !self.ident.fresh);
        let provider = self
            .ident
            .provider
            .clone()
            .or_else(|| keep.map(|(_, m)| m.provider.clone()))
            .ok_or("nothing is loaded: /profile load NAME, or /provider NAME and /model NAME")?;
        let info = crate::provider::find(&provider)
            .ok_or_else(|| format!("unknown provider \"{provider}\""))?;
        let model = self
            .ident
            .model
            .clone()
            .or_else(|| keep.map(|(_, m)| m.model.clone()))
            .ok_or_else(|| format!("no model chosen for {provider}: /model NAME"))?;
        let mut m = keep.map_or_else(
            || ModelProfile {
                provider: provider.clone(),
                model: model.clone(),
                model_params: Map::new(),
                settings: Settings::default(),
                auth: None,
            },
            |(_, m)| m.clone(),
        );
        m.provider = provider;
        m.model = model;
        if let Some(u) = &self.ident.base_url {
            m.settings.base_url = Some(u.clone());
        }
        if let Some(k) = &self.ident.keyfile {
            m.settings.auth_keyfile = Some(k.clone());
            m.settings.auth_key = None;
        }
        if let Some(k) = &self.ident.key {
            m.settings.auth_key = Some(k.clone());
            m.settings.auth_keyfile = None;
        }
        if let Some(on) = self.ident.oauth {
            // SPEC §6.3: enable means the OAuth `default` bucket; disable the API key.
            m.auth = on.then_some(crate::profile::model::Auth {
                kind: crate::profile::raw::AuthKind::Oauth,
                buckets: None,
            });
        }
        let name = match keep {
            Some((n, orig))
                if orig.provider == m.provider
                    && orig.model == m.model
                    && orig.settings.base_url == m.settings.base_url =>
            {
                n.to_string()
            }
            _ => format!("session/{}", info.name),
        };
        Ok((name, m))
    }

    /// The plan of the next turn: the loaded load balancer, or the model setup; session
    /// settings over every backend (SPEC §3), session model parameters over theirs.
    pub fn prepare(&self) -> Result<Prepared, String> {
        let (name, profile) = if let Some(l) = self.loaded.as_ref().filter(|_| self.lb_loaded()) {
            (l.name.clone(), l.profile.clone())
        } else {
            let (n, m) = self.model_setup()?;
            (n, Profile::Model(m))
        };
        let (plan, mut backends) = resolve(
            &self.store,
            &name,
            &profile,
            &self.settings,
            self.mid_stream_default,
        )?;
        for b in &mut backends {
            b.profile
                .model_params
                .extend(self.params.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Ok(Prepared {
            plan: Arc::new(plan),
            backends,
        })
    }

    /// Sends `prompt` as the next user message (SPEC §5.8): on delivery the reply joins the
    /// history (with its reasoning when `reasoning.includeInContext` is on); on failure or
    /// cancellation the message leaves the history and waits for `/retry`. `Err` means no
    /// turn could start (nothing to run); the message then also waits for `/retry`.
    pub fn send(
        &mut self,
        prompt: String,
        sink: &mut dyn crate::shell::http::AnswerSink,
        cancel: Arc<AtomicBool>,
    ) -> Result<TurnOutcome, String> {
        let prepared = match self.prepare() {
            Ok(p) => p,
            Err(e) => {
                self.retry = Some(prompt);
                return Err(e);
            }
        };
        self.history.push(Turn {
            role: Role::User,
            text: prompt,
            reasoning: None,
        });
        let out = run_turn(
            self.store.root(),
            &prepared,
            &self.history,
            sink,
            cancel,
            self.recorder.as_mut(),
        );
        if matches!(out.ending, Ending::Delivered { .. }) {
            self.history.push(Turn {
                role: Role::Assistant,
                text: out.answer.text.clone(),
                reasoning: out.reasoning_to_keep(),
            });
            self.retry = None;
        } else {
            self.retry = self.history.pop().map(|t| t.text);
        }
        Ok(out)
    }
}
