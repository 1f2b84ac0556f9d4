//! The operator commands that use the store and the bus: migrations, connected accounts, package
//! import, and the lists and switches for webhooks, bots and behaviors. Each is a function the
//! binary and the end-to-end tests call alike.

use anyhow::{Context, bail};
use secrecy::SecretString;
use serde::Serialize;
use switchboard_package::{ImportPlan, Package, PlanOptions};
use switchboard_store::{Account, Store};
use switchboard_wire::Subjects;

use crate::args::KeyValue;

/// Where the store and the bus are.
pub struct Env {
    pub store: Store,
    /// NATS, to announce configuration changes to running workers (optional).
    pub nats: Option<async_nats::Client>,
    pub subjects: Subjects,
    /// `PUBLIC_BASE_URL`, for webhook URLs.
    pub public_base_url: String,
}

/// A webhook URL created by an import.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookUrl {
    pub name: String,
    pub guid: String,
    pub url: String,
    /// Title of the behavior it runs.
    pub behavior: Option<String>,
}

/// The result of `switchboard import`.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub records: Vec<switchboard_package::CreatedRecord>,
    pub webhooks: Vec<WebhookUrl>,
}

pub fn webhook_url(base: &str, guid: &str) -> String {
    format!("{}/webhooks/{guid}", base.trim_end_matches('/'))
}

impl Env {
    /// Tells running workers to drop cached configuration. Without NATS they notice within
    /// their cache lifetime (30 s); say so rather than fail the command.
    pub async fn announce(&self, kind: &str, ids: Vec<i64>) -> Option<String> {
        let Some(nats) = &self.nats else {
            return Some(
                "NATS is not reachable: running workers pick up this change within 30 s".into(),
            );
        };
        let msg = switchboard_wire::ConfigChanged {
            kind: kind.into(),
            ids,
        };
        let sent = async {
            nats.publish(
                self.subjects.config_changed(),
                switchboard_wire::encode(&msg).into(),
            )
            .await?;
            nats.flush().await?;
            anyhow::Ok(())
        };
        match sent.await {
            Ok(()) => None,
            Err(e) => Some(format!(
                "could not announce the change on NATS ({e}): running workers pick it up within 30 s"
            )),
        }
    }

    /// Adds a Twilio account, refusing when the master key does not decrypt the accounts
    /// already stored (a mix of keys would leave some accounts unreadable).
    pub async fn add_account(
        &self,
        name: &str,
        account_sid: &str,
        auth_token: &SecretString,
    ) -> anyhow::Result<Account> {
        switchboard_twilio::ids::AccountSid::parse(account_sid)
            .map_err(|e| anyhow::anyhow!("--account-sid: {e}"))?;
        use secrecy::ExposeSecret;
        if auth_token.expose_secret().trim().is_empty() {
            bail!("--auth-token is empty");
        }
        // One key for every account: a key that does not decrypt the accounts already stored
        // would leave them unreadable to the services that run with this one (or this one to
        // them).
        self.store.check_master_key().await?;
        let account = self
            .store
            .add_account(name, account_sid, auth_token)
            .await?;
        self.announce("account", vec![account.id]).await;
        Ok(account)
    }

    /// Adds an account for another HTTP service (issue 12), with the same master-key check as
    /// [`Env::add_account`].
    pub async fn add_http_account(
        &self,
        name: &str,
        service: Option<&str>,
        auth: &switchboard_store::HttpAuth,
        allowed_hosts: &[String],
        secret: &SecretString,
    ) -> anyhow::Result<Account> {
        self.store.check_master_key().await?;
        let account = self
            .store
            .add_http_account(name, service, auth, allowed_hosts, secret)
            .await?;
        self.announce("account", vec![account.id]).await;
        Ok(account)
    }

    /// Imports a package: answers prompts, plans, compiles every behavior, writes it all in one
    /// transaction, announces the change. Nothing is written when anything is wrong.
    pub async fn import(
        &self,
        package_json: &str,
        prompts: &[KeyValue],
    ) -> anyhow::Result<(ImportReport, Vec<String>)> {
        let package = Package::parse(package_json).map_err(crate::refusal::invalid_package)?;
        let answers = crate::args::prompt_answers(&package, prompts)?;
        // Chooser prompts for connected accounts must name an existing account (Cerb's UI
        // guarantees it; on the command line we check).
        let prompt_notes = self.check_account_prompts(&package, &answers).await?;
        let ids = self.store.reserve_ids(&package.raw).await?;
        let mut ids = ids.into_iter();
        let mut exhausted = false;
        let mut next_id = || {
            ids.next().unwrap_or_else(|| {
                exhausted = true;
                0
            })
        };
        let mut rng = rand::rng();
        let plan: ImportPlan = package
            .into_plan(PlanOptions {
                answers: &answers,
                next_id: &mut next_id,
                rng: &mut rng,
                defaults: serde_json::json!({ "base_url": self.public_base_url }),
            })
            .map_err(crate::refusal::invalid_package)?;
        if exhausted {
            bail!("internal error: the import needed more record ids than reserved");
        }
        crate::simulate::check_plan(&plan)?;
        self.store
            .write_plan(&plan)
            .await
            .context("writing the import")?;
        let ids: Vec<i64> = plan.records.iter().map(|r| r.id).collect();
        let mut notes = prompt_notes;
        notes.extend(self.announce("import", ids).await);
        let webhooks = plan
            .webhooks
            .iter()
            .map(|l| WebhookUrl {
                name: l.name.clone(),
                guid: l.guid.clone(),
                url: webhook_url(&self.public_base_url, &l.guid),
                behavior: l
                    .behavior_id
                    .and_then(|id| {
                        plan.bots
                            .iter()
                            .flat_map(|b| &b.behaviors)
                            .find(|b| b.id == id)
                    })
                    .map(|b| b.title.clone()),
            })
            .collect();
        Ok((
            ImportReport {
                records: plan.records.clone(),
                webhooks,
            },
            notes,
        ))
    }

    pub async fn set_bot_disabled(&self, bot: &str, disabled: bool) -> anyhow::Result<i64> {
        let id = self.store.resolve_bot(bot).await?;
        self.store.set_bot_disabled(id, disabled).await?;
        self.announce("bot", vec![id]).await;
        Ok(id)
    }

    pub async fn set_behavior_disabled(
        &self,
        behavior: &str,
        disabled: bool,
    ) -> anyhow::Result<i64> {
        let id = self.store.resolve_behavior(behavior).await?;
        self.store.set_behavior_disabled(id, disabled).await?;
        self.announce("behavior", vec![id]).await;
        Ok(id)
    }
}
