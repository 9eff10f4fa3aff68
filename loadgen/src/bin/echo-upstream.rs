//! `echo-upstream`: the benchmark's minimal MCP server (see `toolgate_loadgen::upstream`).
//! Prints `listening on http://ADDR` once it accepts connections.

use anyhow::Context;
use axum::serve::ListenerExt;
use clap::Parser;
use std::io::Write;

/// A minimal MCP server over streamable HTTP: `/mcp` (tools `echo`, `big`), `/wide/{i}` (many
/// tools per connector), `/wide-all` (every wide catalog in one listing).
#[derive(Debug, Parser)]
#[command(name = "echo-upstream")]
struct Args {
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Tools in each `/wide/{i}` catalog.
    #[arg(long, default_value_t = 50)]
    wide_tools: usize,
    /// Copies of the wide catalog in `/wide-all`.
    #[arg(long, default_value_t = 100)]
    wide_copies: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("bind {}", args.listen))?;
    let addr = listener.local_addr().context("local address")?;
    let app = toolgate_loadgen::upstream::router(args.wide_tools, args.wide_copies);
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}").context("stdout")?;
        out.flush().context("stdout")?;
    }
    // Nagle off: an SSE answer goes out in several small writes, and with Nagle on each one
    // after the first waits for the client's delayed ACK (40 ms on Linux).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await.context("serve")
}
