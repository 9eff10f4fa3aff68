//! stdio connectors: the gateway spawns the command and speaks MCP on its stdin/stdout, one
//! JSON-RPC message per line. The child gets a cleared environment, its stderr goes to the log
//! line by line, and it is killed when its connection is dropped. A line longer than the
//! response limit is never buffered: the request it answers fails with a clear error instead.

use super::fault::{Capped, Pending, Read};
use rmcp::RoleClient;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::Transport;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
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
    connector: String,
    child: Child,
    stdin: Arc<tokio::sync::Mutex<Option<ChildStdin>>>,
    stdout: BufReader<ChildStdout>,
    /// The line being read (kept across cancelled `receive` calls).
    line: Capped,
    pending: Pending,
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

/// Starts the connector's command; answers longer than `max_bytes` are refused. Returns the
/// transport and the child's pid.
pub fn spawn(
    c: &ConnectorSecrets,
    max_bytes: usize,
) -> std::io::Result<(StdioTransport, Option<u32>)> {
    let mut cmd = command(c, |k| std::env::var(k).ok());
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(std::io::Error::other(
            "the child's stdin or stdout is missing",
        ));
    };
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(log_lines(c.connector.name.clone(), stderr));
    }
    let transport = StdioTransport {
        connector: c.connector.name.clone(),
        child,
        stdin: Arc::new(tokio::sync::Mutex::new(Some(stdin))),
        stdout: BufReader::new(stdout),
        line: Capped::new(max_bytes),
        pending: Pending::default(),
    };
    Ok((transport, pid))
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

/// What one step of reading stdout gave.
enum Step {
    /// A whole line is in `line`.
    Line,
    More,
    Eof,
}

impl StdioTransport {
    /// Reads up to the end of the next line into `self.line` (which keeps at most the limit).
    /// Cancel-safe: `fill_buf` takes nothing, and what it gave is consumed without an await.
    async fn read_line(&mut self) -> bool {
        loop {
            let (used, step) = match self.stdout.fill_buf().await {
                Ok([]) => (0, Step::Eof),
                Err(e) => {
                    tracing::warn!(connector = %self.connector, error = %e, "reading the upstream command's stdout failed");
                    (0, Step::Eof)
                }
                Ok(buf) => match buf.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.line.push(&buf[..i]);
                        (i + 1, Step::Line)
                    }
                    None => {
                        self.line.push(buf);
                        (buf.len(), Step::More)
                    }
                },
            };
            self.stdout.consume(used);
            match step {
                Step::Line => return true,
                Step::More => {}
                Step::Eof => return false,
            }
        }
    }
}

impl Transport<RoleClient> for StdioTransport {
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.pending.sent(&item);
        let stdin = self.stdin.clone();
        let line = serde_json::to_vec(&item).map(|mut v| {
            v.push(b'\n');
            v
        });
        async move {
            let line = line.map_err(std::io::Error::other)?;
            let mut stdin = stdin.lock().await;
            let Some(w) = stdin.as_mut() else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "the upstream command's stdin is closed",
                ));
            };
            w.write_all(&line).await?;
            w.flush().await
        }
    }

    async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
        loop {
            if !self.read_line().await {
                if let Ok(Some(status)) = self.child.try_wait() {
                    tracing::warn!(connector = %self.connector, %status, "upstream command exited");
                }
                return None;
            }
            match self.line.take() {
                Read::Whole(line) => {
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match serde_json::from_slice::<ServerJsonRpcMessage>(line) {
                        Ok(m) => {
                            self.pending.received(&m);
                            return Some(m);
                        }
                        // As rmcp's own stdio transport: a line that is not a message is skipped.
                        Err(e) => {
                            tracing::debug!(connector = %self.connector, error = %e, "the upstream command wrote a line that is not JSON-RPC; skipped")
                        }
                    }
                }
                Read::TooLarge(ends) => {
                    let max = self.line.max();
                    tracing::warn!(connector = %self.connector, max, "the upstream command wrote a message over the size limit; dropped");
                    if let Some(error) = self.pending.too_large(&ends, max) {
                        return Some(error);
                    }
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        // MCP's stdio shutdown: close stdin and let the child exit; kill it if it does not in
        // time (a write stuck on a full pipe counts against the same grace).
        let exited = async {
            self.stdin.lock().await.take();
            self.child.wait().await
        };
        if tokio::time::timeout(EXIT_GRACE, exited).await.is_err() {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
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
