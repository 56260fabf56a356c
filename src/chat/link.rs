//! The terminal client's WebSocket (protocol v1, DESIGN.md §2): one task
//! that keeps a socket open to the session, reconnects with backoff when it
//! drops, and keeps the client's frames while it is down, sending them once
//! the session's `history` has arrived again.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, Message};

use super::api::{encode_path, Api};
use crate::protocol::{ClientMessage, ServerEvent, SessionId};

/// First wait before reconnecting; doubles up to [`BACKOFF_MAX`].
const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// The server pings every 10 s; this long without any frame means the
/// connection is gone even if the OS has not said so.
const SILENCE: Duration = Duration::from_secs(45);

/// What the link tells the client.
#[derive(Debug)]
pub enum LinkEvent {
    /// A socket is open (its first frames follow).
    Up,
    Event(Box<ServerEvent>),
    /// The socket dropped; the next try is in `retry_in`.
    Down {
        reason: String,
        retry_in: Duration,
    },
    /// The link gave up: the login is no longer valid, or the session is gone.
    Fatal(String),
}

/// What the client asks of the link.
#[derive(Debug)]
pub enum LinkCmd {
    Send(ClientMessage),
    /// Open another session (`None`: the user's most recent).
    Switch(Option<SessionId>),
}

pub struct Link {
    pub cmds: mpsc::UnboundedSender<LinkCmd>,
    pub events: mpsc::UnboundedReceiver<LinkEvent>,
}

/// Start the link to `session` (or the most recent one).
pub fn start(api: Api, session: Option<SessionId>) -> Link {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    tokio::spawn(run(api, session, cmd_rx, ev_tx));
    Link {
        cmds: cmd_tx,
        events: ev_rx,
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

enum Refused {
    /// Worth trying again.
    Retry(String),
    /// Not worth it.
    Fatal(String),
}

async fn connect(api: &Api, session: Option<&SessionId>) -> Result<Socket, Refused> {
    let ws_base = if let Some(rest) = api.base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = api.base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        return Err(Refused::Fatal(format!(
            "the server address {} must start with http:// or https://",
            api.base
        )));
    };
    let url = match session {
        Some(id) => format!(
            "{ws_base}/ws?session={}",
            encode_path(id).replace('/', "%2F")
        ),
        None => format!("{ws_base}/ws"),
    };
    let mut request = url
        .into_client_request()
        .map_err(|e| Refused::Fatal(format!("bad server address: {e}")))?;
    let cookie = api
        .cookie()
        .parse()
        .map_err(|_| Refused::Fatal("the saved login is not a valid header".into()))?;
    request.headers_mut().insert("cookie", cookie);
    match tokio::time::timeout(
        Duration::from_secs(15),
        tokio_tungstenite::connect_async(request),
    )
    .await
    {
        Err(_) => Err(Refused::Retry(
            "the server did not answer within 15 s".into(),
        )),
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(tungstenite::Error::Http(resp))) => {
            let status = resp.status().as_u16();
            let message = resp
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice::<crate::protocol::ErrorBody>(b).ok())
                .map(|b| b.error.message);
            match status {
                401 => Err(Refused::Fatal(
                    "the server no longer accepts this login; run `ironclaw chat` again to log in"
                        .into(),
                )),
                404 => Err(Refused::Fatal(
                    message.unwrap_or_else(|| "no such session".into()),
                )),
                403 => Err(Refused::Fatal(message.unwrap_or_else(|| {
                    "the server refused the connection (403)".into()
                }))),
                _ => Err(Refused::Retry(
                    message.unwrap_or_else(|| format!("the server answered {status}")),
                )),
            }
        }
        Ok(Err(e)) => Err(Refused::Retry(match e {
            tungstenite::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                "connection refused".into()
            }
            other => other.to_string(),
        })),
    }
}

/// Why a connected socket ended.
enum Ended {
    Dropped(String),
    Switched,
    /// The client is gone.
    Closed,
}

