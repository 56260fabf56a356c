//! Logging the terminal client in, and the saved logins: one token per
//! server in `$XDG_CONFIG_HOME/ironclaw/logins.json` (else
//! `~/.config/ironclaw/`), the folder 0700 and the file 0600. A saved
//! token is used until the server refuses it or it expires; `ironclaw
//! logout` revokes it on the server and removes it.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context as _};
use serde::{Deserialize, Serialize};

use super::api::Api;
use crate::auth::COOKIE_NAME;
use crate::protocol::LoginRequest;

/// One saved login.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    pub user: String,
    pub token: String,
    /// RFC 3339.
    pub expires_at: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Store {
    #[serde(default)]
    logins: BTreeMap<String, Saved>,
}

/// Where the saved logins live.
pub fn store_path() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    anyhow!("neither XDG_CONFIG_HOME nor HOME is set: nowhere to keep the login")
                })?,
        )
        .join(".config"),
    };
    Ok(base.join("ironclaw").join("logins.json"))
}

fn load() -> anyhow::Result<Store> {
    let path = store_path()?;
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("reading {} (delete it to start over)", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Store::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write(store: &Store) -> anyhow::Result<()> {
    let path = store_path()?;
    let dir = path
        .parent()
        .ok_or_else(|| anyhow!("no folder for the login file"))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let temp = dir.join(format!(".logins.{}.tmp", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .with_context(|| format!("writing {}", temp.display()))?;
    file.write_all(&serde_json::to_vec_pretty(store)?)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The saved login for `server`, if it has not expired.
pub fn saved(server: &str) -> anyhow::Result<Option<Saved>> {
    let store = load()?;
    Ok(store.logins.get(server).cloned().filter(|s| {
        chrono::DateTime::parse_from_rfc3339(&s.expires_at).is_ok_and(|at| at > chrono::Utc::now())
    }))
}

pub fn save(server: &str, login: Saved) -> anyhow::Result<()> {
    let mut store = load()?;
    store.logins.insert(server.to_string(), login);
    write(&store)
}

/// Remove the saved login for `server`; returns it.
pub fn forget(server: &str) -> anyhow::Result<Option<Saved>> {
    let mut store = load()?;
    let gone = store.logins.remove(server);
    if gone.is_some() {
        write(&store)?;
    }
    Ok(gone)
}

/// Where the password comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordFrom {
    /// `IRONCLAW_PASSWORD`, else a prompt without echo on the terminal.
    EnvOrPrompt,
    /// The first line of stdin.
    Stdin,
}

fn password(from: PasswordFrom) -> anyhow::Result<String> {
    if from == PasswordFrom::EnvOrPrompt {
        if let Ok(p) = std::env::var("IRONCLAW_PASSWORD") {
            return Ok(p);
        }
    }
    if from == PasswordFrom::Stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    if !std::io::stdin().is_terminal() {
        bail!("no password: give it with --password-stdin or IRONCLAW_PASSWORD, or run in a terminal to be asked");
    }
    Ok(rpassword::prompt_password("Password: ")?)
}

fn username(given: Option<&str>) -> anyhow::Result<String> {
    if let Some(u) = given {
        return Ok(u.to_string());
    }
    if !std::io::stdin().is_terminal() {
        bail!("no user name: give it with --user NAME");
    }
    eprint!("User: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let name = line.trim().to_string();
    if name.is_empty() {
        bail!("no user name given");
    }
    Ok(name)
}

/// A logged-in API for `server`: the saved login if the server still takes
/// it (and it is `user`'s, when a user is named), else a new login, saved.
pub async fn logged_in(
    server: &str,
    user: Option<&str>,
    from: PasswordFrom,
) -> anyhow::Result<Api> {
    if let Some(login) = saved(server)? {
        if user.is_none_or(|u| u == login.user) {
            let api = Api::new(server, &login.token, &login.user)?;
            if api.still_valid().await? {
                return Ok(api);
            }
        }
    }
    let name = username(user)?;
    let pass = password(from)?;
    let api = Api::new(server, "", &name)?;
    let (token, max_age) = api
        .login(&LoginRequest {
            username: name.clone(),
            password: pass,
        })
        .await?;
    let expires_at = (chrono::Utc::now() + chrono::Duration::seconds(max_age)).to_rfc3339();
    save(
        server,
        Saved {
            user: name.clone(),
            token: token.clone(),
            expires_at,
        },
    )?;
    Api::new(server, &token, &name)
}

/// The token and lifetime in seconds from a login answer's `Set-Cookie`.
pub fn token_from_set_cookie(header: &str) -> Option<(String, i64)> {
    let mut parts = header.split(';').map(str::trim);
    let (name, value) = parts.next()?.split_once('=')?;
    if name != COOKIE_NAME || value.is_empty() {
        return None;
    }
    let max_age = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("max-age"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(24 * 3600);
    Some((value.to_string(), max_age))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_and_its_lifetime_come_from_the_cookie() {
        let header =
            format!("{COOKIE_NAME}=abc123; HttpOnly; SameSite=Strict; Path=/; Max-Age=1209600");
        assert_eq!(
            token_from_set_cookie(&header),
            Some(("abc123".to_string(), 1_209_600))
        );
        assert_eq!(token_from_set_cookie("other=1; Max-Age=5"), None);
    }
}
