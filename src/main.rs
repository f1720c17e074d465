use std::process::ExitCode;

use content_api::config::Settings;
use content_api::domain::{seed, Hooks};
use content_api::{db, prepare, telemetry, Application};

const USAGE: &str = "usage: content-api [serve|migrate|seed]
  serve    run the HTTP server (default)
  migrate  create the database if needed and apply pending migrations
  seed     add the demo users and content if missing (idempotent)";

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
        "seed" => run_seed(settings),
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

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let app = Application::build(settings).await?;
        app.run_until_stopped().await?;
        Ok(())
    })
}

fn run_seed(mut settings: Settings) -> anyhow::Result<()> {
    // A one-shot process serves nothing: with an L1 it would join the
    // members, and running servers' writes would wait out its lease.
    settings.l1_cache_bytes = 0;
    runtime()?.block_on(async {
        let context = prepare(&settings, Hooks::default()).await?;
        let seeded = seed::run(&context).await;
        context.cache.shut_down().await;
        let report = seeded.map_err(|err| anyhow::anyhow!("seeding: {err}"))?;
        tracing::info!(
            users_created = report.users_created,
            items_created = report.items_created,
            "seed done (demo password: {})",
            seed::DEMO_PASSWORD
        );
        Ok(())
    })
}
