//! The `ironclaw` command: `serve` (default), `chat`, `logout`,
//! `user add|list|passwd|remove`, `migrate` and `check` (DESIGN.md §7).

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};

use ironclaw::auth;
use ironclaw::config::Settings;
use ironclaw::db::{self, queries};

#[derive(Parser)]
#[command(
    name = "ironclaw",
    version,
    about = "Self-hosted AI agent runtime with a hardened sandbox"
)]
struct Cli {
    /// Configuration file (default: ./ironclaw.toml if present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Manage users.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Check Docker, the sandbox image, the database, the provider, the model
    /// and whether it calls tools.
    Check,
    /// Chat with the agent from this terminal (a client of a running server).
    Chat(ironclaw::chat::ChatArgs),
    /// Forget the login `ironclaw chat` saved for a server, and end it there.
    Logout {
        /// The server (default http://127.0.0.1:<server.port>).
        #[arg(long)]
        server: Option<String>,
    },
}

#[derive(Subcommand)]
enum UserAction {
    /// Create a user.
    Add {
        username: String,
        /// Read the password from the first line of stdin instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Change a user's password (ends their logins).
    Passwd {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user and everything they own.
    Remove { username: String },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The terminal client's screen is its output; only warnings go to the log.
    let client = matches!(cli.command, Some(Command::Chat(_) | Command::Logout { .. }));
    let level = if client { "warn" } else { "info" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    let settings = Settings::load(cli.config.as_deref()).context("reading the configuration")?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings),
        Command::User { action } => user(&settings, action),
        Command::Migrate => {
            let database = settings.database()?;
            let mut conn = db::connect(&database)?;
            let applied = db::migrate(&mut conn)?;
            if applied.is_empty() {
                println!(
                    "database ({}) is up to date: {}",
                    database.kind(),
                    database.describe()
                );
            } else {
                println!("applied: {}", applied.join(", "));
            }
            Ok(())
        }
        Command::Check => check(settings),
        Command::Chat(args) => std::process::exit(ironclaw::chat::run(args, settings.server.port)),
        Command::Logout { server } => {
            ironclaw::chat::logout(server.as_deref(), settings.server.port)
        }
    }
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        let mut running = ironclaw::app::start(settings).await?;
        println!("IronClaw is running: open http://{}", running.addr);
        // Resolves on SIGTERM/SIGINT once requests have drained.
        let stopped = (&mut running.done).await;
        running.stop_sessions().await;
        stopped?;
        Ok(())
    })
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        let first = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            bail!("the passwords do not match");
        }
        first
    };
    if password.chars().count() < auth::MIN_PASSWORD_LEN {
        bail!(
            "a password needs at least {} characters",
            auth::MIN_PASSWORD_LEN
        );
    }
    Ok(password)
}

fn user(settings: &Settings, action: UserAction) -> anyhow::Result<()> {
    let mut conn = db::connect(settings.database()?)?;
    db::migrate(&mut conn)?;
    match action {
        UserAction::Add {
            username,
            password_stdin,
        } => {
            let username = username.trim().to_string();
            if username.is_empty()
                || username.len() > 64
                || username.chars().any(char::is_whitespace)
            {
                bail!("a username is 1 to 64 characters without spaces");
            }
            if queries::find_user(&mut conn, &username)?.is_some() {
                bail!("user `{username}` already exists");
            }
            let hash = auth::hash_password(&read_password(password_stdin)?)?;
            queries::create_user(&mut conn, &username, &hash, settings.approval.mode)?;
            println!("created user `{username}`");
        }
        UserAction::List => {
            for u in queries::list_users(&mut conn)? {
                println!(
                    "{}\t{}\t{}",
                    u.username,
                    u.approval_mode.as_str(),
                    u.created_at
                );
            }
        }
        UserAction::Passwd {
            username,
            password_stdin,
        } => {
            let hash = auth::hash_password(&read_password(password_stdin)?)?;
            if !queries::set_password(&mut conn, &username, &hash)? {
                bail!("no user `{username}`");
            }
            println!("password changed for `{username}`; their logins were ended");
        }
        UserAction::Remove { username } => match queries::remove_user(&mut conn, &username)? {
            None => bail!("no user `{username}`"),
            Some(sessions) => {
                for id in &sessions {
                    let volume = ironclaw::quota::WorkspaceVolume::of_session(settings, id);
                    if let Err(e) = volume.remove() {
                        eprintln!("could not remove the workspace of session {id}: {e}");
                    }
                }
                println!(
                    "removed user `{username}` and {} session(s)",
                    sessions.len()
                );
            }
        },
    }
    Ok(())
}

fn check(settings: Settings) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        let mut ok = true;
        let mut line = |good: bool, what: &str, detail: String| {
            ok &= good;
            println!("{} {what}: {detail}", if good { "OK  " } else { "FAIL" });
        };
        match settings.database().and_then(|d| {
            let mut c = db::connect(&d)?;
            db::migrate(&mut c)?;
            Ok(d)
        }) {
            Ok(d) => {
                line(true, "database", format!("{} {}", d.kind(), d.describe()));
                // The nodes that use this database, and when each last beat.
                let nodes = db::connect(&d).and_then(|mut c| db::cluster::nodes(&mut c));
                match nodes {
                    Ok(nodes) if nodes.is_empty() => {
                        line(true, "nodes", "none has run on this database yet".into())
                    }
                    Ok(nodes) => {
                        let stale = chrono::Utc::now()
                            - chrono::Duration::seconds(settings.cluster.lease_secs as i64);
                        for n in nodes {
                            let alive = chrono::DateTime::parse_from_rfc3339(&n.heartbeat_at)
                                .is_ok_and(|t| t > stale);
                            println!(
                                "     node {} at {}: last heartbeat {}{}",
                                n.node_id,
                                n.advertise_url,
                                n.heartbeat_at,
                                if alive { "" } else { " (not running)" }
                            );
                        }
                    }
                    Err(e) => line(false, "nodes", e.to_string()),
                }
            }
            Err(e) => line(false, "database", e.to_string()),
        }
        match ironclaw::sandbox::Engine::connect().await {
            Ok(engine) => {
                let state = engine.status(&settings.sandbox.image).await;
                line(
                    state.reachable,
                    "docker",
                    if state.reachable {
                        "engine reachable".into()
                    } else {
                        state.summary.clone()
                    },
                );
                line(
                    state.image_present,
                    "sandbox image",
                    if state.image_present {
                        settings.sandbox.image.clone()
                    } else {
                        state.summary
                    },
                );
            }
            Err(e) => line(false, "docker", e.to_string()),
        }
        let client = ironclaw::provider::http_client(&settings.provider);
        let h = ironclaw::provider::health(&client, &settings.provider).await;
        line(
            h.reachable,
            "provider",
            format!(
                "{} at {}{}",
                h.kind,
                h.url,
                if h.reachable {
                    String::new()
                } else {
                    format!(" — {}", h.hint.clone().unwrap_or_default())
                }
            ),
        );
        line(
            h.model_available,
            "model",
            if h.model_available {
                h.model.clone()
            } else {
                h.hint.clone().unwrap_or_else(|| "unavailable".into())
            },
        );
        // Informational: a model without tools still works through fenced
        // code blocks, so no answer here fails the check.
        let tools = ironclaw::provider::tool_support(&client, &settings.provider, &h.model).await;
        line(true, "tools", tools.to_string());
        if ok {
            Ok(())
        } else {
            bail!("some checks failed")
        }
    })
}
