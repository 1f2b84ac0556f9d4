//! A bot's lifecycle after its import, like flow revisions in Twilio Studio: `bots update`
//! (a new version of its package, in place), `bots revisions`, `bots rollback`, `bots export`
//! and `bots delete`. The store does the writing ([`switchboard_store::bots`]); this module
//! plans the package and decides what is kept.
//!
//! - An update matches the package's bot, behaviors and webhook listeners with the stored ones
//!   by package uid. A matched record keeps its id, so a listener keeps its guid (its URL) and
//!   a behavior its runs and messages; its definition is replaced. Records new in the package
//!   are added, records missing from it are deleted (not disabled: every revision is kept, so
//!   a rollback brings them back with their ids and URLs). The bot's enabled state and each
//!   kept behavior's enabled state are the operator's (`bots/behaviors enable|disable`) and are
//!   kept. Connected accounts are not part of a bot and are untouched.
//! - Every import, update and rollback is a revision; a rollback writes an old revision's
//!   behaviors and listeners as a new revision.
//! - A delete removes the bot, its behaviors, listeners (their URLs answer 404) and revisions;
//!   its runs and inbound messages stay until retention prunes them.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, bail};
use rand::SeedableRng;
use serde::Serialize;
use serde_json::{Map, Value as Json, json};
use switchboard_engine::{BotInfo, CompiledBehavior};
use switchboard_package::{ImportPlan, NodeDef, Package, PlanOptions, PromptKind, RecordId};
use switchboard_store::bots::{self, BotState, Changes, Deleted};

use crate::args::KeyValue;
use crate::ops::Env;

/// The result of `bots update` / `bots rollback`.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateReport {
    pub bot_id: i64,
    /// The revision written; `None` for a dry run.
    pub revision: Option<i32>,
    pub dry_run: bool,
    pub changes: Changes,
    /// Notes (e.g. NATS not reachable).
    pub notes: Vec<String>,
}

/// Plans `package` as an import would, except that a record whose uid is in `keep` gets that
/// id. Planning hands out ids in a fixed order (records, each bot and its behaviors, top-level
/// behaviors, then nodes) and the plan lists its records in that order, so a first planning
/// with ids 1, 2, 3… tells which call reserves which uid; the second, with the same random
/// placeholders (one seeded CSPRNG, cloned), gives the kept ids to those calls.
fn plan_keeping(
    package: &Package,
    answers: &switchboard_package::PromptAnswers,
    defaults: Json,
    keep: &HashMap<String, RecordId>,
    fresh: Vec<RecordId>,
) -> anyhow::Result<ImportPlan> {
    let rng = rand::rngs::StdRng::from_os_rng();
    let mut counter = 0;
    let mut count = || {
        counter += 1;
        counter
    };
    let probe = package
        .plan(PlanOptions {
            answers,
            next_id: &mut count,
            rng: &mut rng.clone(),
            defaults: defaults.clone(),
        })
        .map_err(crate::refusal::invalid_package)?;
    let by_call: HashMap<RecordId, &str> = probe
        .records
        .iter()
        .map(|r| (r.id, r.uid.as_str()))
        .collect();
    let mut call = 0;
    let mut fresh = fresh.into_iter();
    let mut exhausted = false;
    let mut next_id = || {
        call += 1;
        match by_call.get(&call).and_then(|uid| keep.get(*uid)) {
            Some(id) => *id,
            None => fresh.next().unwrap_or_else(|| {
                exhausted = true;
                0
            }),
        }
    };
    let plan = package
        .plan(PlanOptions {
            answers,
            next_id: &mut next_id,
            rng: &mut rng.clone(),
            defaults,
        })
        .map_err(crate::refusal::invalid_package)?;
    if exhausted {
        bail!("internal error: the update needed more record ids than reserved");
    }
    Ok(plan)
}

/// Refuses what compiling refuses (Decision 8), as an import does.
fn check_compiles(state: &BotState) -> anyhow::Result<()> {
    let info = Arc::new(BotInfo::from_def(&state.bot));
    let mut issues = Vec::new();
    for b in &state.bot.behaviors {
        if let Err(mut e) = CompiledBehavior::compile(b, info.clone()) {
            issues.append(&mut e);
        }
    }
    if issues.is_empty() {
        Ok(())
    } else {
        Err(crate::refusal::invalid_package(
            switchboard_package::ImportError { issues },
        ))
    }
}

