//! The worker's durafetch settings: the `DURAFETCH` variable of wrangler.toml and the secret.

use crate::core::auth::{Secret, SecretError, RESTORE_SECRET_NAME, SECRET_NAME};
use crate::core::route::ApiAddress;
use crate::core::shard::MAX_REGISTRY_SHARDS;
use serde::Deserialize;
use std::cell::{OnceCell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use worker::Env;

/// Binding of the registry object, fixed so that objects and the worker find it without settings.
pub(crate) const REGISTRY_BINDING: &str = "DURAFETCH_REGISTRY";
/// Name of the wrangler.toml variable that holds [`Config`].
pub(crate) const CONFIG_VAR: &str = "DURAFETCH";

/// `[vars.DURAFETCH]` in wrangler.toml:
/// `worker` is the worker's name (by default the API answers on `durafetch_<worker>.<zone>`),
/// `objects` maps each instrumented class to its Durable Object binding, so an export request
/// naming a class reaches the right namespace, and `api` (with `path_prefix`) chooses where the
/// API answers (`core::route::ApiAddress`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    pub worker: String,
    pub objects: BTreeMap<String, String>,
    #[serde(default)]
    api: Option<String>,
    #[serde(default)]
    path_prefix: Option<String>,
    /// Where the API answers, from `api` and `path_prefix`.
    #[serde(skip)]
    pub address: ApiAddress,
    /// Readers more than this many log rows behind an object get a full snapshot; deletions
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
        let address = ApiAddress::parse(config.api.as_deref(), config.path_prefix.as_deref())?;
        Ok(Config { address, ..config })
    }

    /// [`Config::from_env`], read once per isolate: the worker's entry point asks for it on every
    /// request (in path-prefix mode any request may be the API's), and a deployment's variables
    /// do not change under a running isolate. An unusable configuration is logged once per
    /// isolate (`wrangler tail` shows it), whichever request comes first.
    pub fn cached(env: &Env) -> Result<Rc<Config>, Rc<ConfigError>> {
        CONFIG.with(|cached| {
            cached
                .get_or_init(|| {
                    Config::from_env(env).map(Rc::new).map_err(|message| {
                        worker::console_error!("{message}");
                        // Read apart from the rest, which may be what is malformed.
                        let path_prefix = env
                            .object_var::<serde_json::Value>(CONFIG_VAR)
                            .ok()
                            .and_then(|config| config.get("path_prefix")?.as_str().map(str::to_owned));
                        Rc::new(ConfigError { message, path_prefix })
                    })
                })
                .clone()
        })
    }
}

/// Why the configuration cannot be used, and the `path_prefix` it names, if any: a request under
/// that prefix is meant for the API, and is told what is wrong.
#[derive(Debug)]
pub(crate) struct ConfigError {
    pub message: String,
    pub path_prefix: Option<String>,
}

thread_local! {
    static CONFIG: OnceCell<Result<Rc<Config>, Rc<ConfigError>>> = const { OnceCell::new() };
}

/// The reading secret, [`SECRET_NAME`]: exports, the index, and the internal calls' tag.
pub(crate) fn secret(env: &Env) -> Result<Secret, SecretError> {
    named_secret(env, SECRET_NAME)
}

/// The writing secret, [`RESTORE_SECRET_NAME`]: restores only, and none of its tokens one
/// that `reading` (the reading secret) accepts.
pub(crate) fn restore_secret(env: &Env, reading: &Secret) -> Result<Secret, SecretError> {
    named_secret(env, RESTORE_SECRET_NAME)?.apart_from(reading)
}

fn named_secret(env: &Env, name: &'static str) -> Result<Secret, SecretError> {
    let raw = env.secret(name).ok().map(|s| s.to_string());
    Secret::parse_named(name, raw.as_deref())
}

impl Config {
    /// Why an export request for `class` cannot reach its objects, naming the fix: the class is
    /// missing from `objects`.
    pub fn unknown_class(&self, class: &str) -> String {
        let listed = self.objects.keys().map(String::as_str).collect::<Vec<_>>().join(", ");
        format!(
            "durafetch: the class {class} is not in [vars.DURAFETCH] objects (which lists: {listed}); if {class} is instrumented \
             with #[durafetch], add {class} = \"<its Durable Object binding>\" to objects in wrangler.toml"
        )
    }

    /// What keeps the objects of the instrumented `class` from being exported, naming the fix:
    /// the class missing from `objects`, or mapped to a binding that is not its own. `own_id` is
    /// the id of one of its objects, which only its own namespace accepts.
    fn misconfiguration(&self, env: &Env, class: &str, own_id: &str) -> Option<String> {
        let Some(binding) = self.objects.get(class) else { return Some(self.unknown_class(class)) };
        let namespace = match env.durable_object(binding) {
            Ok(namespace) => namespace,
            Err(_) => return Some(not_a_binding(class, binding)),
        };
        namespace.id_from_string(own_id).is_err().then(|| {
            format!(
                "durafetch: [vars.DURAFETCH] objects maps {class} to the binding {binding}, which belongs to another class; \
                 set {class} = \"<the binding whose class_name is {class}>\" in wrangler.toml"
            )
        })
    }
}

/// The message for an `objects` entry whose binding the worker does not have.
pub(crate) fn not_a_binding(class: &str, binding: &str) -> String {
    format!(
        "durafetch: [vars.DURAFETCH] objects maps {class} to the binding {binding}, which is not a Durable Object binding of this \
         worker; set {class} = \"<the binding whose class_name is {class}>\" in wrangler.toml"
    )
}

thread_local! {
    /// Classes whose settings were already checked in this isolate: each is checked once, at its
    /// first object's construction, so a misconfiguration is logged once, not per object.
    static CHECKED_CLASSES: RefCell<BTreeSet<&'static str>> = const { RefCell::new(BTreeSet::new()) };
}

/// Logs, once per class and isolate, what keeps an instrumented class from being exported. Its
/// writes are recorded regardless, so fixing wrangler.toml later loses nothing.
pub(crate) fn check_instrumented_class(config: &Result<Config, String>, env: &Env, class: &'static str, own_id: &str) {
    if !CHECKED_CLASSES.with(|checked| checked.borrow_mut().insert(class)) {
        return;
    }
    let problem = match config {
        Ok(config) => config.misconfiguration(env, class, own_id),
        Err(message) => Some(message.clone()),
    };
    if let Some(problem) = problem {
        worker::console_error!("{problem}");
    }
}
