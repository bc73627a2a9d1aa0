//! The command line: `palaver [serve|migrate|admin create|keys generate|demo|openapi|bench|import-webhooks]`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{Config, Settings};

#[derive(Parser)]
#[command(
    name = "palaver",
    version,
    about = "Self-hosted messaging backend for WhatsApp-style products"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Configuration file (TOML; keys are the setting names in snake_case)
    #[arg(long, global = true, env = "PALAVER_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Without a subcommand, `palaver` is `palaver serve`.
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the server (the default); migrates the database first
    Serve(SettingsArgs),
    /// Apply database migrations and exit
    Migrate(SettingsArgs),
    /// Administration tasks
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Key files for cluster mode, where every node needs the same keys
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Load demo users (Alice, Bob, Charlie), chats and messages into an empty database
    Demo(SettingsArgs),
    /// Print the OpenAPI document of the HTTP API
    Openapi,
    /// Reads a PDF's page count (and text) and prints it as JSON: the server runs this in a
    /// process of its own, with memory and time limits, so that a hostile file cannot take
    /// the server down
    #[command(hide = true)]
    PdfInfo {
        file: PathBuf,
        /// Extract the text too
        #[arg(long)]
        text: bool,
    },
    /// Load generator: runs a scenario of quality.md against a running server and reports
    #[cfg(feature = "bench")]
    Bench(crate::bench::BenchArgs),
    /// Ingest a folder of WhatsApp webhook bodies (*.json, in name order) through the webhook's
    /// code path, without signatures; idempotent; prints counts and per-file errors
    ImportWebhooks {
        /// The folder
        dir: PathBuf,
        /// Workspace (id or slug) that gets a channel for phone number ids no channel has [default: the default workspace]
        #[arg(long)]
        workspace: Option<String>,
        #[command(flatten)]
        settings: Settings,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Write a new JWT signing key (jwt-ed25519.pem) and server secret (secret.key) into DIR,
    /// mode 0600; give them to every node as PALAVER_JWT_PRIVATE_KEY_FILE and
    /// PALAVER_SECRET_KEY_FILE
    Generate {
        /// The folder (created if missing; existing key files are not overwritten)
        dir: PathBuf,
    },
}

#[derive(clap::Args)]
pub struct SettingsArgs {
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create a platform admin who owns the default workspace (an existing account with this
    /// email is promoted; its password stays)
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: String,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        settings: Settings,
    },
}

/// Settings from the flags/environment layered over the config file.
fn config(file: Option<&PathBuf>, settings: Settings) -> anyhow::Result<Config> {
    let file_settings = match file {
        Some(path) => Settings::from_file(path)?,
        None if std::path::Path::new("palaver.toml").exists() => {
            Settings::from_file("palaver.toml".as_ref())?
        }
        None => Settings::default(),
    };
    Config::build(settings.or(file_settings))
}

impl Cli {
    /// This run is the server (`palaver` or `palaver serve`).
    pub fn serves(&self) -> bool {
        matches!(self.command, None | Some(Command::Serve(_)))
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => serve(config(cli.config.as_ref(), cli.settings)?).await,
        Some(Command::Serve(args)) => serve(config(cli.config.as_ref(), args.settings)?).await,
        Some(Command::Migrate(args)) => {
            let config = config(cli.config.as_ref(), args.settings)?;
            crate::telemetry::init(&config.log, config.log_format);
            crate::config::create_private_dir(&config.data_dir)?;
            let db = crate::db::Db::connect(config.database_url.expose(), 2).await?;
            db.migrate().await?;
            crate::workspaces::store::ensure_default(&db).await?;
            db.close().await;
            println!("migrations applied");
            Ok(())
        }
        Some(Command::Admin {
            command:
                AdminCommand::Create {
                    email,
                    password,
                    name,
                    settings,
                },
        }) => {
            let config = config(cli.config.as_ref(), settings)?;
            crate::telemetry::init(&config.log, config.log_format);
            create_admin(config, &email, password, name).await
        }
        Some(Command::Keys {
            command: KeysCommand::Generate { dir },
        }) => {
            let [jwt, secret] = crate::auth::keys::generate_files(&dir)?;
            println!(
                "PALAVER_JWT_PRIVATE_KEY_FILE={}\nPALAVER_SECRET_KEY_FILE={}",
                jwt.display(),
                secret.display()
            );
            Ok(())
        }
        Some(Command::Demo(args)) => {
            let config = config(cli.config.as_ref(), args.settings)?;
            crate::telemetry::init("warn", config.log_format);
            crate::demo::run(&config).await
        }
        #[cfg(feature = "bench")]
        Some(Command::Bench(args)) => crate::bench::run(args).await,
        Some(Command::ImportWebhooks {
            dir,
            workspace,
            settings,
        }) => {
            let config = config(cli.config.as_ref(), settings)?;
            crate::telemetry::init("warn", config.log_format);
            let state = crate::app::AppState::build(config).await?;
            let outcome = crate::whatsapp::import::run(&state, &dir, workspace.as_deref()).await;
            state.db.close().await;
            let report = outcome?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if report.failed_files > 0 {
                anyhow::bail!("{} file(s) could not be imported", report.failed_files);
            }
            Ok(())
        }
        Some(Command::PdfInfo { file, text }) => {
            let (pages, text) = crate::media::process::pdf(&file, text)?;
            println!("{}", serde_json::json!({ "pages": pages, "text": text }));
            Ok(())
        }
        Some(Command::Openapi) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&crate::server::openapi_json())?
            );
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    crate::telemetry::init(&config.log, config.log_format);
    let listen = config.listen;
    let state = crate::app::AppState::build(config).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let address = listener.local_addr()?;
    // Signals are heard from here on, before anyone is told the server is ready.
    let shutdown = crate::server::shutdown_signal();
    // Where a browser finds the web app: the public URL when one was set (the default names
    // the configured address, whose port may be 0).
    let web_app = if state.config.public_url == format!("http://{listen}") {
        format!("http://{address}/")
    } else {
        format!("{}/", state.config.public_url.trim_end_matches('/'))
    };
    tracing::info!(
        address = %address,
        web_app = %web_app,
        database = ?state.db.backend(),
        data_dir = %state.config.data_dir.display(),
        "Palaver is ready"
    );
    crate::server::serve(listener, state, shutdown).await
}

async fn create_admin(
    config: Config,
    email: &str,
    password: String,
    name: Option<String>,
) -> anyhow::Result<()> {
    use crate::users::model::{parse_display_name, Email};

    let email = Email::parse(email).map_err(|m| anyhow::anyhow!("--email {m}"))?;
    let password = crate::auth::service::parse_password(password)
        .map_err(|m| anyhow::anyhow!("--password {m}"))?;
    let name = parse_display_name(name.as_deref().unwrap_or("Admin"))
        .map_err(|m| anyhow::anyhow!("--name: {m}"))?;
    crate::config::create_private_dir(&config.data_dir)?;
    let db = crate::db::Db::connect(config.database_url.expose(), 2).await?;
    db.migrate().await?;
    let (user_id, created) =
        crate::auth::service::create_platform_admin(&db, &email, password, &name).await?;
    db.close().await;
    if created {
        println!(
            "created platform admin {} ({user_id}), owner of the default workspace",
            email.as_str()
        );
    } else {
        println!(
            "promoted the existing account {} ({user_id}) to platform admin and owner of the default \
             workspace; its password is unchanged",
            email.as_str()
        );
    }
    Ok(())
}