impl Env {
    /// Chooser prompts for connected accounts must name an existing account, of the kind the
    /// prompt asks for ([`switchboard_package::account_service`]): a prompt for Twilio (the
    /// seed's `twilio_account_id`) takes only a Twilio account; a prompt for another service
    /// only an account of another kind, whose service (`accounts add --service`) is that one or
    /// unsaid (`http`). A prompt that does not say takes any account; the notes returned then
    /// say that its allowed hosts are checked when the behavior runs.
    pub(crate) async fn check_account_prompts(
        &self,
        package: &Package,
        answers: &switchboard_package::PromptAnswers,
    ) -> anyhow::Result<Vec<String>> {
        let mut notes = Vec::new();
        for prompt in package.prompts() {
            if let PromptKind::Chooser {
                context: Some(ctx), ..
            } = &prompt.kind
                && ctx.contains("connected_account")
                && let Some(answer) = answers.get(&prompt.key).and_then(|v| v.as_str())
            {
                let id: i64 = answer.trim().parse().map_err(|_| {
                    anyhow::anyhow!("'{}' ({}) must be a connected account id (see `switchboard accounts list`), got '{answer}'", prompt.label, prompt.key)
                })?;
                let Some(account) = self.store.account(id).await? else {
                    bail!(
                        "'{}' ({}): no connected account has id {id} (see `switchboard accounts list`)",
                        prompt.label,
                        prompt.key
                    );
                };
                if let Some(why) = account_mismatch(prompt.service.as_deref(), &account) {
                    let fitting: Vec<String> = self
                        .store
                        .list_accounts()
                        .await?
                        .iter()
                        .filter(|a| account_mismatch(prompt.service.as_deref(), a).is_none())
                        .map(|a| format!("{} ('{}')", a.id, a.name))
                        .collect();
                    let offer = if fitting.is_empty() {
                        "none yet".to_owned()
                    } else {
                        fitting.join(", ")
                    };
                    bail!(
                        "'{}' ({}): {why} (accounts that fit: {offer})",
                        prompt.label,
                        prompt.key
                    );
                }
                if prompt.service.is_none() {
                    notes.push(format!(
                        "'{}' ({}) does not say which service it is for: account {id} ('{}', {}) is used, and its credentials go only to its allowed hosts ({}), checked when the behavior runs",
                        prompt.label,
                        prompt.key,
                        account.name,
                        account.kind.describe(),
                        account.allowed_hosts.join(", ")
                    ));
                }
            }
        }
        Ok(notes)
    }

    /// `switchboard bots update BOT PACKAGE`: the bot in place from a new version of its package
    /// (see the module doc). With `dry_run`, only the changes are computed. Otherwise they are
    /// written in one transaction as a new revision and running workers are told.
    pub async fn update_bot(
        &self,
        bot: &str,
        package_json: &str,
        prompts: &[KeyValue],
        dry_run: bool,
    ) -> anyhow::Result<UpdateReport> {
        let bot_id = self.store.resolve_bot(bot).await?;
        let current = self.store.bot_state(bot_id).await?;
        let package = Package::parse(package_json).map_err(crate::refusal::invalid_package)?;
        let answers = crate::args::prompt_answers(&package, prompts)?;
        // Notes about prompts that do not name their service are for `import`; an update keeps
        // the accounts it is given.
        let _ = self.check_account_prompts(&package, &answers).await?;
        let mut keep: HashMap<String, RecordId> = HashMap::new();
        keep.insert(current.bot.uid.clone(), current.bot.id);
        for b in &current.bot.behaviors {
            keep.insert(b.uid.clone(), b.id);
        }
        for l in &current.webhooks {
            keep.insert(l.uid.clone(), l.id);
        }
        let fresh = self.store.reserve_ids(&package.raw).await?;
        let plan = plan_keeping(
            &package,
            &answers,
            json!({ "base_url": self.public_base_url }),
            &keep,
            fresh,
        )?;
        let [planned] = plan.bots.as_slice() else {
            bail!(
                "the package has {} bots; `bots update` takes a package of one bot",
                plan.bots.len()
            );
        };
        if planned.uid != current.bot.uid {
            bail!(
                "the package's bot is '{}', not '{}' (bot {bot_id}); import it instead",
                planned.uid,
                current.bot.uid
            );
        }
        let mut target = BotState {
            bot: planned.clone(),
            webhooks: plan.webhooks.clone(),
        };
        if let Some(l) = target.webhooks.iter().find(|l| {
            !l.behavior_id
                .is_some_and(|id| planned.behaviors.iter().any(|b| b.id == id))
        }) {
            bail!(
                "records ({}): the webhook listener does not run a behavior of this bot; `bots update` takes listeners of the bot's behaviors only",
                l.uid
            );
        }
        bots::carry_over(&current, &mut target);
        check_compiles(&target)?;
        self.apply(target, "update", &plan.package_name, &current, dry_run)
            .await
    }

