//! Configuration as the worker serves it: what a guid resolves to (listener, compiled behavior,
//! the accounts that may sign for it), account tokens and behaviors, each cached and dropped
//! at once when a change is announced. While the database does not answer, what was loaded
//! before is served (the webhook path of a behavior without side effects needs NATS only).

use std::sync::Arc;

use switchboard_engine::{BotInfo, CompiledBehavior};
use switchboard_package::{EVENT_WEBHOOK, WebhookListenerDef};

use crate::Worker;

/// What a guid resolves to, cached.
pub(crate) enum Target {
    /// No listener with this guid (404).
    Unknown,
    /// A listener whose behavior is missing or not a webhook behavior (404).
    NoBehavior,
    Ready {
        listener: Box<WebhookListenerDef>,
        behavior: Arc<CompiledBehavior>,
        disabled: bool,
        /// The Twilio accounts that may sign for this listener: those its bot's behaviors use.
        signers: Arc<[Signer]>,
    },
}

/// A connected Twilio account whose token may sign a listener's webhooks.
pub(crate) struct Signer {
    pub(crate) id: i64,
    pub(crate) account_sid: String,
    pub(crate) token: secrecy::SecretString,
}

impl Worker {
    pub(crate) fn invalidate(&self) {
        self.guids.clear();
        self.targets.clear();
        self.tokens.clear();
        self.behaviors.clear();
        tracing::debug!("configuration changed: caches cleared");
    }

    /// Every listener guid, lower-case (one query per cache period, whatever guids are asked).
    pub(crate) async fn guids(&self) -> anyhow::Result<Arc<std::collections::HashSet<String>>> {
        if let Some(g) = self.guids.get(&()) {
            return Ok(g);
        }
        let guids = Arc::new(self.store.listener_guids().await?);
        self.guids.insert((), guids.clone());
        Ok(guids)
    }

    /// What `guid` resolves to: cached, else loaded. While the database does not answer, what
    /// this worker loaded before is served whatever its age (with a log line every 10 s at
    /// most), and the database is tried again only every [`DB_RETRY`]: the webhook path of a
    /// behavior without side effects needs NATS only ([`runlog`]). A listener this worker never
    /// loaded cannot be served then: 503, and the log says why.
    pub(crate) async fn target(&self, guid: &str) -> anyhow::Result<Arc<Target>> {
        let key = guid.to_ascii_lowercase();
        if let Some(t) = self.targets.get(&key) {
            return Ok(t);
        }
        if self.db_down.is_down()
            && let Some(t) = self.stale_target(&key)
        {
            return Ok(t);
        }
        match self.load_target(guid, key.clone()).await {
            Ok(t) => {
                self.db_down.up();
                Ok(t)
            }
            Err(e) => {
                self.db_down.down();
                self.stale_target(&key).ok_or_else(|| {
                    e.context(
                        "loading the listener (this worker has not loaded it before, so it cannot be served from its cache)",
                    )
                })
            }
        }
    }

    /// What this worker loaded before for `key`, whatever its age: `Unknown` when the listener
    /// index it loaded lacks the guid, else the cached target (noted in the log).
    fn stale_target(&self, key: &str) -> Option<Arc<Target>> {
        if self
            .guids
            .get_stale(&())
            .is_some_and(|guids| !guids.contains(key))
        {
            return Some(Arc::new(Target::Unknown));
        }
        let target = self.targets.get_stale(key)?;
        self.db_down.note_stale();
        Some(target)
    }

    pub(crate) async fn load_target(&self, guid: &str, key: String) -> anyhow::Result<Arc<Target>> {
        if !self.guids().await?.contains(&key) {
            return Ok(Arc::new(Target::Unknown));
        }
        let target = match self.store.listener_target(guid).await? {
            None => Target::Unknown,
            Some(t) => match t.behavior {
                Some((def, bot)) if def.event == EVENT_WEBHOOK => {
                    let disabled = def.is_disabled || bot.is_disabled;
                    let compiled =
                        CompiledBehavior::compile(&def, Arc::new(BotInfo::from_def(&bot)))
                            .map_err(|issues| {
                                anyhow::anyhow!(
                                    "stored behavior {} does not compile: {issues:?}",
                                    def.id
                                )
                            })?;
                    Target::Ready {
                        signers: self.signers(bot.id).await?,
                        listener: Box::new(t.listener),
                        behavior: Arc::new(compiled),
                        disabled,
                    }
                }
                _ => Target::NoBehavior,
            },
        };
        let target = Arc::new(target);
        self.targets.insert(key, target.clone());
        Ok(target)
    }

    pub(crate) async fn tokens(
        &self,
        account_sid: &str,
    ) -> anyhow::Result<Arc<Vec<(i64, secrecy::SecretString)>>> {
        if let Some(t) = self.tokens.get(&account_sid.to_string()) {
            return Ok(t);
        }
        let creds = self.store.credentials_by_sid(account_sid).await?;
        let tokens = Arc::new(
            creds
                .into_iter()
                .map(|c| (c.account.id, c.auth_token))
                .collect::<Vec<_>>(),
        );
        // Only the SIDs of connected accounts are kept: any other costs a query, no entry.
        if !tokens.is_empty() {
            self.tokens.insert(account_sid.to_string(), tokens.clone());
        }
        Ok(tokens)
    }

    /// The Twilio accounts a bot's behaviors use, with their tokens: the only ones that may
    /// sign for its listeners. Accounts of another kind, or gone, are left out.
    pub(crate) async fn signers(&self, bot_id: i64) -> anyhow::Result<Arc<[Signer]>> {
        let mut signers = Vec::new();
        for id in self.store.bot_account_ids(bot_id).await? {
            let Some(c) = self.store.credentials(id).await? else {
                continue;
            };
            // Twilio accounts only: another kind has no Account SID.
            if let Some(account_sid) = c.account.account_sid
                && switchboard_twilio::AccountSid::parse(&account_sid).is_ok()
            {
                signers.push(Signer {
                    id,
                    account_sid,
                    token: c.auth_token,
                });
            }
        }
        if signers.is_empty() {
            tracing::warn!(
                bot_id,
                "the bot uses no connected Twilio account: its listeners' signatures cannot be verified (answered 403)"
            );
        }
        Ok(signers.into())
    }

    pub(crate) async fn compiled_behavior(
        &self,
        id: i64,
    ) -> anyhow::Result<Option<Arc<CompiledBehavior>>> {
        if let Some(b) = self.behaviors.get(&id) {
            return Ok(Some(b));
        }
        let Some((def, bot)) = self.store.behavior_with_bot(id).await? else {
            return Ok(None);
        };
        let compiled = CompiledBehavior::compile(&def, Arc::new(BotInfo::from_def(&bot))).map_err(
            |issues| anyhow::anyhow!("stored behavior {id} does not compile: {issues:?}"),
        )?;
        let compiled = Arc::new(compiled);
        self.behaviors.insert(id, compiled.clone());
        Ok(Some(compiled))
    }
}
