//! stdio connectors: the gateway spawns the command and speaks MCP on its stdin/stdout (rmcp's
//! child-process transport). The child gets a cleared environment, its stderr goes to the log
//! line by line, and it is killed when its connection is dropped.

use rmcp::RoleClient;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::{TokioChildProcess, Transport};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use toolgate_domain::store::ConnectorSecrets;

/// Variables passed on from the gateway's own environment; nothing else is (the gateway's
/// `TOOLGATE_*` settings include the master key).
const INHERITED: [&str; 3] = ["PATH", "HOME", "LANG"];
/// Longest stderr line logged; the rest of the line is dropped.
const MAX_LOG_LINE: usize = 2048;
/// How long a child may take to exit after its stdin closes before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// A running child process as an rmcp transport.
pub struct StdioTransport {
    child: TokioChildProcess,
}

/// The command with its cleared environment.
fn command(
    c: &ConnectorSecrets,
    inherit: impl Fn(&str) -> Option<String>,
) -> tokio::process::Command {
    let program = c.connector.command.as_deref().unwrap_or_default();
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&c.connector.args).env_clear().kill_on_drop(true);
    for key in INHERITED {
        if let Some(v) = inherit(key) {
            cmd.env(key, v);
        }
    }
    cmd.envs(&c.env);
    cmd
}

/// Starts the connector's command; returns the transport and the child's pid.
pub fn spawn(c: &ConnectorSecrets) -> std::io::Result<(StdioTransport, Option<u32>)> {
    let cmd = command(c, |k| std::env::var(k).ok());
    let (child, stderr) = TokioChildProcess::builder(cmd)
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let pid = child.id();
    if let Some(stderr) = stderr {
        tokio::spawn(log_lines(c.connector.name.clone(), stderr));
    }
    Ok((StdioTransport { child }, pid))
}

/// Logs each line the child writes to stderr (cut at [`MAX_LOG_LINE`] bytes) until it closes.
async fn log_lines(connector: String, stderr: impl AsyncRead + Unpin) {
    let mut reader = BufReader::new(stderr);
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    loop {
        let (done, used, at_end) = match reader.fill_buf().await {
            Ok([]) | Err(_) => (true, 0, false),
            Ok(buf) => match buf.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    take(&mut line, &mut cut, &buf[..i]);
                    (false, i + 1, true)
                }
                None => {
                    take(&mut line, &mut cut, buf);
                    (false, buf.len(), false)
                }
            },
        };
        reader.consume(used);
        if at_end || (done && !line.is_empty()) {
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches('\r');
            if cut {
                tracing::warn!(connector = %connector, "stderr: {text}…");
            } else {
                tracing::warn!(connector = %connector, "stderr: {text}");
            }
            line.clear();
            cut = false;
        }
        if done {
            return;
        }
    }
}

fn take(line: &mut Vec<u8>, cut: &mut bool, bytes: &[u8]) {
    let room = MAX_LOG_LINE.saturating_sub(line.len());
    if bytes.len() > room {
        *cut = true;
    }
    line.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

impl Transport<RoleClient> for StdioTransport {
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.child.send(item)
    }

    fn receive(&mut self) -> impl Future<Output = Option<ServerJsonRpcMessage>> + Send {
        self.child.receive()
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        // MCP's stdio shutdown: close stdin and let the child exit. If it does not in time,
        // dropping the transport kills it.
        let _ = tokio::time::timeout(EXIT_GRACE, self.child.graceful_shutdown()).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use toolgate_domain::model::{Connector, Transport};

    #[test]
    fn the_child_environment_holds_only_path_home_lang_and_the_connector_env() {
        let at = chrono::Utc::now();
        let c = ConnectorSecrets {
            connector: Connector {
                id: "c1".into(),
                name: "local".into(),
                transport: Transport::Stdio,
                url: String::new(),
                command: Some("node".into()),
                args: vec!["index.js".into(), "stdio".into()],
                header_names: vec![],
                env_names: vec!["API_TOKEN".into()],
                oauth: None,
                timeout_ms: 1000,
                max_concurrency: 1,
                enabled: true,
                created_at: at,
                updated_at: at,
            },
            headers: Default::default(),
            env: [("API_TOKEN".to_string(), "t0k".to_string())].into(),
            oauth_client_secret: None,
        };
        let gateway_env = |k: &str| match k {
            "PATH" => Some("/usr/bin".to_string()),
            "HOME" => Some("/home/gw".to_string()),
            "TOOLGATE_MASTER_KEY" => Some("secret".to_string()),
            _ => None,
        };
        let cmd = command(&c, gateway_env);
        let std = cmd.as_std();
        assert_eq!(std.get_program(), "node");
        let mut env: Vec<(String, Option<String>)> = std
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        env.sort();
        assert_eq!(
            env,
            vec![
                ("API_TOKEN".into(), Some("t0k".into())),
                ("HOME".into(), Some("/home/gw".into())),
                ("PATH".into(), Some("/usr/bin".into())),
            ]
        );
    }

    #[tokio::test]
    async fn stderr_lines_are_read_to_the_end_and_cut() {
        // Reads a long line, a CRLF line and a last line without newline, then returns.
        let mut input = vec![b'a'; MAX_LOG_LINE * 3];
        input.extend_from_slice(b"\nsecond\r\nlast");
        let done = tokio::time::timeout(
            Duration::from_secs(5),
            log_lines("t".into(), std::io::Cursor::new(input)),
        )
        .await;
        assert!(done.is_ok(), "returns when stderr closes");
        let mut line = Vec::new();
        let mut cut = false;
        take(&mut line, &mut cut, &[b'x'; MAX_LOG_LINE + 1]);
        assert_eq!((line.len(), cut), (MAX_LOG_LINE, true));
    }
}
