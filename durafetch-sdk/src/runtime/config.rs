//! The worker's durafetch settings: the `DURAFETCH` variable of wrangler.toml and the secret.

use crate::core::auth::{Secret, SecretError, SECRET_NAME};
use crate::core::shard::MAX_REGISTRY_SHARDS;
use serde::Deserialize;
use std::collections::BTreeMap;
use worker::Env;

/// Binding of the registry object, fixed so that objects and the worker find it without settings.
pub(crate) const REGISTRY_BINDING: &str = "DURAFETCH_REGISTRY";
/// Name of the wrangler.toml variable that holds [`Config`].
pub(crate) const CONFIG_VAR: &str = "DURAFETCH";

/// `[vars.DURAFETCH]` in wrangler.toml:
/// `worker` is the worker's name (the API answers on `durafetch_<worker>.<zone>`), and `objects`
/// maps each instrumented class to its Durable Object binding, so an export request naming a
/// class reaches the right namespace.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    pub worker: String,
    pub objects: BTreeMap<String, String>,
    /// Readers more than this many write calls behind an object get a full snapshot; deletions
    /// older than that are forgotten by the log.
    #[serde(default)]
    pub tombstone_horizon: Option<u64>,
    /// How many registry objects share the index (default 1); see `docs/scale.md`.
    #[serde(default = "one_shard")]
    pub registry_shards: u32,
}

fn one_shard() -> u32 {
    1
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, String> {
        let config = env.object_var::<Config>(CONFIG_VAR).map_err(|e| {
            format!(
                "durafetch: the variable {CONFIG_VAR} is missing or malformed ({e}); add to wrangler.toml: \
                 [vars.DURAFETCH] worker = \"<worker name>\", objects = {{ <Class> = \"<binding>\" }}"
            )
        })?;
        if !(1..=MAX_REGISTRY_SHARDS).contains(&config.registry_shards) {
            return Err(format!("durafetch: DURAFETCH.registry_shards must be between 1 and {MAX_REGISTRY_SHARDS}"));
        }
        Ok(config)
    }
}

pub(crate) fn secret(env: &Env) -> Result<Secret, SecretError> {
    let raw = env.secret(SECRET_NAME).ok().map(|s| s.to_string());
    Secret::parse(raw.as_deref())
}
