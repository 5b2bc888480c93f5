//! The event catalogue: every `CC-Action` mod_callcenter 1.10 fires, which of
//! them are published, under which name, with which fields and which member
//! channel variables. Built from the settings at load (and at reload) and
//! shared read-only with the event callback and the worker. Pure.

use std::ffi::CString;
use std::sync::Arc;

use crate::format;
use crate::routes::Routes;

/// Where a field of the seed document's fixed layouts comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedSource {
    /// A header of the event, by its name without `CC-`.
    Header(&'static str),
    /// A member channel variable, by its name.
    Var(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedField {
    pub key: &'static str,
    pub source: SeedSource,
}

const fn h(key: &'static str, header: &'static str) -> SeedField {
    SeedField {
        key,
        source: SeedSource::Header(header),
    }
}

const fn v(name: &'static str) -> SeedField {
    SeedField {
        key: name,
        source: SeedSource::Var(name),
    }
}

/// The seed document's field list and order for Offering-Call-Agent, reused for Connected-Call-Agent.
pub const CALL_FIELDS: &[SeedField] = &[
    v("callrequest_id"),
    h("CC_Agent", "Agent"),
    v("campaign_id"),
    h("CC_Member_CID_Name", "Member-CID-Name"),
    h("CC_Agent_System", "Agent-System"),
    v("phonenumber"),
    v("callerid_number"),
    h("CC_Member_Session_UUID", "Member-Session-UUID"),
    h("CC_Member_UUID", "Member-UUID"),
    h("CC_Member_CID_Number", "Member-CID-Number"),
    h("CC_Queue", "Queue"),
];

pub const STATUS_FIELDS: &[SeedField] =
    &[h("CC_Agent", "Agent"), h("CC_Agent_Status", "Agent-Status")];

/// The member variables the seed document publishes (on Offering and Connected).
pub const SEED_VARS: &[&str] = &[
    "callrequest_id",
    "campaign_id",
    "phonenumber",
    "callerid_number",
];

/// One action mod_callcenter fires.
#[derive(Clone, Copy, Debug)]
pub struct ActionDef {
    pub action: &'static str,
    /// The default published name, in the seed's style.
    pub name: &'static str,
    /// The seed document's fixed field list; None: every `CC-*` header, in order.
    pub seed_fields: Option<&'static [SeedField]>,
    /// One of the seed document's three events (published by default).
    pub in_seed: bool,
    /// Answers a `callcenter_config agent get` query: only published when listed by name.
    pub query_reply: bool,
    /// The event carries the member's channel data (`variable_*` headers).
    pub carries_channel_data: bool,
    /// The live state mirror (`state=true`) applies it, published or not.
    pub affects_state: bool,
}

const fn def(action: &'static str, name: &'static str) -> ActionDef {
    ActionDef {
        action,
        name,
        seed_fields: None,
        in_seed: false,
        query_reply: false,
        carries_channel_data: false,
        affects_state: false,
    }
}

/// An action the state mirror applies.
const fn st(action: &'static str, name: &'static str) -> ActionDef {
    ActionDef {
        affects_state: true,
        ..def(action, name)
    }
}

/// Every `CC-Action` of mod_callcenter 1.10.12, in the order the README lists them.
pub const ACTIONS: &[ActionDef] = &[
    ActionDef {
        seed_fields: Some(CALL_FIELDS),
        in_seed: true,
        ..st("agent-offering", "Offering-Call-Agent")
    },
    ActionDef {
        seed_fields: Some(CALL_FIELDS),
        in_seed: true,
        ..st("bridge-agent-start", "Connected-Call-Agent")
    },
    ActionDef {
        seed_fields: Some(STATUS_FIELDS),
        in_seed: true,
        ..st("agent-status-change", "Agent-Status-Change")
    },
    ActionDef {
        carries_channel_data: true,
        ..st("member-queue-start", "Member-Queue-Start")
    },
    ActionDef {
        carries_channel_data: true,
        ..st("member-queue-resume", "Member-Queue-Resume")
    },
    // Fired on the member's channel, often after it has hung up (CS_REPORTING),
    // when its session can no longer be locked: the variables are in the event.
    ActionDef {
        carries_channel_data: true,
        ..st("member-queue-end", "Member-Queue-End")
    },
    st("members-count", "Members-Count"),
    st("bridge-agent-end", "Bridge-Agent-End"),
    st("bridge-agent-fail", "Bridge-Agent-Fail"),
    st("agent-state-change", "Agent-State-Change"),
    st("agent-contact-change", "Agent-Contact-Change"),
    def("agent-max-no-answer", "Agent-Max-No-Answer"),
    st("agent-add", "Agent-Add"),
    ActionDef {
        query_reply: true,
        ..def("agent-status-get", "Agent-Status-Get")
    },
    ActionDef {
        query_reply: true,
        ..def("agent-state-get", "Agent-State-Get")
    },
    ActionDef {
        query_reply: true,
        ..def("agent-uuid-get", "Agent-UUID-Get")
    },
];

/// Which actions to publish (`events`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// The seed document's three.
    Seed,
    /// Every action except the query replies.
    All,
    /// These actions, by name.
    List(Vec<String>),
}

/// What the operator configured about events; validated by `config`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSettings {
    pub selection: Selection,
    /// (action, published name)
    pub renames: Vec<(String, String)>,
    /// Member variables for every published event; None: the seed's default.
    pub variables: Option<Vec<String>>,
    /// (action, variables) overriding `variables` for one event.
    pub variables_for: Vec<(String, Vec<String>)>,
    /// The state mirror is on, keeping these member variables: the actions it
    /// applies are captured even when not published.
    pub state_vars: Option<Vec<String>>,
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            selection: Selection::Seed,
            renames: Vec::new(),
            variables: None,
            variables_for: Vec::new(),
            state_vars: None,
        }
    }
}

