//! Messages between nodes through PostgreSQL (DESIGN.md §7): `pg_notify`
//! to a node's channel, `LISTEN` on one's own. A notification carries at
//! most 8000 bytes; bigger payloads go in numbered pieces, reassembled in
//! order (each node publishes over one connection, so its pieces arrive in
//! order). What the payloads mean is the relay's business (`crate::relay`).

use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use diesel::pg::PgConnection;
use diesel::prelude::*;

/// Bytes of one notification's payload we use (PostgreSQL allows 8000).
const PIECE_BYTES: usize = 7000;
/// How often the listening connection is polled for notifications.
const POLL: Duration = Duration::from_millis(2);

/// The channel a node listens on.
pub fn channel(node_id: &str) -> String {
    let clean: String = node_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(50)
        .collect();
    format!("ironclaw_{clean}")
}

/// Start the publishing thread: what is sent on the answer goes out in
/// order, as `(channel, payload)`.
pub fn publisher_for(url: String) -> std_mpsc::Sender<(String, String)> {
    let (tx, rx) = std_mpsc::channel::<(String, String)>();
    let _ = std::thread::Builder::new()
        .name("ironclaw-bus-out".into())
        .spawn(move || publisher(&url, &rx));
    tx
}

/// Publishes `(channel, payload)` in order, in pieces when big; reconnects
/// when the connection breaks.
fn publisher(url: &str, rx: &std_mpsc::Receiver<(String, String)>) {
    let mut conn: Option<PgConnection> = None;
    let mut next_id: u64 = 0;
    while let Ok((channel, json)) = rx.recv() {
        next_id += 1;
        let pieces = pieces(next_id, &json);
        for piece in pieces {
            for attempt in 0..3 {
                if conn.is_none() {
                    conn = PgConnection::establish(url).ok();
                }
                let Some(c) = conn.as_mut() else {
                    std::thread::sleep(Duration::from_millis(200 * (attempt + 1)));
                    continue;
                };
                let sent = diesel::sql_query("SELECT pg_notify($1, $2)")
                    .bind::<diesel::sql_types::Text, _>(&channel)
                    .bind::<diesel::sql_types::Text, _>(&piece)
                    .execute(c);
                match sent {
                    Ok(_) => break,
                    Err(e) => {
                        log::warn!("bus: cannot publish: {e}");
                        conn = None;
                    }
                }
            }
        }
    }
}

/// Listens on `channel` in a thread of its own and hands each whole
/// payload to `deliver`, until `deliver` answers `false`; reconnects when
/// the connection breaks.
pub fn listen(url: String, channel: String, deliver: impl Fn(String) -> bool + Send + 'static) {
    let _ = std::thread::Builder::new()
        .name("ironclaw-bus-in".into())
        .spawn(move || listener(&url, &channel, &deliver));
}

fn listener(url: &str, channel: &str, deliver: &dyn Fn(String) -> bool) {
    let mut pending: HashMap<u64, Vec<String>> = HashMap::new();
    loop {
        let mut conn = match PgConnection::establish(url) {
            Ok(c) => c,
            Err(e) => {
                log::warn!("bus: cannot listen: {e}");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        if let Err(e) = diesel::sql_query(format!("LISTEN \"{channel}\"")).execute(&mut conn) {
            log::warn!("bus: cannot listen: {e}");
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        loop {
            let mut got = false;
            let mut broken = false;
            for n in conn.notifications_iter() {
                match n {
                    Ok(n) => {
                        got = true;
                        if let Some(json) = reassemble(&n.payload, &mut pending) {
                            if !deliver(json) {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        log::warn!("bus: listening broke: {e}");
                        broken = true;
                        break;
                    }
                }
            }
            if broken {
                break;
            }
            if !got {
                // Nothing waiting: ask the server again shortly.
                std::thread::sleep(POLL);
            }
        }
    }
}

/// The payloads that carry `json`: one, or numbered pieces.
fn pieces(id: u64, json: &str) -> Vec<String> {
    if json.len() <= PIECE_BYTES {
        return vec![format!("1|{json}")];
    }
    let mut parts = Vec::new();
    let mut rest = json;
    while !rest.is_empty() {
        let mut cut = rest.len().min(PIECE_BYTES);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        parts.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    let n = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| format!("P|{id}|{i}|{n}|{p}"))
        .collect()
}

/// A whole envelope from one payload or the last of its pieces.
fn reassemble(payload: &str, pending: &mut HashMap<u64, Vec<String>>) -> Option<String> {
    if let Some(json) = payload.strip_prefix("1|") {
        return Some(json.to_string());
    }
    let rest = payload.strip_prefix("P|")?;
    let mut parts = rest.splitn(4, '|');
    let id: u64 = parts.next()?.parse().ok()?;
    let i: usize = parts.next()?.parse().ok()?;
    let n: usize = parts.next()?.parse().ok()?;
    let piece = parts.next()?;
    let list = pending.entry(id).or_default();
    if list.len() != i {
        pending.remove(&id);
        return None;
    }
    list.push(piece.to_string());
    if list.len() < n {
        return None;
    }
    pending.remove(&id).map(|l| l.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_envelopes_go_in_pieces_and_come_back_whole() {
        let json = "é".repeat(9000);
        let mut pending = HashMap::new();
        let parts = pieces(7, &json);
        assert!(parts.len() > 1);
        assert!(parts.iter().all(|p| p.len() < 8000));
        let mut whole = None;
        for p in &parts {
            whole = reassemble(p, &mut pending);
        }
        assert_eq!(whole.as_deref(), Some(json.as_str()));
        assert!(pending.is_empty());
        assert_eq!(reassemble("1|{}", &mut pending).as_deref(), Some("{}"));
    }
}
