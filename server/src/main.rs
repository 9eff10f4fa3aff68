//! The `toolgate` binary: parse the command line, load config, hand over to the library.

use clap::Parser;
use std::process::ExitCode;
use toolgate::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match toolgate::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Startup and command errors go to the log and stderr with their context chain.
            tracing::error!(error = format!("{e:#}"), "toolgate failed");
            eprintln!("error: {e:#}");
            // 2: the input was invalid (e.g. a policy file); 1: anything else.
            ExitCode::from(toolgate::cli::exit_code(&e))
        }
    }
}