    async fn apply(
        &self,
        target: BotState,
        kind: &str,
        package_name: &str,
        current: &BotState,
        dry_run: bool,
    ) -> anyhow::Result<UpdateReport> {
        let bot_id = current.bot.id;
        if dry_run {
            return Ok(UpdateReport {
                bot_id,
                revision: None,
                dry_run,
                changes: bots::diff(current, &target),
                notes: Vec::new(),
            });
        }
        let (changes, revision) = self
            .store
            .apply_bot_state(&target, kind, package_name)
            .await
            .with_context(|| format!("writing the {kind}"))?;
        let mut ids = vec![bot_id];
        ids.extend(target.bot.behaviors.iter().map(|b| b.id));
        ids.extend(changes.behaviors_removed.iter().map(|b| b.id));
        let notes = self.announce("bot", ids).await.into_iter().collect();
        Ok(UpdateReport {
            bot_id,
            revision: Some(revision),
            dry_run,
            changes,
            notes,
        })
    }

    /// `switchboard bots rollback BOT REVISION`: restores that revision's behaviors and
    /// listeners as a new revision (the bot's and kept behaviors' enabled states, and kept
    /// listeners' guids, stay as they are now).
    pub async fn rollback_bot(
        &self,
        bot: &str,
        revision: i32,
        dry_run: bool,
    ) -> anyhow::Result<UpdateReport> {
        let bot_id = self.store.resolve_bot(bot).await?;
        let current = self.store.bot_state(bot_id).await?;
        let (mut target, package_name) = self.store.revision(bot_id, revision).await?;
        // A record deleted and added again since has a new id; the revision's id is restored
        // only when it is free, else the current record is rewritten.
        for b in &mut target.bot.behaviors {
            if let Some(cur) = current.bot.behaviors.iter().find(|c| c.uid == b.uid)
                && cur.id != b.id
            {
                let old = b.id;
                b.id = cur.id;
                for l in &mut target.webhooks {
                    if l.behavior_id == Some(old) {
                        l.behavior_id = Some(cur.id);
                        if let Some(p) = l.extension_params.as_object_mut() {
                            p.insert("behavior_id".into(), Json::String(cur.id.to_string()));
                        }
                    }
                }
            }
        }
        for l in &mut target.webhooks {
            if let Some(cur) = current.webhooks.iter().find(|c| c.uid == l.uid) {
                l.id = cur.id;
            }
        }
        bots::carry_over(&current, &mut target);
        self.apply(target, "rollback", &package_name, &current, dry_run)
            .await
    }

    /// `switchboard bots delete BOT`: see [`switchboard_store::Store::delete_bot`].
    pub async fn delete_bot(&self, bot: &str) -> anyhow::Result<(Deleted, Vec<String>)> {
        let bot_id = self.store.resolve_bot(bot).await?;
        let deleted = self.store.delete_bot(bot_id).await?;
        let mut ids = vec![bot_id];
        ids.extend(&deleted.behaviors);
        ids.extend(&deleted.webhooks);
        let notes = self.announce("bot", ids).await.into_iter().collect();
        Ok((deleted, notes))
    }

    /// `switchboard bots export BOT`: the bot's current state as a Cerb package.
    pub async fn export_bot(&self, bot: &str) -> anyhow::Result<Json> {
        let bot_id = self.store.resolve_bot(bot).await?;
        Ok(export_package(&self.store.bot_state(bot_id).await?))
    }
}

