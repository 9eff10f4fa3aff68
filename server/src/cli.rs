//! The command line: `toolgate serve | migrate | admin create | token create/list/revoke |
//! audit verify | policy export | policy apply | keys generate | keys rotate`, and the console
//! commands that work on the database directly (policy as a file, master-key rotation, API
//! tokens).

use crate::config::Config;
use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use toolgate_domain::crypto::MasterKey;
use toolgate_domain::policy_file::{self, PolicyState};
use toolgate_domain::store::NewAuditEvent;

/// Toolgate: the MCP gateway enterprise IT can trust. One URL for every agent, policy per tool
/// from your groups, every call audited.
#[derive(Debug, Parser)]
#[command(name = "toolgate", version, about, long_about = None)]
pub struct Cli {
    /// Config file (TOML). Default: ./toolgate.toml when it exists. Every key can be overridden
    /// by a TOOLGATE_* environment variable (TOOLGATE_LISTEN, TOOLGATE_DATABASE_URL,
    /// TOOLGATE_PUBLIC_URL, TOOLGATE_MASTER_KEY, TOOLGATE_DATA_DIR, ...).
    #[arg(long, global = true, env = "TOOLGATE_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway: MCP proxy at /mcp, admin API at /api/v1, dashboard at /. Applies
    /// pending database migrations first.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage local dashboard administrators (break-glass accounts).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Manage API tokens (admin API, SCIM provisioning).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Work with the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Policy as a file: export every rule to TOML, review a change as a plan, apply it.
    #[command(
        long_about = "Policy as a file: export every group's rules on every connector, the \
        risk levels admins set and the catalog setting to TOML; keep it in version control; \
        review an edited file as a plan (+ add, ~ change, - remove) and apply it.\n\n\
        Example:\n  toolgate policy export > policy.toml\n  $EDITOR policy.toml\n  \
        toolgate policy apply -f policy.toml --dry-run\n  toolgate policy apply -f policy.toml"
    )]
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The master key that seals stored secrets: generate one, or rotate every secret to a new one.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the policy as TOML on standard output.
    #[command(
        long_about = "Print the policy as TOML on standard output: [settings] \
        (block_changed_tools), one [[rule]] per group and connector (by the group's display name \
        and the connector's name; empty fields left out) and one [[risk]] per tool whose risk \
        level an admin set. Sorted, so two exports of the same policy are identical."
    )]
    Export,
    /// Make the database match a policy file (print the plan, then apply it).
    #[command(
        long_about = "Make the database match a policy file. The file is the whole truth \
        for rules and risk levels: a rule not in it is removed, a risk level not in it goes back \
        to the suggested level; settings it leaves out stay as they are. The plan is printed \
        first (+ add, ~ change with old -> new per field, - remove); without --dry-run it is then \
        applied, each change recorded in the audit log as made by \"cli\", and other replicas \
        (PostgreSQL) reload at once.\n\n\
        Exit codes: 0 applied or nothing to do; 2 the file is invalid (syntax, unknown field, \
        bad pattern or level, unknown group, connector or tool; nothing changed); 1 any other \
        failure."
    )]
    Apply(PolicyApply),
}

#[derive(Debug, Args)]
pub struct PolicyApply {
    /// The policy file (TOML, as `toolgate policy export` writes it); `-` reads standard input.
    #[arg(short, long, value_name = "PATH")]
    pub file: PathBuf,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print a new random master key (32 bytes, standard base64).
    #[command(
        long_about = "Print a new random master key (32 bytes, standard base64) on \
        standard output, or write it to --out (created with mode 0600; an existing file is never \
        overwritten). Use it as TOOLGATE_MASTER_KEY, or with `toolgate keys rotate`."
    )]
    Generate(KeysGenerate),
    /// Seal every stored secret again under a new master key, in one transaction.
    #[command(
        long_about = "Seal every stored secret again under a new master key, in one \
        database transaction: connector headers, environment and OAuth client secrets, secret \
        settings (the OpenID Provider client secret) and SIEM sink secrets; audit checkpoints are \
        verified under the current key and signed again under the new one. If any value cannot \
        be opened, or any checkpoint does not verify, nothing changes.\n\n\
        The current key is read as always (TOOLGATE_MASTER_KEY, master_key in the config file, \
        or {data_dir}/master.key); the new one from --new-key-file or, without it, from \
        TOOLGATE_NEW_MASTER_KEY (not a command-line value: it would show in the process list).\n\n\
        Stop every replica first (one still running would keep sealing with the old key), then \
        start them with the new key."
    )]
    Rotate(KeysRotate),
}

