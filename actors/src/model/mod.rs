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
pub mod topics;
pub mod search;

use crate::error::{PlazaError, Result};
use manifest::AppManifest;
use policy::{DefaultPolicy, Policies, RoomRules};

/// Every problem in a manifest: its structure first, then its policy and room-rule expressions
/// against the (now sound) entities. `plaza check` and start-up both use it.
pub fn check(manifest: &AppManifest) -> Result<()> {
    manifest.validate()?;
    let policies = Policies::from_manifest(manifest, DefaultPolicy::Allow).map(drop);
    let rooms = RoomRules::from_manifest(manifest).map(drop);
    let topics = topics::TopicRules::from_manifest(manifest).map(drop);
    // Every expression problem at once, as `plaza check` promises.
    let problems: Vec<String> = [policies, rooms, topics]
        .into_iter()
        .filter_map(Result::err)
        .map(|e| match e {
            PlazaError::Validation(m) => m,
            other => other.to_string(),
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(PlazaError::Validation(problems.join("\n")))
    }
}