/// A bot as a Cerb package that imports to the same behaviors: `package`, `bots` (one, with
/// its behaviors and their node trees) and `records` (its webhook listeners). Each listener's
/// guid becomes a random placeholder (an import makes new URLs; `bots update` with the export
/// keeps the current ones), and a listener's `behavior_id` becomes `{{{uid.<behavior>}}}`.
/// Everything else is written as stored: prompts were answered at import, so the export has
/// none, and connected-account ids in actions are the ones of this database.
pub fn export_package(state: &BotState) -> Json {
    fn node(n: &NodeDef) -> Json {
        json!({
            "type": n.kind.as_str(),
            "title": n.title,
            "status": serde_json::to_value(n.status).expect("status serializes"),
            "params": n.params,
            "nodes": n.nodes.iter().map(node).collect::<Vec<_>>(),
        })
    }
    let bot = &state.bot;
    let behaviors: Vec<Json> = bot
        .behaviors
        .iter()
        .map(|b| {
            let variables: Map<String, Json> = b
                .variables
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        json!({
                            "key": v.key,
                            "label": v.label,
                            "type": v.kind,
                            "is_private": v.is_private,
                            "params": v.params,
                        }),
                    )
                })
                .collect();
            let mut out = json!({
                "uid": b.uid,
                "title": b.title,
                "is_disabled": b.is_disabled,
                "is_private": b.is_private,
                "priority": b.priority,
                "event": { "key": b.event },
                "variables": variables,
                "nodes": b.nodes.iter().map(node).collect::<Vec<_>>(),
            });
            if let Some(uri) = &b.uri {
                out["uri"] = json!(uri);
            }
            out
        })
        .collect();
    let mut placeholders = Vec::new();
    let records: Vec<Json> = state
        .webhooks
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let key = format!("webhook_guid_{}", i + 1);
            placeholders.push(json!({ "type": "random", "key": key, "params": { "length": 40 } }));
            let guid = ["{{{", &key, "|lower}}}"].concat();
            let mut params = l.extension_params.clone();
            if let (Some(id), Some(p)) = (l.behavior_id, params.as_object_mut())
                && let Some(b) = bot.behaviors.iter().find(|b| b.id == id)
            {
                p.insert(
                    "behavior_id".into(),
                    Json::String(["{{{uid.", &b.uid, "}}}"].concat()),
                );
            }
            json!({
                "uid": l.uid,
                "_context": "webhook_listener",
                "name": l.name,
                "guid": guid,
                "extension_id": l.extension_id,
                "extension_params": params,
            })
        })
        .collect();
    let mut bot_json = json!({
        "uid": bot.uid,
        "name": bot.name,
        "owner": bot.owner,
        "is_disabled": bot.is_disabled,
        "params": bot.params,
        "behaviors": behaviors,
    });
    if let Some(image) = &bot.image {
        bot_json["image"] = json!(image);
    }
    json!({
        "package": {
            "name": bot.name,
            "revision": 1,
            "requires": { "cerb_version": "9.1.0" },
            "configure": { "prompts": [], "placeholders": placeholders },
        },
        "bots": [bot_json],
        "records": records,
    })
}

/// The changes as lines for the terminal: `+ behavior behavior_43 'Respond…' (id 12)`.
pub fn render_changes(changes: &Changes) -> String {
    let mut out = String::new();
    let mut line = |sign: &str, what: &str, list: &[bots::Named]| {
        for n in list {
            out.push_str(&format!(
                "  {sign} {what} {} '{}' (id {})\n",
                n.uid, n.name, n.id
            ));
        }
    };
    line("+", "behavior", &changes.behaviors_added);
    line("~", "behavior", &changes.behaviors_changed);
    line("-", "behavior", &changes.behaviors_removed);
    line("+", "webhook", &changes.webhooks_added);
    line("~", "webhook", &changes.webhooks_changed);
    line("-", "webhook", &changes.webhooks_removed);
    if changes.bot_changed {
        out.push_str("  ~ bot settings (name, params or image)\n");
    }
    if changes.is_empty() {
        out.push_str("  no changes\n");
    }
    out
}

/// Why `account` does not answer a connected-account prompt for `service`
/// ([`switchboard_package::account_service`]); `None` when it does.
pub(crate) fn account_mismatch(
    service: Option<&str>,
    account: &switchboard_store::Account,
) -> Option<String> {
    let service = service?;
    let this = format!(
        "account {} ('{}') is {}",
        account.id,
        account.name,
        account.kind.describe()
    );
    if service == "twilio" {
        return (!account.is_twilio())
            .then(|| format!("this prompt asks for a Twilio account; {this}"));
    }
    if account.is_twilio() {
        return Some(format!(
            "this prompt asks for a {service} account; {this}: add one for {service} with `switchboard accounts add --kind bearer|basic|api-key --service {service} --allowed-host <host>`"
        ));
    }
    (account.provider != "http" && account.provider != service).then(|| {
        format!(
            "this prompt asks for a {service} account; {this} for {} (`accounts add --service`)",
            account.provider
        )
    })
}