#[derive(Debug, Args)]
pub struct KeysGenerate {
    /// Write the key to this new file (mode 0600) instead of standard output.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct KeysRotate {
    /// A file holding the new key (standard base64, as `toolgate keys generate` prints it).
    /// Without it the key is read from TOOLGATE_NEW_MASTER_KEY.
    #[arg(long, value_name = "PATH")]
    pub new_key_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chain (all of it, or a range of event ids) and report the
    /// first event whose link or contents do not check out. Exits 1 when the chain is broken.
    Verify(AuditVerify),
}

#[derive(Debug, Args)]
pub struct AuditVerify {
    /// First event id to check; its recorded predecessor hash is trusted (a checkpoint).
    #[arg(long)]
    pub from: Option<i64>,
    /// Last event id to check.
    #[arg(long)]
    pub to: Option<i64>,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a local administrator. The password is read from TOOLGATE_ADMIN_PASSWORD or, when
    /// that is unset, from the first line of standard input (at least 12 characters).
    Create(AdminCreate),
}

#[derive(Debug, Args)]
pub struct AdminCreate {
    /// The sign-in name.
    #[arg(long)]
    pub username: String,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token: `--role admin` for the admin API, `--role scim` for a SCIM
    /// provisioning client (Microsoft Entra). The token is printed once, as the last line of
    /// standard output; only its SHA-256 hash is stored.
    Create(TokenCreate),
    /// List the API tokens of a role (id, name, prefix, created, revoked); never the secrets.
    List(TokenList),
    /// Revoke an API token by id (see `token list`): refused from the next request on.
    Revoke(TokenRevoke),
}

#[derive(Debug, Args)]
pub struct TokenList {
    /// Which tokens.
    #[arg(long, value_enum, default_value_t = TokenRole::Admin)]
    pub role: TokenRole,
}

#[derive(Debug, Args)]
pub struct TokenRevoke {
    /// The token's id.
    pub id: String,
}

#[derive(Debug, Args)]
pub struct TokenCreate {
    /// A name to recognise the token by (e.g. "terraform").
    #[arg(long)]
    pub name: String,
    /// What the token may do.
    #[arg(long, value_enum, default_value_t = TokenRole::Admin)]
    pub role: TokenRole,
}

/// Roles an API token can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TokenRole {
    /// Full access to the admin API.
    Admin,
    /// SCIM 2.0 provisioning at /scim/v2 (paste it into Entra as the Secret Token).
    Scim,
}

/// A command's input is invalid (exit code 2, nothing changed), as opposed to a failure (1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

/// The exit code for a failed command: 2 for invalid input, 1 for anything else.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<InvalidInput>().is_some() {
        2
    } else {
        1
    }
}

fn domain_error(what: &str) -> impl FnOnce(toolgate_domain::Error) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("{what}: {e}")
}

/// `toolgate policy ...`.
pub async fn policy(config: &Config, command: PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Export => {
            let store = crate::open_store(config).await?;
            let state = PolicyState::load(&store).await;
            store.close().await;
            let state = state.map_err(domain_error("reading the policy"))?;
            print!("{}", policy_file::export(&state));
            Ok(())
        }
        PolicyCommand::Apply(args) => policy_apply(config, args).await,
    }
}

async fn policy_apply(config: &Config, args: PolicyApply) -> anyhow::Result<()> {
    let name = args.file.display().to_string();
    let text = if args.file == Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("reading the policy file from standard input")?;
        text
    } else {
        std::fs::read_to_string(&args.file).with_context(|| format!("reading {name}"))?
    };
    // The file is checked before the database is opened: a typo costs no connection.
    let file = policy_file::parse(&text)
        .map_err(|e| InvalidInput(format!("{name} is not a valid policy file:\n{e}")))?;
    let store = crate::open_store(config).await?;
    let outcome = async {
        let state = PolicyState::load(&store)
            .await
            .map_err(domain_error("reading the policy"))?;
        let plan = policy_file::plan(&file, &state).map_err(|e| {
            InvalidInput(format!(
                "{name} cannot be applied (nothing was changed):\n  {}",
                e.problems.join("\n  ")
            ))
        })?;
        print!("{}", plan.render());
        if args.dry_run {
            println!("Dry run: nothing was changed.");
            return Ok(());
        }
        if plan.is_empty() {
            return Ok(());
        }
        let done = policy_file::apply(&store, &plan, "cli")
            .await
            .map_err(domain_error("applying the policy"))?;
        println!(
            "Applied {done} change{}; running servers use them within a second.",
            if done == 1 { "" } else { "s" }
        );
        Ok(())
    }
    .await;
    store.close().await;
    outcome
}

