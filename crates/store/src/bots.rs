//! A bot's lifecycle after its import: its current state (behaviors and the webhook listeners
//! that run them), updates in place, revisions, rollback and deletion.
//!
//! A bot's webhook listeners are the listeners whose behavior is one of the bot's behaviors.
//! [`Store::apply_bot_state`] makes the stored bot equal to a [`BotState`] in one transaction
//! and records it as a new revision; callers decide what that state is (a new version of the
//! package, or an old revision) and what it keeps of the current one (see [`carry_over`]).

use serde::{Deserialize, Serialize};
use sqlx::{Postgres, Row, Transaction};
use switchboard_package::{BehaviorDef, BotDef, Owner, WebhookListenerDef};

use crate::{Result, Store, StoreError};

/// A bot with its behaviors and its webhook listeners, as a revision stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BotState {
    pub bot: BotDef,
    pub webhooks: Vec<WebhookListenerDef>,
}

/// A behavior or listener named in a change list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Named {
    pub uid: String,
    pub name: String,
    pub id: i64,
}

/// What changes between two states, behaviors and listeners matched by package uid.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Changes {
    /// The bot's name, params (configuration) or image change.
    pub bot_changed: bool,
    pub behaviors_added: Vec<Named>,
    pub behaviors_changed: Vec<Named>,
    pub behaviors_removed: Vec<Named>,
    pub webhooks_added: Vec<Named>,
    pub webhooks_changed: Vec<Named>,
    pub webhooks_removed: Vec<Named>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        !self.bot_changed
            && self.behaviors_added.is_empty()
            && self.behaviors_changed.is_empty()
            && self.behaviors_removed.is_empty()
            && self.webhooks_added.is_empty()
            && self.webhooks_changed.is_empty()
            && self.webhooks_removed.is_empty()
    }

    /// One line: `behaviors +1 ~2 -0, webhooks +0 ~0 -0` (and `, bot settings` when they change).
    pub fn summary(&self) -> String {
        let mut s = format!(
            "behaviors +{} ~{} -{}, webhooks +{} ~{} -{}",
            self.behaviors_added.len(),
            self.behaviors_changed.len(),
            self.behaviors_removed.len(),
            self.webhooks_added.len(),
            self.webhooks_changed.len(),
            self.webhooks_removed.len()
        );
        if self.bot_changed {
            s.push_str(", bot settings");
        }
        s
    }
}

/// One revision as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RevisionRow {
    pub revision: i32,
    pub kind: String,
    pub package_name: String,
    pub summary: String,
    pub behaviors: i64,
    pub created_at: String,
}

/// What [`Store::delete_bot`] removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Deleted {
    pub bot_id: i64,
    pub behaviors: Vec<i64>,
    pub webhooks: Vec<i64>,
    pub revisions: i64,
}

/// A behavior's definition without its ids (node ids are handed out afresh by each planning),
/// to tell whether two definitions differ.
fn comparable_behavior(b: &BehaviorDef) -> serde_json::Value {
    fn zero_node_ids(v: &mut serde_json::Value) {
        if let Some(nodes) = v.get_mut("nodes").and_then(|n| n.as_array_mut()) {
            for n in nodes {
                n["id"] = 0.into();
                zero_node_ids(n);
            }
        }
    }
    let mut v = serde_json::to_value(b).expect("behavior serializes");
    v["id"] = 0.into();
    v["bot_id"] = 0.into();
    zero_node_ids(&mut v);
    v
}

fn comparable_webhook(l: &WebhookListenerDef) -> serde_json::Value {
    let mut v = serde_json::to_value(l).expect("listener serializes");
    v["id"] = 0.into();
    v
}

