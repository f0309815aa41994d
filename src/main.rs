use clap::Parser;
use seano_gateway::config::Settings;
use seano_gateway::startup::{shutdown_on_signals, Application};

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    if let Err(e) = dotenvy::dotenv() {
        if !e.not_found() {
            eprintln!("error: cannot read .env: {e}");
            return std::process::ExitCode::from(2);
        }
    }
    let settings = Settings::parse();
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,sea_orm_migration=warn"),
    )
    .init();
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            log::error!("{e:#}");
            eprintln!("error: {e:#}");
            return std::process::ExitCode::from(1);
        }
    };
    shutdown_on_signals(app.shutdown_token());
    match app.run_until_stopped().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
