//! The command line: `toolgate serve | migrate | admin create | token create`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

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