/// The changes from `current` to `target`, behaviors and listeners matched by package uid.
pub fn diff(current: &BotState, target: &BotState) -> Changes {
    let mut c = Changes {
        bot_changed: current.bot.name != target.bot.name
            || current.bot.params != target.bot.params
            || current.bot.image != target.bot.image,
        ..Changes::default()
    };
    let named_b = |b: &BehaviorDef| Named {
        uid: b.uid.clone(),
        name: b.title.clone(),
        id: b.id,
    };
    for t in &target.bot.behaviors {
        match current.bot.behaviors.iter().find(|b| b.uid == t.uid) {
            None => c.behaviors_added.push(named_b(t)),
            Some(b) if comparable_behavior(b) != comparable_behavior(t) => {
                c.behaviors_changed.push(named_b(t))
            }
            Some(_) => {}
        }
    }
    for b in &current.bot.behaviors {
        if !target.bot.behaviors.iter().any(|t| t.uid == b.uid) {
            c.behaviors_removed.push(named_b(b));
        }
    }
    let named_l = |l: &WebhookListenerDef| Named {
        uid: l.uid.clone(),
        name: l.name.clone(),
        id: l.id,
    };
    for t in &target.webhooks {
        match current.webhooks.iter().find(|l| l.uid == t.uid) {
            None => c.webhooks_added.push(named_l(t)),
            Some(l) if comparable_webhook(l) != comparable_webhook(t) => {
                c.webhooks_changed.push(named_l(t))
            }
            Some(_) => {}
        }
    }
    for l in &current.webhooks {
        if !target.webhooks.iter().any(|t| t.uid == l.uid) {
            c.webhooks_removed.push(named_l(l));
        }
    }
    c
}

/// What an update or a rollback keeps of the current state: the bot's id and enabled state,
/// each matched behavior's enabled state (the operator's `behaviors enable/disable`), and each
/// matched webhook listener's guid (its URL). Matching is by package uid. Ids of matched
/// records must already be the current ones (the planning reuses them).
pub fn carry_over(current: &BotState, target: &mut BotState) {
    target.bot.id = current.bot.id;
    target.bot.is_disabled = current.bot.is_disabled;
    for b in &mut target.bot.behaviors {
        b.bot_id = current.bot.id;
        if let Some(cur) = current.bot.behaviors.iter().find(|c| c.uid == b.uid) {
            b.is_disabled = cur.is_disabled;
        }
    }
    for l in &mut target.webhooks {
        if let Some(cur) = current.webhooks.iter().find(|c| c.uid == l.uid) {
            l.guid = cur.guid.clone();
        }
    }
}

async fn load_state(tx: &mut Transaction<'_, Postgres>, bot_id: i64) -> Result<BotState> {
    let row = sqlx::query(
        "SELECT id, uid, name, is_disabled, owner, params, image FROM bots WHERE id = $1 FOR UPDATE",
    )
    .bind(bot_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("bot {bot_id}")))?;
    let owner: Owner = serde_json::from_value(row.get("owner"))
        .map_err(|e| StoreError::Corrupt(format!("bot {bot_id} owner: {e}")))?;
    let rows = sqlx::query(
        "SELECT id, definition, is_disabled FROM behaviors WHERE bot_id = $1 ORDER BY id",
    )
    .bind(bot_id)
    .fetch_all(&mut **tx)
    .await?;
    let mut behaviors = Vec::with_capacity(rows.len());
    for r in rows {
        let id: i64 = r.get("id");
        let mut def: BehaviorDef = serde_json::from_value(r.get("definition"))
            .map_err(|e| StoreError::Corrupt(format!("behavior {id} definition: {e}")))?;
        def.id = id;
        def.bot_id = bot_id;
        def.is_disabled = r.get("is_disabled");
        behaviors.push(def);
    }
    let rows = sqlx::query(
        "SELECT id, uid, name, guid, extension_id, extension_params, behavior_id, verify_signature \
         FROM webhook_listeners WHERE behavior_id IN (SELECT id FROM behaviors WHERE bot_id = $1) \
         ORDER BY id",
    )
    .bind(bot_id)
    .fetch_all(&mut **tx)
    .await?;
    let webhooks = rows
        .iter()
        .map(|r| WebhookListenerDef {
            uid: r.get("uid"),
            id: r.get("id"),
            name: r.get("name"),
            guid: r.get("guid"),
            extension_id: r.get("extension_id"),
            extension_params: r.get("extension_params"),
            behavior_id: r.get("behavior_id"),
            verify_signature: r.get("verify_signature"),
        })
        .collect();
    Ok(BotState {
        bot: BotDef {
            uid: row.get("uid"),
            id: bot_id,
            name: row.get("name"),
            is_disabled: row.get("is_disabled"),
            owner,
            params: row.get("params"),
            image: row.get("image"),
            behaviors,
        },
        webhooks,
    })
}