/// The action names, for error messages.
pub fn action_names() -> String {
    ACTIONS
        .iter()
        .map(|a| a.action)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The position of an action in `ACTIONS`.
pub fn index(action: &[u8]) -> Option<usize> {
    ACTIONS.iter().position(|a| a.action.as_bytes() == action)
}

pub fn find(action: &str) -> Option<&'static ActionDef> {
    ACTIONS.iter().find(|a| a.action == action)
}

/// One published action.
#[derive(Debug)]
pub struct Entry {
    pub def: &'static ActionDef,
    pub name: Arc<str>,
    /// Member variables to add, by name (NUL-terminated for FreeSWITCH).
    pub vars: Vec<CString>,
    /// Published (PUBLISH, and a payload in the stream); false: captured only
    /// for the state mirror.
    pub publish: bool,
    /// `vars[..shown_vars]` are in the payload; the rest only feed the state.
    pub shown_vars: usize,
}

impl Entry {
    /// Whether the member variables are read from the member's session
    /// (looked up in the callback) rather than from the event's own headers.
    pub fn vars_from_session(&self) -> bool {
        !self.vars.is_empty() && !self.def.carries_channel_data
    }

    pub fn var_name(&self, i: usize) -> &str {
        self.vars
            .get(i)
            .and_then(|c| c.to_str().ok())
            .unwrap_or_default()
    }

    /// The position of a variable in `vars`.
    pub fn var_index(&self, name: &str) -> Option<usize> {
        self.vars
            .iter()
            .position(|c| c.to_bytes() == name.as_bytes())
    }
}

/// What is published and how, built once per configuration (load, reload).
/// Every captured event keeps the catalogue it was captured with, so events
/// queued before a reload are published with the settings of their time.
#[derive(Debug)]
pub struct Catalogue {
    pub entries: Vec<Entry>,
    /// For each of `ACTIONS`, the entry publishing it: the callback finds the
    /// action's index once and needs no second comparison.
    by_action: [Option<usize>; ACTIONS.len()],
    /// Bit `i` set when `ACTIONS[i]` is captured: published, or applied by
    /// the state mirror.
    pub captured: u32,
    pub format: format::Kind,
    pub routes: Routes,
}

impl Catalogue {
    /// The default format and routes, for tests.
    pub fn new(settings: &EventSettings) -> Catalogue {
        Self::build(settings, format::Kind::Seed, Routes::default())
    }

    /// Builds the catalogue; the settings must have been validated by `config`.
    pub fn build(settings: &EventSettings, format: format::Kind, routes: Routes) -> Catalogue {
        let entries: Vec<Entry> = ACTIONS
            .iter()
            .filter_map(|d| {
                let publish = match &settings.selection {
                    Selection::Seed => d.in_seed,
                    Selection::All => !d.query_reply,
                    Selection::List(l) => l.iter().any(|a| {
                        a == d.action
                            || (a == "all" && !d.query_reply)
                            || (a == "seed" && d.in_seed)
                    }),
                };
                let for_state = d.affects_state && settings.state_vars.is_some();
                (publish || for_state).then_some((d, publish))
            })
            .map(|(d, publish)| {
                let name = settings
                    .renames
                    .iter()
                    .rev()
                    .find(|(a, _)| a == d.action)
                    .map_or_else(|| Arc::from(d.name), |(_, n)| Arc::from(n.as_str()));
                let vars: Vec<String> = if !publish {
                    Vec::new()
                } else {
                    match settings
                        .variables_for
                        .iter()
                        .rev()
                        .find(|(a, _)| a == d.action)
                    {
                        Some((_, v)) => v.clone(),
                        None => match &settings.variables {
                            Some(v) => v.clone(),
                            None if d.seed_fields == Some(CALL_FIELDS) => {
                                SEED_VARS.iter().map(|s| s.to_string()).collect()
                            }
                            None => Vec::new(),
                        },
                    }
                };
                // The seed events keep their documented fields whatever is configured:
                // their variables come first, configured ones after.
                let mut vars = vars;
                // A name listed twice is read once.
                let mut seen = std::collections::HashSet::new();
                vars.retain(|v| seen.insert(v.clone()));
                if let Some(layout) = d.seed_fields {
                    let mut fixed: Vec<String> = layout
                        .iter()
                        .filter_map(|f| match f.source {
                            SeedSource::Var(v) => Some(v.to_string()),
                            SeedSource::Header(_) => None,
                        })
                        .collect();
                    vars.retain(|v| !fixed.contains(v));
                    fixed.append(&mut vars);
                    vars = fixed;
                }
                let shown_vars = vars.len();
                // The state keeps a member's variables from the events that add it.
                if d.carries_channel_data && d.action != "member-queue-end" {
                    for v in settings.state_vars.iter().flatten() {
                        if !vars.contains(v) {
                            vars.push(v.clone());
                        }
                    }
                }
                Entry {
                    def: d,
                    name,
                    publish,
                    shown_vars,
                    vars: vars
                        .into_iter()
                        .filter_map(|v| CString::new(v).ok())
                        .collect(),
                }
            })
            .collect();
        let mut by_action = [None; ACTIONS.len()];
        for (i, e) in entries.iter().enumerate() {
            if let Some(a) = index(e.def.action.as_bytes()) {
                by_action[a] = Some(i);
            }
        }
        let captured = (0..ACTIONS.len())
            .filter(|&a| by_action[a].is_some())
            .fold(0, |m, a| m | (1 << a));
        Catalogue {
            entries,
            by_action,
            captured,
            format,
            routes,
        }
    }

