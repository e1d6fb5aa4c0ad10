//! The app's language, with no actors in it: the manifest (entities, fields, policies), rows and
//! their validation, the filter language, policy expressions, and the `Change` record. Pure data
//! and evaluation: everything here can be tested without a running system, and nothing here
//! imports from the actors that run it.

pub mod aggregate;
pub mod change;
pub mod graph;
pub mod manifest;
pub mod policy;
pub mod query;
pub mod rows;
pub mod search;

use crate::error::Result;
use manifest::AppManifest;
use policy::{DefaultPolicy, Policies};

/// Every problem in a manifest: its structure first, then its policy expressions against the
/// (now sound) entities. `plaza check` and start-up both use it.
pub fn check(manifest: &AppManifest) -> Result<()> {
    manifest.validate()?;
    Policies::from_manifest(manifest, DefaultPolicy::Allow).map(drop)
}
