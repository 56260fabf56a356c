//! Web safety at the edge (DESIGN.md §3): the WebSocket upgrade and every
//! state-changing request must come from the server's own origin or one
//! on `server.allowed_origins`, to a `Host` that names this server; their
//! bodies must be JSON or multipart. Everything else answers 403 or 415
//! before any route runs.
//!
//! The rules, as decided:
//!
//! - `Host` must be this server's own address (the listening address, or
//!   `localhost` / `127.0.0.1` / `[::1]` on its port, or any IP literal on
//!   its port when it listens on all interfaces) or the host of an allowed
//!   origin. That keeps a DNS-rebound name from passing as same-origin.
//! - `Origin`, when present, must be `http(s)://<that Host>` or on
//!   `server.allowed_origins`. `Origin: null` (sandboxed frames, `file:`
//!   pages, some redirects) is refused.
//! - No `Origin` at all is allowed: browsers send one on every WebSocket
//!   handshake and every cross-origin POST/PUT/PATCH/DELETE, so its absence
//!   means a non-browser client (curl, the CLI, scripts), which holds its
//!   own credentials anyway. If a browser says `Sec-Fetch-Site: cross-site`
//!   or `same-site` without an Origin, it is refused all the same.
//! - POST and PATCH bodies must be `application/json` or
//!   `multipart/form-data` (415 otherwise): `text/plain` and form-encoded
//!   bodies are what a cross-site form can send without a preflight. PUT
//!   is the raw-body file upload and takes any type, and DELETE reads no
//!   body; a browser never sends either cross-origin without a CORS
//!   preflight, which IronClaw never grants.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};

use super::{ApiError, AppState};
use crate::auth::clip_for_log;

/// Bytes of a refused header value written to the log.
const LOGGED_HEADER_BYTES: usize = 100;

