//! What every policy's `compile` gets besides its own config: one
//! signature for all, `compile(&Config, &mut CompileCtx) -> Result<Compiled, FieldErrors>`,
//! with error paths relative to the policy's own key (the registry nests
//! them under the route's).

use std::any::Any;
use std::sync::Arc;

use crate::config::{FieldErrors, LoadedConfig};

/// The context of one route's compilation.
pub struct CompileCtx<'a> {
    /// The config being compiled: resolves file names relative to it
    /// (`LoadedConfig::resolve_file`), for policies that read files.
    pub loaded: &'a LoadedConfig,
    /// The name of what is compiled: the route (counter namespaces), or
    /// the auth provider.
    pub name: &'a str,
    /// The route's upstream, when it has one.
    pub upstream: Option<&'a str>,
    /// The YAML path of the route (`routes[3]`): where `take` files errors.
    pub at: String,
    /// Every problem found so far, at full paths.
    pub errors: FieldErrors,
    shared: &'a Shared,
}

impl<'a> CompileCtx<'a> {
    pub fn new(loaded: &'a LoadedConfig, at: String, shared: &'a Shared) -> CompileCtx<'a> {
        CompileCtx { loaded, name: "", upstream: None, at, errors: FieldErrors::new(), shared }
    }

    /// Something the plan compiled once for every route (auth providers,
    /// rate-limit stores…), by type.
    pub fn shared<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.shared.get()
    }

    /// A policy's result: its value, or `None` with its problems filed under `key`.
    pub fn take<T>(&mut self, key: &str, result: Result<T, FieldErrors>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(errors) => {
                let key = crate::config::field_errors::join(&self.at, key);
                self.errors.nest(&key, errors);
                None
            }
        }
    }

    /// A problem found by the registry itself (a rule across policies).
    pub fn error(&mut self, key: &str, message: impl Into<String>) {
        let path = crate::config::field_errors::join(&self.at, key);
        self.errors.add(path, message);
    }
}

/// The running plan's value of a kind, in `Shared` during a reload: state
/// that outlives it (JWKS keys, rate-limit counters) is carried over.
pub struct Previous<T>(pub T);

/// What the plan compiles once and every route's policies may use, keyed
/// by type: policies read their own kinds without the policy floor
/// importing any policy.
#[derive(Default)]
pub struct Shared {
    items: Vec<Arc<dyn Any + Send + Sync>>,
}

impl Shared {
    pub fn insert<T: Any + Send + Sync>(&mut self, item: Arc<T>) {
        self.items.push(item);
    }

    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.items.iter().find_map(|i| i.downcast_ref::<T>())
    }
}

/// Runs `f` with the context of a route named `test` in an empty config,
/// with `shared` (for policies' unit tests).
#[cfg(test)]
pub fn with_test_ctx<R>(shared: Shared, f: impl FnOnce(&mut CompileCtx<'_>) -> R) -> R {
    let loaded = crate::config::parse_str("", "test.yaml", std::path::Path::new(".")).expect("empty config");
    let mut cx = CompileCtx::new(&loaded, "routes[0]".into(), &shared);
    cx.name = "test";
    f(&mut cx)
}
