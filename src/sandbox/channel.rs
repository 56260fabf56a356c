//! The host's end of the channel to a container's resident exec agent
//! (`sandbox-agent/`, wire protocol v1 in its README).
//!
//! One long-lived `docker exec -i -u 0:0 <container> /usr/local/lib/ironclaw/agent`
//! per running container. Its stdin carries the host's frames (RUN a call,
//! KILL a call), its stdout the agent's (READY, output chunks, EXIT,
//! REFUSED, HEARTBEAT); the engine is involved once per container, not once
//! per command. Every call registers a queue under a call number; the
//! reader task hands each frame to its call's queue.
//!
//! The channel is *lost* when the exec's stream ends (the agent died, the
//! container stopped, the engine went away) or when no frame, heartbeats
//! included, arrived for [`SILENCE_LIMIT`] (the agent is wedged or frozen).
//! Every call still waiting then gets [`Event::Lost`]; the container
//! decides what to do (restart it: the host's watchdog).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::Docker;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::container::container_error;
use super::SandboxError;
use crate::protocol::Tool;

/// Where `make sandbox-image` puts the agent in the image.
pub const AGENT_PATH: &str = "/usr/local/lib/ironclaw/agent";

/// The wire protocol this host speaks (image label `ironclaw.agent`).
pub const AGENT_PROTOCOL: u32 = 1;

/// The agent sends a heartbeat every second; this much silence means it is
/// wedged (or frozen) and the container is restarted.
pub(super) const SILENCE_LIMIT: Duration = Duration::from_secs(5);

/// How long the agent gets to say READY after its exec started.
const READY_WAIT: Duration = Duration::from_secs(10);

/// Largest frame either side sends (the agent refuses more too).
const MAX_FRAME: usize = 4 * 1024 * 1024;

/// What the agent reports about one call.
#[derive(Debug)]
pub(super) enum Event {
    /// The agent forked the call's keeper: from now on it may have run.
    Started,
    Stdout(Bytes),
    Stderr(Bytes),
    Exit {
        code: i32,
        timed_out: bool,
        cancelled: bool,
    },
    /// The call did not start; why.
    Refused(String),
    /// The channel broke before the call ended (see the module docs).
    Lost,
}

/// A call to start: what RUN carries.
pub(super) struct Run<'a> {
    pub tool: Tool,
    pub timeout: Duration,
    pub grace: Duration,
    /// File stem under `/tmp/.ironclaw` (`[0-9a-z]`, 1..=32).
    pub stem: &'a str,
    /// (SHA-256, workspace-relative path) of every file the approval read.
    pub checks: Vec<([u8; 32], &'a str)>,
    pub code: &'a [u8],
}

/// A frame from the agent.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    Ready { version: u32, pid: u32 },
    Stdout(u32, Bytes),
    Stderr(u32, Bytes),
    Exit { call: u32, code: i32, flags: u8 },
    Heartbeat,
    Refused(u32, String),
    Started(u32),
}

fn encode_run(call: u32, run: &Run<'_>) -> Bytes {
    let mut body = BytesMut::with_capacity(64 + run.code.len());
    body.put_u8(b'R');
    body.put_u32(call);
    body.put_u8(match run.tool {
        Tool::Shell => 0,
        Tool::Python => 1,
    });
    body.put_u64(u64::try_from(run.timeout.as_millis()).unwrap_or(u64::MAX));
    body.put_u64(u64::try_from(run.grace.as_millis()).unwrap_or(u64::MAX));
    put_short(&mut body, run.stem.as_bytes());
    body.put_u16(u16::try_from(run.checks.len()).unwrap_or(u16::MAX));
    for (sha, path) in run.checks.iter().take(usize::from(u16::MAX)) {
        body.put_slice(sha);
        put_short(&mut body, path.as_bytes());
    }
    body.put_slice(run.code);
    framed(body)
}

fn encode_kill(call: u32) -> Bytes {
    let mut body = BytesMut::with_capacity(5);
    body.put_u8(b'K');
    body.put_u32(call);
    framed(body)
}

/// A byte string with a u16 length; longer ones are cut (paths and stems
/// are far shorter).
fn put_short(buf: &mut BytesMut, bytes: &[u8]) {
    let len = bytes.len().min(usize::from(u16::MAX));
    buf.put_u16(len as u16);
    buf.put_slice(&bytes[..len]);
}

