//! The app's language, with no actors in it: the manifest (entities, fields, policies), rows and
//! their validation, the filter language, policy expressions, and the `Change` record. Pure data
//! and evaluation: everything here can be tested without a running system, and nothing here
//! imports from the actors that run it.

pub mod change;
pub mod manifest;
pub mod policy;
pub mod query;
pub mod rows;
pub mod topics;

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
    let mut problems = Vec::new();
    for outcome in [policies, rooms, topics] {
        match outcome {
            Err(PlazaError::Validation(p)) => problems.push(p),
            Err(e) => return Err(e),
            Ok(()) => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(PlazaError::Validation(problems.join("\n")))
    }
}