/// `toolgate keys ...`.
pub async fn keys(config: &Config, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Generate(args) => {
            let key = MasterKey::generate().to_base64();
            match args.out {
                Some(path) => {
                    write_new_private(&path, format!("{key}\n").as_bytes())?;
                    eprintln!("wrote a new master key to {}", path.display());
                }
                None => println!("{key}"),
            }
            Ok(())
        }
        KeysCommand::Rotate(args) => keys_rotate(config, args).await,
    }
}

async fn keys_rotate(config: &Config, args: KeysRotate) -> anyhow::Result<()> {
    // Never generate a "current" key here: rotating away from a key nothing was sealed with
    // would hide a misconfiguration.
    let key_file = config.data_dir.join("master.key");
    if config.master_key.is_none() && !key_file.exists() {
        return Err(InvalidInput(format!(
            "no current master key: set TOOLGATE_MASTER_KEY (or master_key in the config file), or keep it in {}",
            key_file.display()
        ))
        .into());
    }
    let current = crate::resolve_master_key(config)?;
    let from_env = std::env::var("TOOLGATE_NEW_MASTER_KEY")
        .ok()
        .filter(|v| !v.is_empty());
    let new_text = match (&args.new_key_file, from_env) {
        (Some(_), Some(_)) => {
            return Err(InvalidInput(
                "give the new key one way: --new-key-file or TOOLGATE_NEW_MASTER_KEY, not both"
                    .into(),
            )
            .into());
        }
        (Some(path), None) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the new master key from {}", path.display()))?,
        (None, Some(key)) => key,
        (None, None) => {
            return Err(InvalidInput(
                "no new key: give --new-key-file PATH or set TOOLGATE_NEW_MASTER_KEY (make one with `toolgate keys generate`)".into(),
            )
            .into());
        }
    };
    let new = MasterKey::from_base64(&new_text)
        .map_err(|e| InvalidInput(format!("the new master key: {e}")))?;
    if new.to_base64() == current.to_base64() {
        return Err(InvalidInput("the new master key is the current one".into()).into());
    }
    let store = crate::open_store(config).await?;
    let outcome = async {
        let report = store
            .rekey(&new.cipher())
            .await
            .map_err(domain_error("master key not rotated"))?;
        let counts = serde_json::json!({
            "connector_headers": report.connector_headers,
            "connector_env": report.connector_env,
            "connector_oauth": report.connector_oauth,
            "secret_settings": report.secret_settings,
            "siem_secrets": report.siem_secrets,
            "audit_checkpoints": report.audit_checkpoints,
        });
        let event = NewAuditEvent::change(
            store.clock().now(),
            "admin.keys.rotate",
            "cli",
            "system",
            None,
            Some(counts),
        );
        let audited = store.insert_audit_batch(&[event]).await;
        println!("Master key rotated: {} values moved to the new key.", report.total());
        for (what, n) in [
            ("connector headers", report.connector_headers),
            ("connector environments", report.connector_env),
            ("connector OAuth client secrets", report.connector_oauth),
            ("secret settings", report.secret_settings),
            ("SIEM sink secrets", report.siem_secrets),
            ("audit checkpoints (signed again)", report.audit_checkpoints),
        ] {
            println!("  {n:>6}  {what}");
        }
        println!(
            "Now start every replica with the new key (TOOLGATE_MASTER_KEY, master_key, or {}); the old key opens nothing any more.",
            key_file.display()
        );
        audited.map_err(domain_error("the master key was rotated but not audited"))
    }
    .await;
    store.close().await;
    outcome
}

/// Creates `path` with mode 0600 (never overwriting) and writes `data`.
fn write_new_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_the_documented_commands() {
        let c = Cli::try_parse_from([
            "toolgate", "token", "create", "--name", "ci", "--role", "admin",
        ])
        .unwrap();
        assert!(
            matches!(c.command, Command::Token { command: TokenCommand::Create(TokenCreate { ref name, role: TokenRole::Admin }) } if name == "ci")
        );
        let c = Cli::try_parse_from(["toolgate", "admin", "create", "--username", "root"]).unwrap();
        assert!(matches!(c.command, Command::Admin { .. }));
        assert!(
            Cli::try_parse_from([
                "toolgate", "token", "create", "--name", "x", "--role", "god"
            ])
            .is_err()
        );
        assert!(Cli::try_parse_from(["toolgate", "admin", "create"]).is_err());
        let c = Cli::try_parse_from([
            "toolgate", "token", "create", "--name", "entra", "--role", "scim",
        ])
        .unwrap();
        assert!(matches!(
            c.command,
            Command::Token {
                command: TokenCommand::Create(TokenCreate {
                    role: TokenRole::Scim,
                    ..
                })
            }
        ));
    }
}