fn framed(body: BytesMut) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + body.len());
    out.put_u32(u32::try_from(body.len()).unwrap_or(u32::MAX));
    out.put_slice(&body);
    out.freeze()
}

/// Takes one whole frame off the front of `buf`: `Ok(None)` while it is
/// incomplete, an error when the stream cannot be a v1 agent's.
fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, String> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(format!("frame length {len}"));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    buf.advance(4);
    let mut body = buf.split_to(len).freeze();
    let kind = body.get_u8();
    let need = |body: &Bytes, n: usize| {
        if body.len() < n {
            Err(format!("short '{}' frame", kind as char))
        } else {
            Ok(())
        }
    };
    let frame = match kind {
        b'Y' => {
            need(&body, 8)?;
            Frame::Ready {
                version: body.get_u32(),
                pid: body.get_u32(),
            }
        }
        b'O' | b'E' => {
            need(&body, 4)?;
            let call = body.get_u32();
            if kind == b'O' {
                Frame::Stdout(call, body)
            } else {
                Frame::Stderr(call, body)
            }
        }
        b'X' => {
            need(&body, 17)?;
            Frame::Exit {
                call: body.get_u32(),
                code: body.get_i32(),
                flags: body.get_u8(),
            }
        }
        b'H' => Frame::Heartbeat,
        b'S' => {
            need(&body, 4)?;
            Frame::Started(body.get_u32())
        }
        b'F' => {
            need(&body, 4)?;
            let call = body.get_u32();
            Frame::Refused(call, String::from_utf8_lossy(&body).into_owned())
        }
        other => return Err(format!("unknown frame type {other}")),
    };
    Ok(Some(frame))
}

/// A live channel to one container's agent. `Send`, so the warm pool can
/// open it before any session exists and hand it over with the container.
#[derive(Debug)]
pub struct Channel {
    /// Frames to the agent, written in order by the writer task.
    frames: mpsc::UnboundedSender<Bytes>,
    calls: Mutex<HashMap<u32, mpsc::UnboundedSender<Event>>>,
    next_call: AtomicU32,
    lost: AtomicBool,
    /// The agent's pid inside the container (tests and logs).
    pub(super) agent_pid: u32,
    /// Which of its container's channels this is (set by the container).
    generation: AtomicU64,
    /// Becomes true when the exec's stream has ended.
    ended: tokio::sync::watch::Receiver<bool>,
}

