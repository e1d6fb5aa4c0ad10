//! Pub/sub topic rules from the manifest: the first `topics` entry whose pattern matches a
//! topic decides, with `topic.name` (the whole topic) and `topic.match` (what the pattern's
//! first `*` matched, so `"pattern":"user:*","subscribe":"auth.userId == topic.match"` gives
//! each user a private topic). Without a matching entry or rule: sessions subscribe, the admin
//! publishes.

use serde_json::Value;

use super::manifest::AppManifest;
use super::policy::{AuthContext, ContextRule};
use super::rows::Row;
use crate::error::{PlazaError, Result};

/// Longest topic name.
pub const MAX_TOPIC_LEN: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicAction {
    Publish,
    Subscribe,
}

#[derive(Debug)]
struct Rule {
    pattern: String,
    publish: Option<ContextRule>,
    subscribe: Option<ContextRule>,
}

#[derive(Debug, Default)]
pub struct TopicRules {
    rules: Vec<Rule>,
}

/// A topic from a client: 1 to `MAX_TOPIC_LEN` bytes, no control characters.
pub fn check_topic(topic: &str) -> Result<()> {
    if topic.is_empty() || topic.len() > MAX_TOPIC_LEN || topic.chars().any(char::is_control) {
        return Err(PlazaError::Validation(format!(
            "\"topic\" must be a string of 1 to {MAX_TOPIC_LEN} bytes without control characters"
        )));
    }
    Ok(())
}

/// What the first `*` of `pattern` matched in `text`, when it matches.
fn glob(pattern: &str, text: &str) -> Option<String> {
    super::manifest::pattern_match(pattern, text).map(str::to_string)
}

impl TopicRules {
    pub fn from_manifest(manifest: &AppManifest) -> Result<TopicRules> {
        let mut rules = Vec::new();
        let mut problems = Vec::new();
        for t in &manifest.topics {
            if t.pattern.is_empty() || t.pattern.len() > MAX_TOPIC_LEN {
                problems.push(format!("topic pattern '{}' must be 1 to {MAX_TOPIC_LEN} bytes", t.pattern));
            }
            let mut rule = |name: &str, src: &Option<String>| {
                src.as_deref().and_then(|src| match ContextRule::parse(src, "topic", &["name", "match"]) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        problems.push(format!("topic '{}'.{name}: {e}", t.pattern));
                        None
                    }
                })
            };
            let (publish, subscribe) = (rule("publish", &t.publish), rule("subscribe", &t.subscribe));
            rules.push(Rule { pattern: t.pattern.clone(), publish, subscribe });
        }
        if problems.is_empty() {
            Ok(TopicRules { rules })
        } else {
            Err(PlazaError::Validation(problems.join("\n")))
        }
    }

    /// Whether `auth` may publish to / subscribe to `topic`.
    pub fn allows(&self, auth: &AuthContext, action: TopicAction, topic: &str) -> bool {
        if auth.admin {
            return true;
        }
        // A read-only API key may subscribe, never publish.
        if auth.read_only && action == TopicAction::Publish {
            return false;
        }
        let found = self.rules.iter().find_map(|r| glob(&r.pattern, topic).map(|m| (r, m)));
        let rule = found.as_ref().and_then(|(r, m)| {
            let rule = match action {
                TopicAction::Publish => r.publish.as_ref(),
                TopicAction::Subscribe => r.subscribe.as_ref(),
            }?;
            Some((rule, m))
        });
        match rule {
            Some((rule, matched)) => {
                let mut context = Row::new();
                context.insert("name".into(), Value::String(topic.to_string()));
                context.insert("match".into(), Value::String(matched.clone()));
                rule.allows(auth, &context)
            }
            None => match action {
                TopicAction::Subscribe => auth.user_id.is_some(),
                TopicAction::Publish => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(topics: &str) -> TopicRules {
        TopicRules::from_manifest(&AppManifest::from_json(&format!(r#"{{"topics":{topics}}}"#)).unwrap()).unwrap()
    }

    #[test]
    fn patterns_rules_and_defaults() {
        let r = rules(
            r#"[{"pattern":"user:*","subscribe":"auth.userId == topic.match","publish":"auth.userId == topic.match"},
                {"pattern":"news","publish":"!auth.guest && auth.userId != null","subscribe":"true"}]"#,
        );
        let (u1, anon) = (AuthContext::user("u1"), AuthContext::default());
        assert!(r.allows(&u1, TopicAction::Subscribe, "user:u1"));
        assert!(!r.allows(&u1, TopicAction::Subscribe, "user:u2"));
        assert!(r.allows(&u1, TopicAction::Publish, "user:u1"));
        assert!(r.allows(&anon, TopicAction::Subscribe, "news"));
        assert!(r.allows(&u1, TopicAction::Publish, "news"));
        assert!(!r.allows(&AuthContext { guest: true, ..AuthContext::user("g") }, TopicAction::Publish, "news"));
        // No entry: sessions subscribe, only the admin publishes.
        assert!(r.allows(&u1, TopicAction::Subscribe, "other"));
        assert!(!r.allows(&anon, TopicAction::Subscribe, "other"));
        assert!(!r.allows(&u1, TopicAction::Publish, "other"));
        assert!(r.allows(&AuthContext::admin(), TopicAction::Publish, "other"));
    }

    #[test]
    fn bad_rules_are_refused_naming_the_topic() {
        let m = AppManifest::from_json(r#"{"topics":[{"pattern":"a","publish":"data.x == 1"}]}"#).unwrap();
        let err = TopicRules::from_manifest(&m).unwrap_err().to_string();
        assert!(err.contains("topic 'a'.publish"), "{err}");
        assert_eq!(glob("a*c", "abbc").as_deref(), Some("bb"));
        assert_eq!(glob("a*", "b"), None);
    }
}