async fn run(
    api: Api,
    mut target: Option<SessionId>,
    mut cmds: mpsc::UnboundedReceiver<LinkCmd>,
    events: mpsc::UnboundedSender<LinkEvent>,
) {
    let mut backoff = BACKOFF_START;
    let mut queue: VecDeque<ClientMessage> = VecDeque::new();
    loop {
        let reason = match connect(&api, target.as_ref()).await {
            Ok(socket) => {
                backoff = BACKOFF_START;
                if events.send(LinkEvent::Up).is_err() {
                    return;
                }
                match serve(socket, &mut target, &mut queue, &mut cmds, &events).await {
                    Ended::Closed => return,
                    Ended::Switched => continue,
                    Ended::Dropped(reason) => reason,
                }
            }
            Err(Refused::Fatal(message)) => {
                let _ = events.send(LinkEvent::Fatal(message));
                return;
            }
            Err(Refused::Retry(reason)) => reason,
        };
        if events
            .send(LinkEvent::Down {
                reason,
                retry_in: backoff,
            })
            .is_err()
        {
            return;
        }
        // Wait, keeping what the client sends meanwhile.
        let wake = tokio::time::sleep(backoff);
        tokio::pin!(wake);
        loop {
            tokio::select! {
                () = &mut wake => break,
                cmd = cmds.recv() => match cmd {
                    None => return,
                    Some(LinkCmd::Send(m)) => queue.push_back(m),
                    Some(LinkCmd::Switch(id)) => { target = id; queue.clear(); break; }
                },
            }
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn serve(
    socket: Socket,
    target: &mut Option<SessionId>,
    queue: &mut VecDeque<ClientMessage>,
    cmds: &mut mpsc::UnboundedReceiver<LinkCmd>,
    events: &mpsc::UnboundedSender<LinkEvent>,
) -> Ended {
    let (mut write, mut read) = socket.split();
    // Frames are sent once the session's history is in, so a message is
    // never sent to a socket that is still attaching.
    let mut attached = false;
    loop {
        tokio::select! {
            frame = tokio::time::timeout(SILENCE, read.next()) => {
                let frame = match frame {
                    Err(_) => return Ended::Dropped("the server went silent".into()),
                    Ok(None) => return Ended::Dropped("the connection closed".into()),
                    Ok(Some(Err(e))) => return Ended::Dropped(e.to_string()),
                    Ok(Some(Ok(frame))) => frame,
                };
                let text = match frame {
                    Message::Text(t) => t,
                    Message::Close(close) => {
                        let why = close.map(|c| c.reason.to_string()).filter(|r| !r.is_empty());
                        return Ended::Dropped(why.unwrap_or_else(|| "the server closed the connection".into()));
                    }
                    _ => continue,
                };
                let Ok(event) = serde_json::from_str::<ServerEvent>(&text) else {
                    log::debug!("ignoring a frame this client does not know: {text}");
                    continue;
                };
                let history = matches!(event, ServerEvent::History { .. });
                if let ServerEvent::Session { session_id, .. } = &event {
                    *target = Some(session_id.clone());
                }
                if events.send(LinkEvent::Event(Box::new(event))).is_err() {
                    return Ended::Closed;
                }
                if history && !attached {
                    attached = true;
                    while let Some(m) = queue.pop_front() {
                        if let Err(e) = send(&mut write, &m).await {
                            queue.push_front(m);
                            return Ended::Dropped(e);
                        }
                    }
                }
            }
            cmd = cmds.recv() => match cmd {
                None => {
                    let _ = write.send(Message::Close(None)).await;
                    return Ended::Closed;
                }
                Some(LinkCmd::Switch(id)) => {
                    *target = id;
                    queue.clear();
                    let _ = write.send(Message::Close(None)).await;
                    return Ended::Switched;
                }
                Some(LinkCmd::Send(m)) => {
                    if !attached {
                        queue.push_back(m);
                    } else if let Err(e) = send(&mut write, &m).await {
                        queue.push_back(m);
                        return Ended::Dropped(e);
                    }
                }
            },
        }
    }
}

async fn send<S>(write: &mut S, m: &ClientMessage) -> Result<(), String>
where
    S: SinkExt<Message> + Unpin,
    S::Error: std::fmt::Display,
{
    let text = serde_json::to_string(m).map_err(|e| e.to_string())?;
    write
        .send(Message::Text(text))
        .await
        .map_err(|e| e.to_string())
}