impl Channel {
    /// Starts the agent in the running container `name` and waits for its
    /// READY.
    pub(super) async fn open(
        docker: &Docker,
        name: &str,
        image: &str,
    ) -> Result<Arc<Channel>, SandboxError> {
        let exec = docker
            .create_exec(
                name,
                CreateExecOptions {
                    cmd: Some(vec![AGENT_PATH.to_string()]),
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(false),
                    user: Some("0:0".to_string()),
                    working_dir: Some("/".to_string()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| container_error(name, e))?;
        let started = docker
            .start_exec(
                &exec.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: false,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(|e| container_error(name, e))?;
        let StartExecResults::Attached {
            mut output,
            mut input,
        } = started
        else {
            return Err(SandboxError::ExecFailed {
                detail: "the engine did not attach to the exec agent".to_string(),
            });
        };

        // READY first; anything the agent prints on stderr before it (an
        // image without the agent, a missing capability) is the reason.
        let mut buf = BytesMut::new();
        let mut complaint = String::new();
        let ready = tokio::time::timeout(READY_WAIT, async {
            while let Some(item) = output.next().await {
                match item {
                    Ok(LogOutput::StdOut { message }) => {
                        buf.extend_from_slice(&message);
                        match decode(&mut buf) {
                            Ok(Some(Frame::Ready { version, pid })) => return Ok((version, pid)),
                            Ok(Some(other)) => return Err(format!("unexpected {other:?}")),
                            Ok(None) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(LogOutput::StdErr { message }) => {
                        complaint.push_str(&String::from_utf8_lossy(&message))
                    }
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            Err("it exited".to_string())
        })
        .await;
        let (version, pid) = match ready {
            Ok(Ok(ready)) => ready,
            Ok(Err(why)) => return Err(agent_failed(&why, &complaint)),
            Err(_) => return Err(agent_failed("it did not answer", &complaint)),
        };
        if version != AGENT_PROTOCOL {
            return Err(SandboxError::ImageOutdated {
                image: image.to_string(),
            });
        }

        let (frames, mut outgoing) = mpsc::unbounded_channel::<Bytes>();
        let (end, ended) = tokio::sync::watch::channel(false);
        let channel = Arc::new(Channel {
            frames,
            calls: Mutex::new(HashMap::new()),
            next_call: AtomicU32::new(1),
            lost: AtomicBool::new(false),
            agent_pid: pid,
            generation: AtomicU64::new(0),
            ended,
        });
        let session = name.to_string();
        tokio::spawn(async move {
            // An empty frame is `close`'s: the agent's stdin ends.
            while let Some(frame) = outgoing.recv().await {
                if frame.is_empty() || input.write_all(&frame).await.is_err() {
                    break;
                }
            }
            let _ = input.shutdown().await;
        });
        let reader = Arc::downgrade(&channel);
        tokio::spawn(async move {
            let _end = EndOnDrop(end);
            let why = loop {
                let item = match tokio::time::timeout(SILENCE_LIMIT, output.next()).await {
                    Err(_) => break "no heartbeat from the exec agent".to_string(),
                    Ok(None) => break "the exec agent's stream ended".to_string(),
                    Ok(Some(Err(e))) => break format!("the exec agent's stream broke: {e}"),
                    Ok(Some(Ok(item))) => item,
                };
                let Some(channel) = reader.upgrade() else {
                    return;
                };
                match item {
                    LogOutput::StdOut { message } => {
                        buf.extend_from_slice(&message);
                        let mut broken = None;
                        loop {
                            match decode(&mut buf) {
                                Ok(Some(frame)) => channel.dispatch(frame),
                                Ok(None) => break,
                                Err(e) => {
                                    broken = Some(format!("the exec agent sent garbage ({e})"));
                                    break;
                                }
                            }
                        }
                        if let Some(why) = broken {
                            break why;
                        }
                    }
                    LogOutput::StdErr { message } => log::warn!(
                        "container {session}: exec agent: {}",
                        String::from_utf8_lossy(&message).trim_end()
                    ),
                    _ => {}
                }
            };
            if let Some(channel) = reader.upgrade() {
                if !channel.is_lost() {
                    log::warn!("container {session}: {why}");
                }
                channel.lose();
            }
        });
        Ok(channel)
    }

    fn dispatch(&self, frame: Frame) {
        let (call, event, last) = match frame {
            Frame::Heartbeat | Frame::Ready { .. } => return,
            Frame::Started(call) => (call, Event::Started, false),
            Frame::Stdout(call, bytes) => (call, Event::Stdout(bytes), false),
            Frame::Stderr(call, bytes) => (call, Event::Stderr(bytes), false),
            Frame::Exit { call, code, flags } => (
                call,
                Event::Exit {
                    code,
                    timed_out: flags & 1 != 0,
                    cancelled: flags & 2 != 0,
                },
                true,
            ),
            Frame::Refused(call, why) => (call, Event::Refused(why), true),
        };
        let mut calls = self.calls();
        if let Some(queue) = calls.get(&call) {
            let _ = queue.send(event);
        }
        if last {
            calls.remove(&call);
        }
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<u32, mpsc::UnboundedSender<Event>>> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends the agent's stdin, so it kills what it runs and exits, and waits
    /// up to `within` for its exec to end. Called before the container is
    /// stopped, restarted or removed: the engine (20.10) can hang removing
    /// a container whose exec still has a client attached to its stdin.
    pub(super) async fn close(&self, within: Duration) {
        self.lose();
        let _ = self.frames.send(Bytes::new());
        let mut ended = self.ended.clone();
        let _ = tokio::time::timeout(within, ended.wait_for(|ended| *ended)).await;
    }

    /// Marks the channel lost and tells every waiting call.
    pub(super) fn lose(&self) {
        self.lost.store(true, Ordering::SeqCst);
        for (_, queue) in self.calls().drain() {
            let _ = queue.send(Event::Lost);
        }
    }

    pub(super) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub(super) fn set_generation(&self, generation: u64) {
        self.generation.store(generation, Ordering::SeqCst);
    }

    /// Starts a call; its events arrive on the returned queue, which ends
    /// with `Exit`, `Refused` or `Lost`.
    pub(super) fn run(&self, run: &Run<'_>) -> (u32, mpsc::UnboundedReceiver<Event>) {
        let call = self.next_call.fetch_add(1, Ordering::SeqCst).max(1);
        let (tx, rx) = mpsc::unbounded_channel();
        // Registered before the frame goes out, so no answer can miss it.
        self.calls().insert(call, tx);
        if self.is_lost() || self.frames.send(encode_run(call, run)).is_err() {
            if let Some(tx) = self.calls().remove(&call) {
                let _ = tx.send(Event::Lost);
            }
        }
        (call, rx)
    }

    /// Kills a call now (its EXIT follows).
    pub(super) fn kill(&self, call: u32) {
        let _ = self.frames.send(encode_kill(call));
    }
}

/// Says the exec's stream has ended however the reader task ends.
struct EndOnDrop(tokio::sync::watch::Sender<bool>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(true);
    }
}

fn agent_failed(why: &str, complaint: &str) -> SandboxError {
    let complaint = complaint.trim();
    if complaint.contains("no such file") || complaint.contains("not found") {
        return SandboxError::ExecFailed {
            detail: format!(
                "the sandbox image has no exec agent at {AGENT_PATH}; run `make sandbox-image`"
            ),
        };
    }
    let detail = if complaint.is_empty() {
        format!("the exec agent did not start: {why}")
    } else {
        format!("the exec agent did not start: {why}: {complaint}")
    };
    SandboxError::ExecFailed { detail }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn frame(kind: u8, body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_u32(1 + body.len() as u32);
        b.put_u8(kind);
        b.put_slice(body);
        b
    }

    #[test]
    fn frames_are_decoded_whole_and_only_whole() {
        let mut exit = Vec::new();
        exit.extend_from_slice(&7u32.to_be_bytes());
        exit.extend_from_slice(&(-1i32).to_be_bytes());
        exit.push(3);
        exit.extend_from_slice(&1234u64.to_be_bytes());
        let mut all = BytesMut::new();
        all.extend_from_slice(&frame(b'Y', &[0, 0, 0, 1, 0, 0, 0, 42]));
        all.extend_from_slice(&frame(b'O', &[0, 0, 0, 7, b'h', b'i']));
        all.extend_from_slice(&frame(b'H', &[0, 0, 0, 1]));
        all.extend_from_slice(&frame(b'X', &exit));
        // Fed one byte at a time, the same frames come out.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for byte in all.iter() {
            buf.put_u8(*byte);
            while let Some(f) = decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(
            got,
            vec![
                Frame::Ready {
                    version: 1,
                    pid: 42
                },
                Frame::Stdout(7, Bytes::from_static(b"hi")),
                Frame::Heartbeat,
                Frame::Exit {
                    call: 7,
                    code: -1,
                    flags: 3
                },
            ]
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn malformed_frames_are_errors() {
        let mut zero = BytesMut::from(&[0u8, 0, 0, 0][..]);
        assert!(decode(&mut zero).is_err());
        let mut huge = BytesMut::from(&[0xffu8, 0, 0, 0][..]);
        assert!(decode(&mut huge).is_err());
        let mut short = frame(b'X', &[0, 0, 0, 1]);
        assert!(decode(&mut short).is_err());
        let mut unknown = frame(b'?', &[]);
        assert!(decode(&mut unknown).is_err());
    }

    #[test]
    fn run_frames_carry_the_call_in_the_agreed_layout() {
        let sha = [0xabu8; 32];
        let run = Run {
            tool: Tool::Python,
            timeout: Duration::from_millis(1500),
            grace: Duration::from_secs(2),
            stem: "ab12",
            checks: vec![(sha, "a.py")],
            code: b"print(1)",
        };
        let f = encode_run(9, &run);
        let mut want = BytesMut::new();
        want.put_u8(b'R');
        want.put_u32(9);
        want.put_u8(1);
        want.put_u64(1500);
        want.put_u64(2000);
        want.put_u16(4);
        want.put_slice(b"ab12");
        want.put_u16(1);
        want.put_slice(&sha);
        want.put_u16(4);
        want.put_slice(b"a.py");
        want.put_slice(b"print(1)");
        assert_eq!(&f[..4], &(want.len() as u32).to_be_bytes());
        assert_eq!(&f[4..], &want[..]);
        assert_eq!(&encode_kill(5)[..], &[0, 0, 0, 5, b'K', 0, 0, 0, 5]);
    }
}