/// Records `state` as the bot's next revision (1 for the first); returns its number.
pub(crate) async fn insert_revision(
    tx: &mut Transaction<'_, Postgres>,
    state: &BotState,
    kind: &str,
    package_name: &str,
    summary: &str,
) -> Result<i32> {
    Ok(sqlx::query(
        "INSERT INTO bot_revisions (bot_id, revision, kind, package_name, summary, state) \
         VALUES ($1, (SELECT coalesce(max(revision), 0) + 1 FROM bot_revisions WHERE bot_id = $1), $2, $3, $4, $5) \
         RETURNING revision",
    )
    .bind(state.bot.id)
    .bind(kind)
    .bind(package_name)
    .bind(summary)
    .bind(serde_json::to_value(state).expect("state serializes"))
    .fetch_one(&mut **tx)
    .await?
    .get("revision"))
}

/// A planned bot with its listeners: those whose behavior is one of its behaviors.
pub(crate) fn state_of_plan_bot(bot: &BotDef, webhooks: &[WebhookListenerDef]) -> BotState {
    BotState {
        bot: bot.clone(),
        webhooks: webhooks
            .iter()
            .filter(|l| {
                l.behavior_id
                    .is_some_and(|id| bot.behaviors.iter().any(|b| b.id == id))
            })
            .cloned()
            .collect(),
    }
}

impl Store {
    /// The bot's current state (behaviors with their enabled state, listeners).
    pub async fn bot_state(&self, bot_id: i64) -> Result<BotState> {
        let mut tx = self.pool.begin().await?;
        let state = load_state(&mut tx, bot_id).await?;
        tx.rollback().await?;
        Ok(state)
    }

