//! `jetson-sim`: parse the flags, run the simulation until count, duration or Ctrl-C, print
//! the summary. Exit status: 0 when everything was sent, 1 when some publishes failed,
//! 2 on a configuration or connection error.

use std::process::ExitCode;

use clap::Parser;
use jetson_sim::cli::Cli;
use jetson_sim::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let json = cli.json;
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("jetson-sim: {e:#}");
            return ExitCode::from(2);
        }
    };
    let stop = CancellationToken::new();
    tokio::spawn(watch_signals(stop.clone()));
    match jetson_sim::run(config, stop).await {
        Ok(summary) => {
            if json {
                match serde_json::to_string(&summary) {
                    Ok(line) => println!("{line}"),
                    Err(e) => eprintln!("jetson-sim: cannot serialize the summary: {e}"),
                }
            } else {
                print!("{summary}");
            }
            if summary.failures > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("jetson-sim: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// First Ctrl-C or SIGTERM: stop publishing and drain. Second: quit at once.
async fn watch_signals(stop: CancellationToken) {
    shutdown_signal().await;
    eprintln!("jetson-sim: stopping, waiting for acknowledgements (Ctrl-C again to quit now)");
    stop.cancel();
    shutdown_signal().await;
    std::process::exit(130);
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
