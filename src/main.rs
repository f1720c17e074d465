use std::process::ExitCode;

use content_api::config::Settings;
use content_api::{db, telemetry, Application};

const USAGE: &str = "usage: content-api [serve|migrate]
  serve    run the HTTP server (default)
  migrate  create the database if needed and apply pending migrations";

fn main() -> ExitCode {
    let command = std::env::args().nth(1).unwrap_or_else(|| "serve".into());
    if matches!(command.as_str(), "-h" | "--help" | "help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("configuration error: {err}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.log_format);
    let outcome = match command.as_str() {
        "serve" => serve(settings),
        "migrate" => db::ensure_database(&settings.database_url)
            .and_then(|()| db::run_migrations(&settings.database_url)),
        other => {
            eprintln!("unknown command {other:?}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = ?err, "{command} failed");
            eprintln!("{command} failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let app = Application::build(settings).await?;
            app.run_until_stopped().await?;
            Ok(())
        })
}