/// Whether the method can change state (everything but reads).
fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The middleware: checks the requests it applies to, passes the rest.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let writes = changes_state(req.method());
    let upgrade = req.path() == "/ws";
    if writes || upgrade {
        let verdict = req
            .app_data::<web::Data<AppState>>()
            .map(|state| check(&req, &state.settings.server.allowed_origins));
        if let Some(Err(e)) = verdict {
            log::warn!(
                "refused {} {} from {}: {} (origin {:?}, host {:?}, content-type {:?})",
                req.method(),
                req.path(),
                req.peer_addr()
                    .map_or_else(|| "?".to_string(), |a| a.ip().to_string()),
                e.code(),
                header_for_log(&req, header::ORIGIN),
                header_for_log(&req, header::HOST),
                header_for_log(&req, header::CONTENT_TYPE),
            );
            let resp = e.error_response();
            return Ok(req.into_response(resp).map_into_right_body());
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

fn header_for_log(req: &ServiceRequest, name: header::HeaderName) -> Option<String> {
    req.headers()
        .get(name)
        .map(|v| clip_for_log(&String::from_utf8_lossy(v.as_bytes()), LOGGED_HEADER_BYTES))
}

fn check(req: &ServiceRequest, allowed: &[String]) -> Result<(), ApiError> {
    let header = |name| {
        req.headers()
            .get(name)
            .map(|v: &header::HeaderValue| v.to_str().unwrap_or("\u{fffd}"))
    };
    let request = Request {
        host: header(header::HOST).unwrap_or(""),
        origin: header(header::ORIGIN),
        fetch_site: header(header::HeaderName::from_static("sec-fetch-site")),
        listen: req.app_config().local_addr(),
        secure: req.connection_info().scheme() == "https",
    };
    if !request.allowed(allowed) {
        return Err(ApiError::OriginRefused);
    }
    let has_body = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0")
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    let json_routes = matches!(*req.method(), Method::POST | Method::PATCH);
    if json_routes && has_body {
        let essence = header(header::CONTENT_TYPE)
            .and_then(|t| t.split(';').next())
            .map(|t| t.trim().to_ascii_lowercase());
        if !matches!(
            essence.as_deref(),
            Some("application/json" | "multipart/form-data")
        ) {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    Ok(())
}

/// What the origin rule looks at in one request.
struct Request<'a> {
    host: &'a str,
    origin: Option<&'a str>,
    fetch_site: Option<&'a str>,
    /// The address the server listens on.
    listen: std::net::SocketAddr,
    secure: bool,
}

impl Request<'_> {
    fn allowed(&self, allowed: &[String]) -> bool {
        let host = self.host.to_ascii_lowercase();
        if !self.own_host(&host, allowed) {
            return false;
        }
        match self.origin {
            None => !matches!(self.fetch_site, Some("cross-site" | "same-site")),
            Some(origin) => {
                let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
                if origin == "null" {
                    return false;
                }
                let own = [format!("http://{host}"), format!("https://{host}")];
                own.contains(&origin)
                    || allowed
                        .iter()
                        .any(|a| a.trim().trim_end_matches('/').eq_ignore_ascii_case(&origin))
            }
        }
    }

    /// Whether `host` (lower case, `name[:port]`) names this server.
    fn own_host(&self, host: &str, allowed: &[String]) -> bool {
        let default_port = if self.secure { 443 } else { 80 };
        let (name, port) = split_host(host, default_port);
        // Behind a TLS proxy the Host has no port while the origin is
        // https: without a port, the names must match.
        let explicit_port = split_host(host, 0).1 != 0;
        if allowed.iter().any(|a| {
            let a = a.trim().trim_end_matches('/').to_ascii_lowercase();
            let (scheme_port, rest) = if let Some(r) = a.strip_prefix("https://") {
                (443, r)
            } else if let Some(r) = a.strip_prefix("http://") {
                (80, r)
            } else {
                return false;
            };
            let (allowed_name, allowed_port) = split_host(rest, scheme_port);
            allowed_name == name && (!explicit_port || allowed_port == port)
        }) {
            return true;
        }
        if port != self.listen.port() {
            return false;
        }
        let ip = self.listen.ip();
        let literal = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>();
        match literal {
            Ok(addr) => {
                addr == ip || ip.is_unspecified() || (ip.is_loopback() && addr.is_loopback())
            }
            Err(_) => name == "localhost" && (ip.is_loopback() || ip.is_unspecified()),
        }
    }
}

/// `name[:port]` (with `[v6]` literals) into its name and port.
fn split_host(host: &str, default_port: u16) -> (&str, u16) {
    if let Some(rest) = host.strip_prefix('[') {
        if let Some((v6, tail)) = rest.split_once(']') {
            let port = tail
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .unwrap_or(default_port);
            return (v6, port);
        }
    }
    match host.rsplit_once(':') {
        Some((name, port)) => match port.parse() {
            Ok(p) => (name, p),
            Err(_) => (host, 0),
        },
        None => (host, default_port),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn req<'a>(host: &'a str, origin: Option<&'a str>, listen: &str) -> Request<'a> {
        Request {
            host,
            origin,
            fetch_site: None,
            listen: listen.parse().unwrap(),
            secure: false,
        }
    }

    #[test]
    fn the_origin_rule() {
        let allowed = vec!["https://claw.example.com".to_string()];
        let table: &[(&str, Option<&str>, &str, bool)] = &[
            // Same origin, by address or by localhost.
            (
                "127.0.0.1:8080",
                Some("http://127.0.0.1:8080"),
                "127.0.0.1:8080",
                true,
            ),
            (
                "localhost:8080",
                Some("http://localhost:8080"),
                "127.0.0.1:8080",
                true,
            ),
            // Another port on the same machine is another origin.
            (
                "127.0.0.1:8080",
                Some("http://127.0.0.1:9999"),
                "127.0.0.1:8080",
                false,
            ),
            (
                "127.0.0.1:8080",
                Some("http://evil.example"),
                "127.0.0.1:8080",
                false,
            ),
            ("127.0.0.1:8080", Some("null"), "127.0.0.1:8080", false),
            // No Origin: not a browser page.
            ("127.0.0.1:8080", None, "127.0.0.1:8080", true),
            // A DNS-rebound name is not this server.
            (
                "evil.example:8080",
                Some("http://evil.example:8080"),
                "127.0.0.1:8080",
                false,
            ),
            ("evil.example:8080", None, "127.0.0.1:8080", false),
            // The allowed origin, behind a proxy.
            (
                "claw.example.com",
                Some("https://claw.example.com"),
                "127.0.0.1:8080",
                true,
            ),
            (
                "claw.example.com",
                Some("https://claw.example.com/"),
                "127.0.0.1:8080",
                true,
            ),
            // Listening on every interface: any IP literal on the port.
            (
                "192.168.1.5:8080",
                Some("http://192.168.1.5:8080"),
                "0.0.0.0:8080",
                true,
            ),
            (
                "192.168.1.5:8080",
                Some("http://192.168.1.6:8080"),
                "0.0.0.0:8080",
                false,
            ),
            ("[::1]:8080", Some("http://[::1]:8080"), "[::1]:8080", true),
        ];
        for (host, origin, listen, want) in table {
            assert_eq!(
                req(host, *origin, listen).allowed(&allowed),
                *want,
                "host {host} origin {origin:?} listen {listen}"
            );
        }
        let mut cross = req("127.0.0.1:8080", None, "127.0.0.1:8080");
        cross.fetch_site = Some("cross-site");
        assert!(!cross.allowed(&[]));
    }

    #[test]
    fn hosts_split_into_name_and_port() {
        assert_eq!(split_host("a:1", 80), ("a", 1));
        assert_eq!(split_host("a", 80), ("a", 80));
        assert_eq!(split_host("[::1]:9", 80), ("::1", 9));
        assert_eq!(split_host("[::1]", 443), ("::1", 443));
        assert_eq!(split_host("a:x", 80), ("a:x", 0));
    }
}