    /// Makes the stored bot equal to `target` in one transaction and records it as a new
    /// revision: behaviors and listeners absent from `target` are deleted (their runs and
    /// messages stay), the others are written by id (inserted or replaced), the bot's name,
    /// params and image are replaced (its enabled state is not touched). `target` ids must be
    /// the current ones for what it keeps ([`carry_over`]). A bot without revisions (imported
    /// before they existed) first gets its current state recorded as a `found` revision.
    /// Returns the changes (computed under the bot's row lock) and the new revision number.
    pub async fn apply_bot_state(
        &self,
        target: &BotState,
        kind: &str,
        package_name: &str,
    ) -> Result<(Changes, i32)> {
        let bot_id = target.bot.id;
        let mut tx = self.pool.begin().await?;
        let current = load_state(&mut tx, bot_id).await?;
        let changes = diff(&current, target);
        let has_revisions = sqlx::query("SELECT 1 FROM bot_revisions WHERE bot_id = $1 LIMIT 1")
            .bind(bot_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !has_revisions {
            let name: String = sqlx::query(
                "SELECT i.package_name FROM bots b JOIN imports i ON i.id = b.import_id WHERE b.id = $1",
            )
            .bind(bot_id)
            .fetch_one(&mut *tx)
            .await?
            .get("package_name");
            insert_revision(&mut tx, &current, "found", &name, "as found").await?;
        }
        let keep_webhooks: Vec<i64> = target.webhooks.iter().map(|l| l.id).collect();
        let keep_behaviors: Vec<i64> = target.bot.behaviors.iter().map(|b| b.id).collect();
        let gone_webhooks: Vec<i64> = current
            .webhooks
            .iter()
            .map(|l| l.id)
            .filter(|id| !keep_webhooks.contains(id))
            .collect();
        sqlx::query("DELETE FROM webhook_listeners WHERE id = ANY($1)")
            .bind(&gone_webhooks)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM behaviors WHERE bot_id = $1 AND NOT (id = ANY($2))")
            .bind(bot_id)
            .bind(&keep_behaviors)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE bots SET name = $2, params = $3, image = $4, updated_at = now() WHERE id = $1",
        )
        .bind(bot_id)
        .bind(&target.bot.name)
        .bind(&target.bot.params)
        .bind(&target.bot.image)
        .execute(&mut *tx)
        .await?;
        for b in &target.bot.behaviors {
            let done = sqlx::query(
                "INSERT INTO behaviors (id, bot_id, uid, title, event, is_disabled, is_private, priority, definition) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (id) DO UPDATE SET uid = $3, title = $4, event = $5, is_disabled = $6, \
                   is_private = $7, priority = $8, definition = $9, updated_at = now() \
                 WHERE behaviors.bot_id = $2",
            )
            .bind(b.id)
            .bind(bot_id)
            .bind(&b.uid)
            .bind(&b.title)
            .bind(&b.event)
            .bind(b.is_disabled)
            .bind(b.is_private)
            .bind(b.priority)
            .bind(serde_json::to_value(b).expect("behavior serializes"))
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Invalid(format!(
                    "behavior id {} belongs to another bot",
                    b.id
                )));
            }
        }
        for l in &target.webhooks {
            let done = sqlx::query(
                "INSERT INTO webhook_listeners (id, import_id, uid, name, guid, extension_id, extension_params, behavior_id, verify_signature) \
                 VALUES ($1, (SELECT import_id FROM bots WHERE id = $9), $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (id) DO UPDATE SET uid = $2, name = $3, guid = $4, extension_id = $5, \
                   extension_params = $6, behavior_id = $7, verify_signature = $8 \
                 WHERE webhook_listeners.id = ANY($10)",
            )
            .bind(l.id)
            .bind(&l.uid)
            .bind(&l.name)
            .bind(&l.guid)
            .bind(&l.extension_id)
            .bind(&l.extension_params)
            .bind(l.behavior_id)
            .bind(l.verify_signature)
            .bind(bot_id)
            .bind(current.webhooks.iter().map(|c| c.id).collect::<Vec<i64>>())
            .execute(&mut *tx)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Invalid(format!(
                    "records ({}) guid: a webhook listener with this guid already exists",
                    l.uid
                )),
                _ => StoreError::Database(e),
            })?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Invalid(format!(
                    "webhook listener id {} belongs to another bot",
                    l.id
                )));
            }
        }
        let revision =
            insert_revision(&mut tx, target, kind, package_name, &changes.summary()).await?;
        tx.commit().await?;
        Ok((changes, revision))
    }

    /// The bot's revisions, oldest first.
    pub async fn list_revisions(&self, bot_id: i64) -> Result<Vec<RevisionRow>> {
        let rows = sqlx::query(
            "SELECT revision, kind, package_name, summary, \
                    coalesce(jsonb_array_length(state->'bot'->'behaviors'), 0)::BIGINT AS n, \
                    to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS at \
             FROM bot_revisions WHERE bot_id = $1 ORDER BY revision",
        )
        .bind(bot_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| RevisionRow {
                revision: r.get("revision"),
                kind: r.get("kind"),
                package_name: r.get("package_name"),
                summary: r.get("summary"),
                behaviors: r.get("n"),
                created_at: r.get("at"),
            })
            .collect())
    }

    /// A revision's state and package name.
    pub async fn revision(&self, bot_id: i64, revision: i32) -> Result<(BotState, String)> {
        let row = sqlx::query(
            "SELECT state, package_name FROM bot_revisions WHERE bot_id = $1 AND revision = $2",
        )
        .bind(bot_id)
        .bind(revision)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("revision {revision} of bot {bot_id}")))?;
        let state: BotState = serde_json::from_value(row.get("state")).map_err(|e| {
            StoreError::Corrupt(format!("revision {revision} of bot {bot_id}: {e}"))
        })?;
        Ok((state, row.get("package_name")))
    }

    /// Deletes a bot with its behaviors, its webhook listeners (their URLs answer 404) and its
    /// revisions, in one transaction. Its history (runs, inbound messages) is kept until
    /// retention prunes it.
    pub async fn delete_bot(&self, bot_id: i64) -> Result<Deleted> {
        let mut tx = self.pool.begin().await?;
        let state = load_state(&mut tx, bot_id).await?;
        let webhooks: Vec<i64> = state.webhooks.iter().map(|l| l.id).collect();
        let behaviors: Vec<i64> = state.bot.behaviors.iter().map(|b| b.id).collect();
        sqlx::query("DELETE FROM webhook_listeners WHERE id = ANY($1)")
            .bind(&webhooks)
            .execute(&mut *tx)
            .await?;
        let revisions = sqlx::query("DELETE FROM bot_revisions WHERE bot_id = $1")
            .bind(bot_id)
            .execute(&mut *tx)
            .await?
            .rows_affected() as i64;
        sqlx::query("DELETE FROM behaviors WHERE bot_id = $1")
            .bind(bot_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM bots WHERE id = $1")
            .bind(bot_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Deleted {
            bot_id,
            behaviors,
            webhooks,
            revisions,
        })
    }
}
