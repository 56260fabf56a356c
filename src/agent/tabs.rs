//! The browser tabs attached to one session, and the fan-out of events to
//! them. Each tab has a bounded outbound queue: a tab too slow to drain it
//! is dropped (told `slow_client`) rather than buffered without limit; it
//! reconnects and `history` brings it up to date.

use std::sync::Arc;

use actix::prelude::*;

use crate::protocol::{ErrorCode, ServerEvent};
use crate::ws::{Disconnect, Outbound};

/// One attached socket.
struct Tab {
    id: u64,
    outbound: Recipient<Outbound>,
    control: Recipient<Disconnect>,
}

#[derive(Default)]
pub struct Tabs {
    tabs: Vec<Tab>,
}

/// Serialise once for every tab.
fn frame(event: &ServerEvent) -> Option<Outbound> {
    match serde_json::to_string(event) {
        Ok(text) => Some(Outbound(Arc::from(text))),
        Err(e) => {
            log::error!("cannot serialise a {} event: {e}", event.kind());
            None
        }
    }
}

impl Tabs {
    /// Register a socket that has been sent its first frames.
    pub fn attach(
        &mut self,
        id: u64,
        outbound: Recipient<Outbound>,
        control: Recipient<Disconnect>,
    ) {
        self.tabs.push(Tab {
            id,
            outbound,
            control,
        });
    }

    pub fn detach(&mut self, id: u64) {
        self.tabs.retain(|t| t.id != id);
    }

    pub fn is_empty(&self) -> bool {
        self.tabs.is_empty()
    }

    /// Send an event to every tab, dropping the ones that cannot keep up.
    pub fn broadcast(&mut self, event: &ServerEvent) {
        let Some(frame) = frame(event) else {
            return;
        };
        self.tabs.retain(|t| match t.outbound.try_send(frame.clone()) {
            Ok(()) => true,
            Err(SendError::Full(_)) => {
                log::warn!("socket {} is too slow; disconnecting it", t.id);
                t.control.do_send(Disconnect {
                    code: ErrorCode::SlowClient,
                    message: "This tab fell too far behind and was disconnected; it reconnects and catches up.".into(),
                });
                false
            }
            Err(SendError::Closed(_)) => false,
        });
    }

    /// Send an event to one tab only (an answer to something it sent).
    pub fn send_to(&self, id: u64, event: &ServerEvent) {
        if let (Some(tab), Some(frame)) = (self.tabs.iter().find(|t| t.id == id), frame(event)) {
            let _ = tab.outbound.try_send(frame);
        }
    }

    /// Close every tab with a final `error` event.
    pub fn close_all(&mut self, code: ErrorCode, message: &str) {
        for t in self.tabs.drain(..) {
            t.control.do_send(Disconnect {
                code,
                message: message.to_string(),
            });
        }
    }
}

/// The first frames of a tab that attaches: sent with `do_send`, bounded by
/// their count, since they may exceed a small outbound queue.
pub fn send_first_frames(outbound: &Recipient<Outbound>, events: &[ServerEvent]) {
    for event in events {
        if let Some(frame) = frame(event) {
            outbound.do_send(frame);
        }
    }
}