    /// The entry publishing `ACTIONS[action_index]`, if it is published.
    pub fn entry_for(&self, action_index: usize) -> Option<usize> {
        self.by_action.get(action_index).copied().flatten()
    }

    /// The entry publishing `action`, if it is published.
    pub fn lookup(&self, action: &[u8]) -> Option<usize> {
        index(action).and_then(|a| self.entry_for(a))
    }

    pub fn entry(&self, i: usize) -> &Entry {
        &self.entries[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_seeds_three_with_its_four_variables_on_calls() {
        let c = Catalogue::new(&EventSettings::default());
        let names: Vec<&str> = c.entries.iter().map(|e| &*e.name).collect();
        assert_eq!(
            names,
            [
                "Offering-Call-Agent",
                "Connected-Call-Agent",
                "Agent-Status-Change"
            ]
        );
        assert_eq!(c.entry(0).vars.len(), 4);
        assert!(c.entry(2).vars.is_empty());
        assert_eq!(c.lookup(b"agent-state-change"), None);
    }

    #[test]
    fn all_leaves_out_query_replies_which_can_be_named() {
        let all = Catalogue::new(&EventSettings {
            selection: Selection::All,
            ..EventSettings::default()
        });
        assert_eq!(all.entries.len(), ACTIONS.len() - 3);
        assert!(all.lookup(b"agent-status-get").is_none());
        let named = Catalogue::new(&EventSettings {
            selection: Selection::List(vec!["agent-status-get".into()]),
            ..EventSettings::default()
        });
        assert_eq!(named.entries.len(), 1);
        assert_eq!(&*named.entry(0).name, "Agent-Status-Get");
    }

    #[test]
    fn renames_and_variables_per_event_override_the_defaults() {
        let c = Catalogue::new(&EventSettings {
            selection: Selection::All,
            renames: vec![("bridge-agent-end".into(), "Call-Ended".into())],
            variables: Some(vec!["campaign_id".into()]),
            variables_for: vec![("member-queue-start".into(), vec![])],
            state_vars: None,
        });
        let end = c.entry(c.lookup(b"bridge-agent-end").unwrap());
        assert_eq!(&*end.name, "Call-Ended");
        assert_eq!(end.var_name(0), "campaign_id");
        assert!(end.vars_from_session());
        let start = c.entry(c.lookup(b"member-queue-start").unwrap());
        assert!(start.vars.is_empty());
    }

    #[test]
    fn the_state_mirror_captures_its_actions_unpublished_with_its_variables_hidden() {
        let c = Catalogue::new(&EventSettings {
            variables_for: vec![("member-queue-start".into(), vec!["campaign_id".into()])],
            selection: Selection::List(vec!["member-queue-start".into()]),
            state_vars: Some(vec!["campaign_id".into(), "callrequest_id".into()]),
            ..EventSettings::default()
        });
        let start = c.entry(c.lookup(b"member-queue-start").unwrap());
        assert!(start.publish);
        assert_eq!(start.shown_vars, 1, "only the published variable is shown");
        assert_eq!(start.var_name(1), "callrequest_id");
        let count = c.entry(c.lookup(b"members-count").unwrap());
        assert!(!count.publish, "captured for the state only");
        assert!(c.lookup(b"agent-max-no-answer").is_none());
        assert!(c.lookup(b"agent-status-get").is_none());
        let stateful = ACTIONS.iter().filter(|a| a.affects_state).count();
        assert_eq!(c.entries.len(), stateful);
    }

    #[test]
    fn every_action_mod_callcenter_fires_is_known_once() {
        let mut seen = std::collections::HashSet::new();
        for a in ACTIONS {
            assert!(seen.insert(a.action), "{} twice", a.action);
        }
        assert_eq!(ACTIONS.len(), 16);
    }
}
