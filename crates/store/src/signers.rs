//! What the webhook path needs to know before it reads anything an attacker chose: which
//! listener guids exist, and which connected accounts may sign for a bot.
//!
//! A webhook is verified only with the accounts its bot uses (the accounts its behaviors'
//! HTTP actions authenticate with: `auth_connected_account_id`, which the import filled in from
//! the package's connected-account prompts), never with any account whose SID the request
//! itself posts.

use std::collections::HashSet;

use crate::{Result, Store};

impl Store {
    /// Every listener guid, lower-case (guids match case-insensitively, Decision 6). The worker
    /// keeps this set so that an unknown guid costs no query and no cache entry.
    pub async fn listener_guids(&self) -> Result<HashSet<String>> {
        let guids: Vec<String> = sqlx::query_scalar("SELECT lower(guid) FROM webhook_listeners")
            .fetch_all(self.pool())
            .await?;
        Ok(guids.into_iter().collect())
    }

    /// The connected accounts a bot's behaviors authenticate with, by id (sorted, distinct):
    /// every `auth_connected_account_id` in the bot's behaviors that names an account by
    /// number. Values that are not numbers (an unanswered template) name no account.
    pub async fn bot_account_ids(&self, bot_id: i64) -> Result<Vec<i64>> {
        let values: Vec<Option<String>> = sqlx::query_scalar(
            "SELECT DISTINCT v #>> '{}' FROM behaviors b, \
               jsonb_path_query(b.definition, 'strict $.**.auth_connected_account_id') v \
             WHERE b.bot_id = $1",
        )
        .bind(bot_id)
        .fetch_all(self.pool())
        .await?;
        let mut ids: Vec<i64> = values
            .into_iter()
            .flatten()
            .filter_map(|v| v.trim().parse().ok())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }
}
