//! Master-key rotation: every value sealed under the master key is opened with the current key
//! and sealed again under a new one, and every audit checkpoint is signed again, in one
//! transaction: either all of it moves to the new key or nothing changes.

// The AADs and the checkpoint MAC input are the sealing and signing modules' own, so rotation
// re-seals exactly what they will open.
use super::audit::checkpoint_message;
use super::connectors::{env_aad, oauth_aad};
use super::{Backend, Store};
use crate::crypto::Cipher;
use crate::{Error, Result};

/// What a rotation sealed again (or signed again), by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RekeyReport {
    /// Connectors' header maps (every connector has one, possibly empty).
    pub connector_headers: u64,
    /// Connectors' environment maps (stdio connectors with variables).
    pub connector_env: u64,
    /// Connectors' OAuth client secrets.
    pub connector_oauth: u64,
    /// Secret settings (the OpenID Provider client secret, ...).
    pub secret_settings: u64,
    /// SIEM sinks' secrets (HEC tokens, webhook secrets).
    pub siem_secrets: u64,
    /// Audit checkpoints whose MAC was checked under the old key and signed under the new one.
    pub audit_checkpoints: u64,
}

impl RekeyReport {
    /// Everything that moved to the new key.
    pub fn total(&self) -> u64 {
        self.connector_headers
            + self.connector_env
            + self.connector_oauth
            + self.secret_settings
            + self.siem_secrets
            + self.audit_checkpoints
    }
}

/// A connector's id, name and sealed headers, environment and OAuth client secret.
type SealedConnector = (String, String, String, Option<String>, Option<String>);

/// Sealed values are `v1:` + base64 (`crypto::Cipher::seal`). Settings hold JSON; a setting
/// whose value is a JSON string in that form is a sealed secret bound to its key name, which
/// covers secret settings added later without a list to keep in step.
fn is_sealed(value: &str) -> bool {
    value.starts_with("v1:")
}

/// Equal-length hex strings compared without an early exit.
fn same_mac(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Store {
    /// Opens `sealed` with the current key and seals it under `new` with the same AAD.
    fn reseal(&self, new: &Cipher, sealed: &str, aad: &[u8], what: &str) -> Result<String> {
        let plain = self.cipher.open(sealed, aad).map_err(|_| {
            Error::Internal(format!(
                "{what} cannot be opened with the current master key; nothing was changed"
            ))
        })?;
        new.seal(&plain, aad)
    }

    /// Moves every sealed value and every audit checkpoint MAC from this store's master key to
    /// `new`, in one transaction. Refuses (and changes nothing) when any value cannot be opened
    /// or any checkpoint's MAC does not verify under the current key. Processes that keep running
    /// with the old key would seal new values under it: stop every replica first and start them
    /// with the new key afterwards.
    pub async fn rekey(&self, new: &Cipher) -> Result<RekeyReport> {
        let mut report = RekeyReport::default();
        let mut tx = self.write_tx().await?;
        if self.backend == Backend::Postgres {
            // Why: a replica still running must not seal or sign anything under the old key
            // between our reads and our writes (SQLite's BEGIN IMMEDIATE already excludes writers).
            sqlx::query(
                "LOCK TABLE connectors, settings, siem_sinks, audit_checkpoints IN SHARE ROW EXCLUSIVE MODE",
            )
            .execute(&mut *tx)
            .await?;
        }

        let connectors: Vec<SealedConnector> =
            sqlx::query_as(
                "SELECT id, name, headers_sealed, env_sealed, oauth_secret_sealed FROM connectors ORDER BY id",
            )
            .fetch_all(&mut *tx)
            .await?;
        for (id, name, headers, env, oauth) in connectors {
            let headers = self.reseal(
                new,
                &headers,
                id.as_bytes(),
                &format!("the headers of connector {name:?}"),
            )?;
            report.connector_headers += 1;
            let env = match env {
                Some(s) => {
                    report.connector_env += 1;
                    Some(self.reseal(
                        new,
                        &s,
                        &env_aad(&id),
                        &format!("the environment of connector {name:?}"),
                    )?)
                }
                None => None,
            };
            let oauth = match oauth {
                Some(s) => {
                    report.connector_oauth += 1;
                    Some(self.reseal(
                        new,
                        &s,
                        &oauth_aad(&id),
                        &format!("the OAuth client secret of connector {name:?}"),
                    )?)
                }
                None => None,
            };
            sqlx::query(
                "UPDATE connectors SET headers_sealed = $1, env_sealed = $2, oauth_secret_sealed = $3 WHERE id = $4",
            )
            .bind(&headers)
            .bind(&env)
            .bind(&oauth)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        }

        let settings: Vec<(String, String)> =
            sqlx::query_as("SELECT key, value FROM settings ORDER BY key")
                .fetch_all(&mut *tx)
                .await?;
        for (key, value) in settings {
            let Ok(serde_json::Value::String(sealed)) = serde_json::from_str(&value) else {
                continue;
            };
            if !is_sealed(&sealed) {
                continue;
            }
            let resealed =
                self.reseal(new, &sealed, key.as_bytes(), &format!("setting {key:?}"))?;
            let json = serde_json::Value::String(resealed).to_string();
            sqlx::query("UPDATE settings SET value = $1 WHERE key = $2")
                .bind(&json)
                .bind(&key)
                .execute(&mut *tx)
                .await?;
            report.secret_settings += 1;
        }

        let sinks: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT id, name, secret FROM siem_sinks WHERE secret IS NOT NULL ORDER BY id",
        )
        .fetch_all(&mut *tx)
        .await?;
        for (id, name, secret) in sinks {
            let resealed = self.reseal(
                new,
                &secret,
                id.as_bytes(),
                &format!("the secret of SIEM sink {name:?}"),
            )?;
            sqlx::query("UPDATE siem_sinks SET secret = $1 WHERE id = $2")
                .bind(&resealed)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            report.siem_secrets += 1;
        }

        let checkpoints: Vec<(i64, i64, String, String)> =
            sqlx::query_as("SELECT id, event_id, hash, mac FROM audit_checkpoints ORDER BY id")
                .fetch_all(&mut *tx)
                .await?;
        for (id, event_id, hash, mac) in checkpoints {
            let message = checkpoint_message(event_id, &hash);
            // Why: re-signing a forged checkpoint would launder it; one that does not verify
            // under the current key stops the rotation.
            if !same_mac(&self.cipher.mac_hex(&message), &mac) {
                return Err(Error::Internal(format!(
                    "audit checkpoint {id} (event {event_id}) carries a MAC that does not verify under the current master key; nothing was changed"
                )));
            }
            sqlx::query("UPDATE audit_checkpoints SET mac = $1 WHERE id = $2")
                .bind(new.mac_hex(&message))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            report.audit_checkpoints += 1;
        }

        tx.commit().await?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    #[test]
    fn sealed_values_are_recognised() {
        let c = MasterKey::generate().cipher();
        assert!(is_sealed(&c.seal(b"x", b"k").unwrap()));
        assert!(!is_sealed("plain"));
    }

    #[test]
    fn macs_compare_whole() {
        assert!(same_mac("abcd", "abcd"));
        assert!(!same_mac("abcd", "abce"));
        assert!(!same_mac("abcd", "abc"));
    }

    #[test]
    fn report_total_adds_every_kind() {
        let r = RekeyReport {
            connector_headers: 1,
            connector_env: 2,
            connector_oauth: 3,
            secret_settings: 4,
            siem_secrets: 5,
            audit_checkpoints: 6,
        };
        assert_eq!(r.total(), 21);
    }
}
