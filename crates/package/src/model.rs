//! The data a package import produces and the store keeps: bots, behaviors with their node trees,
//! and webhook listeners. The behavior engine compiles these; they serialize to the JSON the store
//! writes, so a behavior loaded from PostgreSQL is the same value the import planned.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// Id of any imported record (bot, behavior, node, webhook listener). One id space, like Cerb's
/// `uid.*` map, so `{{{uid.x}}}` works whatever `x` is.
pub type RecordId = i64;

/// Event a behavior answers (Decision 3 of docs/semantics.md supports exactly these two).
pub const EVENT_WEBHOOK: &str = "event.webhook.received";
pub const EVENT_MACRO: &str = "event.macro.bot";

/// Who owns a bot (kept as Cerb wrote it; Switchboard has no worker records).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Owner {
    pub context: String,
    pub id: Json,
}

/// A bot ("virtual attendant") and its behaviors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BotDef {
    /// The package uid (`bot_twilio`).
    pub uid: String,
    pub id: RecordId,
    pub name: String,
    pub is_disabled: bool,
    pub owner: Owner,
    /// `params` as the package wrote them (after `{{{ }}}` rendering); `params.config` is the
    /// object behaviors see as `behavior_bot_config` / `va_config`.
    pub params: Json,
    /// Avatar data URI, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    pub behaviors: Vec<BehaviorDef>,
}

impl BotDef {
    /// `params.config`, or an empty object.
    pub fn config(&self) -> Json {
        self.params
            .get("config")
            .cloned()
            .unwrap_or_else(|| Json::Object(Default::default()))
    }
}

/// A behavior: an event, variables and a decision tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BehaviorDef {
    pub uid: String,
    pub id: RecordId,
    pub bot_id: RecordId,
    pub title: String,
    /// `event.key`, e.g. [`EVENT_WEBHOOK`].
    pub event: String,
    pub is_disabled: bool,
    pub is_private: bool,
    pub priority: i64,
    /// Behavior variables by key (`var_to`), in package order.
    #[serde(default)]
    pub variables: IndexMap<String, VariableDef>,
    /// Root nodes in `pos` order.
    pub nodes: Vec<NodeDef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Where the package had it, for the location of an import error found later (by the
    /// engine's compile). Not stored: a stored behavior was imported already.
    #[serde(skip)]
    pub section: BehaviorSection,
}

/// Where a behavior sits in its package: in a bot (`bots[].behaviors[]`) or in the top-level
/// `behaviors` section (docs/semantics.md §1.6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BehaviorSection {
    #[default]
    Bots,
    Behaviors,
}

impl BehaviorSection {
    /// The section's name in the package, as import errors name it.
    pub fn as_str(self) -> &'static str {
        match self {
            BehaviorSection::Bots => "bots",
            BehaviorSection::Behaviors => "behaviors",
        }
    }
}

/// A behavior variable (docs/semantics.md §6.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariableDef {
    pub key: String,
    pub label: String,
    /// Cerb's type letter: `S`, `T`, `U`, `D`, `C`, `N`, `O`, `Y`, `E`, `L`, `W`, `M`, `X`, `F`, `I`
    /// or `ctx_<context>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub is_private: bool,
    #[serde(default)]
    pub params: Json,
}

/// One node of a decision tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeDef {
    pub id: RecordId,
    #[serde(rename = "type")]
    pub kind: NodeKind,
    pub title: String,
    pub status: NodeStatus,
    /// Node parameters as the package wrote them (`groups`, `actions`, `foreach_json`, ...).
    #[serde(default)]
    pub params: Json,
    /// Children in `pos` order.
    #[serde(default)]
    pub nodes: Vec<NodeDef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    Switch,
    Outcome,
    Action,
    Loop,
    Subroutine,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Switch => "switch",
            NodeKind::Outcome => "outcome",
            NodeKind::Action => "action",
            NodeKind::Loop => "loop",
            NodeKind::Subroutine => "subroutine",
        }
    }
}

/// Cerb's node status: live (0), disabled (1), simulator (2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    Live,
    Disabled,
    Simulator,
}

/// A webhook listener record (`_context: webhook_listener`, 9.x fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookListenerDef {
    pub uid: String,
    pub id: RecordId,
    pub name: String,
    /// The secret path segment, at most 40 characters. Matched case-insensitively.
    pub guid: String,
    /// `cerb.webhooks.listener.engine.va` for bot-behavior listeners.
    pub extension_id: String,
    /// `extension_params` as written (an object).
    pub extension_params: Json,
    /// `extension_params.behavior_id` parsed as an id, when it is one.
    pub behavior_id: Option<RecordId>,
    /// Verify `X-Twilio-Signature` (docs/semantics.md, Decision 13: on for listeners created
    /// from packages).
    pub verify_signature: bool,
}

/// Everything one import writes, in one transaction (docs/semantics.md, Decision 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportPlan {
    /// `package.name`.
    pub package_name: String,
    pub bots: Vec<BotDef>,
    pub webhooks: Vec<WebhookListenerDef>,
    /// Every created record: uid → (context, id, label), in creation order.
    pub records: Vec<CreatedRecord>,
}

impl ImportPlan {
    /// Finds a behavior of any bot by its package uid.
    pub fn behavior_by_uid(&self, uid: &str) -> Option<(&BotDef, &BehaviorDef)> {
        self.bots
            .iter()
            .flat_map(|bot| bot.behaviors.iter().map(move |b| (bot, b)))
            .find(|(_, b)| b.uid == uid)
    }
}

/// One line of the import report (Cerb's `records_created`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedRecord {
    /// `bot`, `behavior` or `webhook_listener`.
    pub context: String,
    pub uid: String,
    pub id: RecordId,
    pub label: String,
}
