//! The wire protocol between the host and the agent (version 1): frame
//! layouts, encoding and decoding. Pure: no I/O happens here.
//!
//! Every frame is a `u32` big-endian length N, then N bytes: one type byte and
//! the body. All integers are big-endian.
//!
//! | dir | type | body |
//! |-----|------|------|
//! | host → agent | `R` RUN | `call u32`, `tool u8` (0 shell, 1 python), `timeout_ms u64`, `grace_ms u64`, `stem_len u16` + stem, `n_checks u16` + n × (`sha256 [u8; 32]`, `path_len u16` + path), code (rest of the frame) |
//! | host → agent | `K` KILL | `call u32` |
//! | agent → host | `Y` READY | `version u32`, `pid u32` |
//! | agent → host | `O` STDOUT | `call u32`, bytes (1..=64 KiB) |
//! | agent → host | `E` STDERR | `call u32`, bytes (1..=64 KiB) |
//! | agent → host | `X` EXIT | `call u32`, `code i32`, `flags u8` (bit0 timed out, bit1 cancelled), `duration_ms u64` |
//! | agent → host | `H` HEARTBEAT | `running u32` |
//! | agent → host | `F` REFUSED | `call u32`, UTF-8 message |
//!
//! Both directions can be encoded and decoded, so the host side (and the
//! integration tests) use the same code as the agent.

use std::fmt;

/// Protocol version sent in READY (and the image label `ironclaw.agent`).
pub const VERSION: u32 = 1;

/// Largest frame length (type byte + body). A RUN carries the whole program,
/// and a model-written program is far below this; anything bigger is a
/// confused or hostile peer, not a real request.
pub const MAX_FRAME_LEN: usize = 4 << 20;

/// Largest STDOUT/STDERR chunk: one pipe read, forwarded as is.
pub const MAX_OUTPUT_CHUNK: usize = 64 << 10;

/// Longest staged-file stem; the host sends a short random name.
pub const MAX_STEM_LEN: usize = 32;

/// Size of the length prefix in front of every frame.
pub const LEN_PREFIX: usize = 4;

/// EXIT flag bit: the call ran past its timeout.
pub const FLAG_TIMED_OUT: u8 = 1 << 0;
/// EXIT flag bit: the host cancelled the call with KILL.
pub const FLAG_CANCELLED: u8 = 1 << 1;

const TYPE_RUN: u8 = b'R';
const TYPE_KILL: u8 = b'K';
const TYPE_READY: u8 = b'Y';
const TYPE_STDOUT: u8 = b'O';
const TYPE_STDERR: u8 = b'E';
const TYPE_EXIT: u8 = b'X';
const TYPE_HEARTBEAT: u8 = b'H';
const TYPE_REFUSED: u8 = b'F';
const TYPE_STARTED: u8 = b'S';

/// Which interpreter runs a call's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `bash --noprofile --norc <file>`, file `<stem>.sh`.
    Shell,
    /// `python3 -c <launcher> <file>`, file `<stem>.py`.
    Python,
}

impl Tool {
    fn from_byte(byte: u8) -> Result<Tool, ProtocolError> {
        match byte {
            0 => Ok(Tool::Shell),
            1 => Ok(Tool::Python),
            other => Err(ProtocolError::BadTool(other)),
        }
    }

    fn to_byte(self) -> u8 {
        match self {
            Tool::Shell => 0,
            Tool::Python => 1,
        }
    }

    /// Extension of the staged file (without the dot).
    pub fn extension(self) -> &'static str {
        match self {
            Tool::Shell => "sh",
            Tool::Python => "py",
        }
    }
}

/// A file the approved command depends on: it must still hash to `sha256`
/// when the program starts, or the call does not run (exit 126).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// SHA-256 of the file's content as it was approved.
    pub sha256: [u8; 32],
    /// Workspace-relative path, raw bytes.
    pub path: Vec<u8>,
}

/// A RUN request: start one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Host-chosen call id, unique among the calls running.
    pub call: u32,
    pub tool: Tool,
    /// From the fork to SIGTERM of the program's group.
    pub timeout_ms: u64,
    /// From SIGTERM to the keeper's sweep (exit 137).
    pub grace_ms: u64,
    /// Name of the staged file without extension: `[0-9a-z]{1,32}`.
    pub stem: String,
    pub checks: Vec<Check>,
    /// The program text, any bytes.
    pub code: Vec<u8>,
}

/// A frame from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Run(Run),
    /// Cancel a call now; an unknown id is ignored.
    Kill {
        call: u32,
    },
}

/// How a call ended, as EXIT reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub call: u32,
    /// 124 timed out, 137 escalated or cancelled, else the program's status
    /// (exit code or 128 + signal).
    pub code: i32,
    pub timed_out: bool,
    pub cancelled: bool,
    /// From the keeper's fork to the end of the call.
    pub duration_ms: u64,
}

/// A frame from the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// First frame, once.
    Ready {
        version: u32,
        pid: u32,
    },
    Stdout {
        call: u32,
        bytes: Vec<u8>,
    },
    Stderr {
        call: u32,
        bytes: Vec<u8>,
    },
    Exit(Exit),
    /// Sent every second from the main loop.
    Heartbeat {
        running: u32,
    },
    /// The call did not start; no EXIT follows.
    Refused {
        call: u32,
        message: String,
    },
    /// The call's keeper exists: from here on the program may run, so a
    /// host that loses the channel must not start the call again.
    Started {
        call: u32,
    },
}

/// Why a frame (or the stream of frames) is not valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The length prefix is 0 or above [`MAX_FRAME_LEN`].
    BadLength(u32),
    /// The body ended before the named field.
    Truncated(&'static str),
    /// Bytes left over after a fixed-size body.
    TrailingBytes(usize),
    UnknownType(u8),
    BadTool(u8),
    /// The stem is empty, too long or not `[0-9a-z]`.
    BadStem,
    /// An output chunk is empty or longer than [`MAX_OUTPUT_CHUNK`].
    BadChunk(usize),
    /// A REFUSED message is not UTF-8.
    BadUtf8,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::BadLength(n) => {
                write!(f, "frame length {n} is outside 1..={MAX_FRAME_LEN}")
            }
            ProtocolError::Truncated(field) => write!(f, "frame ends before its {field}"),
            ProtocolError::TrailingBytes(n) => {
                write!(f, "{n} unexpected bytes at the end of a frame")
            }
            ProtocolError::UnknownType(t) => write!(f, "unknown frame type 0x{t:02x}"),
            ProtocolError::BadTool(t) => write!(f, "unknown tool {t} (0 = shell, 1 = python)"),
            ProtocolError::BadStem => {
                write!(f, "stem must be 1..={MAX_STEM_LEN} chars of [0-9a-z]")
            }
            ProtocolError::BadChunk(n) => {
                write!(
                    f,
                    "output chunk of {n} bytes is outside 1..={MAX_OUTPUT_CHUNK}"
                )
            }
            ProtocolError::BadUtf8 => write!(f, "message is not UTF-8"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Splits a byte stream into frames. Bytes arrive in any pieces; a frame is
/// returned once all of it is there. The length is checked as soon as its
/// four bytes are in, so a bad length is an error before its body arrives.
#[derive(Debug, Default)]
pub struct FrameBuffer {
    buf: Vec<u8>,
}

impl FrameBuffer {
    pub fn new() -> FrameBuffer {
        FrameBuffer::default()
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// True when a frame has started but not finished (an EOF now would cut
    /// it short).
    pub fn is_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The next complete frame's type byte + body, if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, ProtocolError> {
        let Some(prefix) = self.buf.first_chunk::<LEN_PREFIX>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix);
        if len == 0 || len as usize > MAX_FRAME_LEN {
            return Err(ProtocolError::BadLength(len));
        }
        let end = LEN_PREFIX + len as usize;
        if self.buf.len() < end {
            return Ok(None);
        }
        let frame = self.buf[LEN_PREFIX..end].to_vec();
        self.buf.drain(..end);
        Ok(Some(frame))
    }
}

/// Reads fields off the front of a frame body.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], ProtocolError> {
        if self.rest.len() < n {
            return Err(ProtocolError::Truncated(field));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], ProtocolError> {
        let bytes = self.take(N, field)?;
        let mut array = [0u8; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, ProtocolError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, ProtocolError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, ProtocolError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, ProtocolError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, ProtocolError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// `len u16` then that many bytes.
    fn short_bytes(&mut self, field: &'static str) -> Result<&'a [u8], ProtocolError> {
        let len = self.u16(field)?;
        self.take(len as usize, field)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    fn end(self) -> Result<(), ProtocolError> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(ProtocolError::TrailingBytes(n)),
        }
    }
}

/// Splits a frame (type byte + body) into its type and a field reader.
fn open(frame: &[u8]) -> Result<(u8, Fields<'_>), ProtocolError> {
    match frame.split_first() {
        Some((&kind, body)) => Ok((kind, Fields { rest: body })),
        // FrameBuffer never yields an empty frame; a caller handing one in
        // is handled like a zero length prefix.
        None => Err(ProtocolError::BadLength(0)),
    }
}

fn valid_stem(stem: &[u8]) -> bool {
    (1..=MAX_STEM_LEN).contains(&stem.len())
        && stem
            .iter()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

fn output_chunk(bytes: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    if bytes.is_empty() || bytes.len() > MAX_OUTPUT_CHUNK {
        return Err(ProtocolError::BadChunk(bytes.len()));
    }
    Ok(bytes.to_vec())
}

/// Builds a whole frame (length prefix included) around `body`, which
/// starts with the type byte.
fn framed(body: Vec<u8>) -> Vec<u8> {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut frame = Vec::with_capacity(LEN_PREFIX + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend(body);
    frame
}

/// Appends `len u16` + bytes; longer inputs are cut at `u16::MAX` bytes
/// (only a host bug could produce them: paths and stems are short).
fn push_short_bytes(body: &mut Vec<u8>, bytes: &[u8]) {
    let bytes = &bytes[..bytes.len().min(u16::MAX as usize)];
    body.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    body.extend_from_slice(bytes);
}

impl Request {
    /// Parses a frame's type byte + body.
    pub fn decode(frame: &[u8]) -> Result<Request, ProtocolError> {
        let (kind, mut fields) = open(frame)?;
        match kind {
            TYPE_RUN => {
                let call = fields.u32("call id")?;
                let tool = Tool::from_byte(fields.u8("tool")?)?;
                let timeout_ms = fields.u64("timeout")?;
                let grace_ms = fields.u64("grace")?;
                let stem = fields.short_bytes("stem")?;
                if !valid_stem(stem) {
                    return Err(ProtocolError::BadStem);
                }
                // valid_stem admits only ASCII.
                let stem = String::from_utf8_lossy(stem).into_owned();
                let n_checks = fields.u16("check count")?;
                let checks = (0..n_checks)
                    .map(|_| {
                        let sha256 = fields.array::<32>("check hash")?;
                        let path = fields.short_bytes("check path")?.to_vec();
                        Ok(Check { sha256, path })
                    })
                    .collect::<Result<Vec<_>, ProtocolError>>()?;
                let code = fields.rest().to_vec();
                Ok(Request::Run(Run {
                    call,
                    tool,
                    timeout_ms,
                    grace_ms,
                    stem,
                    checks,
                    code,
                }))
            }
            TYPE_KILL => {
                let call = fields.u32("call id")?;
                fields.end()?;
                Ok(Request::Kill { call })
            }
            other => Err(ProtocolError::UnknownType(other)),
        }
    }

    /// The whole frame, length prefix included.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        match self {
            Request::Run(run) => {
                body.push(TYPE_RUN);
                body.extend_from_slice(&run.call.to_be_bytes());
                body.push(run.tool.to_byte());
                body.extend_from_slice(&run.timeout_ms.to_be_bytes());
                body.extend_from_slice(&run.grace_ms.to_be_bytes());
                push_short_bytes(&mut body, run.stem.as_bytes());
                let n_checks = run.checks.len().min(u16::MAX as usize);
                body.extend_from_slice(&(n_checks as u16).to_be_bytes());
                for check in &run.checks[..n_checks] {
                    body.extend_from_slice(&check.sha256);
                    push_short_bytes(&mut body, &check.path);
                }
                body.extend_from_slice(&run.code);
            }
            Request::Kill { call } => {
                body.push(TYPE_KILL);
                body.extend_from_slice(&call.to_be_bytes());
            }
        }
        framed(body)
    }
}

impl Reply {
    /// Parses a frame's type byte + body.
    pub fn decode(frame: &[u8]) -> Result<Reply, ProtocolError> {
        let (kind, mut fields) = open(frame)?;
        let reply = match kind {
            TYPE_READY => {
                let version = fields.u32("version")?;
                let pid = fields.u32("pid")?;
                Reply::Ready { version, pid }
            }
            TYPE_STDOUT => {
                let call = fields.u32("call id")?;
                Reply::Stdout {
                    call,
                    bytes: output_chunk(fields.rest())?,
                }
            }
            TYPE_STDERR => {
                let call = fields.u32("call id")?;
                Reply::Stderr {
                    call,
                    bytes: output_chunk(fields.rest())?,
                }
            }
            TYPE_EXIT => {
                let call = fields.u32("call id")?;
                let code = fields.i32("exit code")?;
                let flags = fields.u8("flags")?;
                let duration_ms = fields.u64("duration")?;
                Reply::Exit(Exit {
                    call,
                    code,
                    timed_out: flags & FLAG_TIMED_OUT != 0,
                    cancelled: flags & FLAG_CANCELLED != 0,
                    duration_ms,
                })
            }
            TYPE_HEARTBEAT => Reply::Heartbeat {
                running: fields.u32("running count")?,
            },
            TYPE_REFUSED => {
                let call = fields.u32("call id")?;
                let message = String::from_utf8(fields.rest().to_vec())
                    .map_err(|_| ProtocolError::BadUtf8)?;
                Reply::Refused { call, message }
            }
            TYPE_STARTED => Reply::Started {
                call: fields.u32("call id")?,
            },
            other => return Err(ProtocolError::UnknownType(other)),
        };
        fields.end()?;
        Ok(reply)
    }

    /// The whole frame, length prefix included.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        match self {
            Reply::Ready { version, pid } => {
                body.push(TYPE_READY);
                body.extend_from_slice(&version.to_be_bytes());
                body.extend_from_slice(&pid.to_be_bytes());
            }
            Reply::Stdout { call, bytes } => {
                body.push(TYPE_STDOUT);
                body.extend_from_slice(&call.to_be_bytes());
                body.extend_from_slice(bytes);
            }
            Reply::Stderr { call, bytes } => {
                body.push(TYPE_STDERR);
                body.extend_from_slice(&call.to_be_bytes());
                body.extend_from_slice(bytes);
            }
            Reply::Exit(exit) => {
                let mut flags = 0;
                if exit.timed_out {
                    flags |= FLAG_TIMED_OUT;
                }
                if exit.cancelled {
                    flags |= FLAG_CANCELLED;
                }
                body.push(TYPE_EXIT);
                body.extend_from_slice(&exit.call.to_be_bytes());
                body.extend_from_slice(&exit.code.to_be_bytes());
                body.push(flags);
                body.extend_from_slice(&exit.duration_ms.to_be_bytes());
            }
            Reply::Heartbeat { running } => {
                body.push(TYPE_HEARTBEAT);
                body.extend_from_slice(&running.to_be_bytes());
            }
            Reply::Refused { call, message } => {
                body.push(TYPE_REFUSED);
                body.extend_from_slice(&call.to_be_bytes());
                body.extend_from_slice(message.as_bytes());
            }
            Reply::Started { call } => {
                body.push(TYPE_STARTED);
                body.extend_from_slice(&call.to_be_bytes());
            }
        }
        framed(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_run() -> Run {
        Run {
            call: 7,
            tool: Tool::Python,
            timeout_ms: 30_000,
            grace_ms: 2_000,
            stem: "ab12cd34".into(),
            checks: vec![
                Check {
                    sha256: [0xaa; 32],
                    path: b"data/in.csv".to_vec(),
                },
                Check {
                    sha256: [0x01; 32],
                    path: b"caf\xc3\xa9 \xff.txt".to_vec(),
                },
            ],
            code: b"print('hi')\n\0\xff".to_vec(),
        }
    }

    /// Strips the length prefix after checking it.
    fn body(frame: &[u8]) -> &[u8] {
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - LEN_PREFIX);
        &frame[LEN_PREFIX..]
    }

    #[test]
    fn requests_round_trip() {
        let no_checks = Run {
            checks: vec![],
            code: vec![],
            tool: Tool::Shell,
            ..sample_run()
        };
        for request in [
            Request::Run(sample_run()),
            Request::Run(no_checks),
            Request::Kill { call: u32::MAX },
        ] {
            let frame = request.encode();
            assert_eq!(Request::decode(body(&frame)), Ok(request));
        }
    }

    #[test]
    fn run_layout_is_as_specified() {
        let run = Run {
            call: 0x0102_0304,
            tool: Tool::Shell,
            timeout_ms: 5,
            grace_ms: 6,
            stem: "x9".into(),
            checks: vec![Check {
                sha256: [7; 32],
                path: b"p".to_vec(),
            }],
            code: b"ls".to_vec(),
        };
        let mut want = vec![
            b'R', 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 6, 0, 2, b'x', b'9',
            0, 1,
        ];
        want.extend([7; 32]);
        want.extend([0, 1, b'p', b'l', b's']);
        assert_eq!(body(&Request::Run(run).encode()), want);
        assert_eq!(
            body(&Request::Kill { call: 9 }.encode()),
            [b'K', 0, 0, 0, 9]
        );
    }

    #[test]
    fn replies_round_trip() {
        let replies = [
            Reply::Ready {
                version: VERSION,
                pid: 42,
            },
            Reply::Stdout {
                call: 1,
                bytes: b"out\n".to_vec(),
            },
            Reply::Stderr {
                call: 1,
                bytes: vec![0xff; MAX_OUTPUT_CHUNK],
            },
            Reply::Exit(Exit {
                call: 3,
                code: -1,
                timed_out: true,
                cancelled: false,
                duration_ms: 1234,
            }),
            Reply::Exit(Exit {
                call: 3,
                code: 137,
                timed_out: false,
                cancelled: true,
                duration_ms: 0,
            }),
            Reply::Heartbeat { running: 2 },
            Reply::Refused {
                call: 4,
                message: "call 4 is already running".into(),
            },
            Reply::Refused {
                call: 4,
                message: String::new(),
            },
            Reply::Started { call: 9 },
        ];
        for reply in replies {
            let frame = reply.encode();
            assert_eq!(Reply::decode(body(&frame)), Ok(reply));
        }
    }

    #[test]
    fn reply_layouts_are_as_specified() {
        let exit = Reply::Exit(Exit {
            call: 1,
            code: 124,
            timed_out: true,
            cancelled: true,
            duration_ms: 2,
        });
        assert_eq!(
            body(&exit.encode()),
            [b'X', 0, 0, 0, 1, 0, 0, 0, 124, 3, 0, 0, 0, 0, 0, 0, 0, 2]
        );
        let ready = Reply::Ready {
            version: 1,
            pid: 258,
        };
        assert_eq!(body(&ready.encode()), [b'Y', 0, 0, 0, 1, 0, 0, 1, 2]);
        assert_eq!(
            body(&Reply::Heartbeat { running: 0 }.encode()),
            [b'H', 0, 0, 0, 0]
        );
        assert_eq!(
            body(
                &Reply::Stdout {
                    call: 5,
                    bytes: b"a".to_vec()
                }
                .encode()
            ),
            [b'O', 0, 0, 0, 5, b'a']
        );
        assert_eq!(
            body(
                &Reply::Stderr {
                    call: 5,
                    bytes: b"b".to_vec()
                }
                .encode()
            ),
            [b'E', 0, 0, 0, 5, b'b']
        );
        let refused = Reply::Refused {
            call: 5,
            message: "no".into(),
        };
        assert_eq!(body(&refused.encode()), [b'F', 0, 0, 0, 5, b'n', b'o']);
        let started = Reply::Started { call: 5 };
        assert_eq!(body(&started.encode()), [b'S', 0, 0, 0, 5]);
    }

    #[test]
    fn frame_buffer_reassembles_any_split() {
        let mut stream = Request::Run(sample_run()).encode();
        stream.extend(Request::Kill { call: 3 }.encode());
        for piece in [1, 2, 3, 5, 64, stream.len()] {
            let mut buffer = FrameBuffer::new();
            let mut frames = Vec::new();
            for chunk in stream.chunks(piece) {
                buffer.extend(chunk);
                while let Some(frame) = buffer.next_frame().unwrap() {
                    frames.push(Request::decode(&frame).unwrap());
                }
            }
            assert_eq!(
                frames,
                [Request::Run(sample_run()), Request::Kill { call: 3 }],
                "pieces of {piece}"
            );
            assert!(!buffer.is_partial());
        }
    }

    #[test]
    fn frame_buffer_rejects_bad_lengths_before_the_body() {
        let too_long = (MAX_FRAME_LEN as u32 + 1).to_be_bytes();
        for (prefix, len) in [
            ([0, 0, 0, 0], 0),
            (too_long, MAX_FRAME_LEN as u32 + 1),
            ([0xff; 4], u32::MAX),
        ] {
            let mut buffer = FrameBuffer::new();
            buffer.extend(&prefix);
            assert_eq!(buffer.next_frame(), Err(ProtocolError::BadLength(len)));
        }
        // The largest allowed length is fine (and waits for its body).
        let mut buffer = FrameBuffer::new();
        buffer.extend(&(MAX_FRAME_LEN as u32).to_be_bytes());
        assert_eq!(buffer.next_frame(), Ok(None));
        assert!(buffer.is_partial());
        // Three bytes of a prefix are not a frame yet.
        let mut buffer = FrameBuffer::new();
        buffer.extend(&[0, 0, 0]);
        assert_eq!(buffer.next_frame(), Ok(None));
    }

    #[test]
    fn malformed_requests() {
        let run = body(&Request::Run(sample_run()).encode()).to_vec();
        // Body offsets: type 0, call 1..5, tool 5, timeout 6..14, grace
        // 14..22, stem_len 22..24, stem 24..32, n_checks 32..34, first hash
        // 34..66, first path_len 66..68.
        let with = |at: usize, bytes: &[u8]| {
            let mut frame = run.clone();
            frame.splice(at..at + bytes.len(), bytes.iter().copied());
            frame
        };
        let cases: Vec<(Vec<u8>, ProtocolError)> = vec![
            (vec![b'Z', 0, 0, 0, 1], ProtocolError::UnknownType(b'Z')),
            (vec![b'r'], ProtocolError::UnknownType(b'r')),
            (vec![], ProtocolError::BadLength(0)),
            (vec![b'K', 0, 0, 1], ProtocolError::Truncated("call id")),
            (vec![b'K', 0, 0, 0, 1, 0], ProtocolError::TrailingBytes(1)),
            (run[..3].to_vec(), ProtocolError::Truncated("call id")),
            (run[..5].to_vec(), ProtocolError::Truncated("tool")),
            (run[..13].to_vec(), ProtocolError::Truncated("timeout")),
            (run[..21].to_vec(), ProtocolError::Truncated("grace")),
            (run[..23].to_vec(), ProtocolError::Truncated("stem")),
            (run[..30].to_vec(), ProtocolError::Truncated("stem")),
            (run[..33].to_vec(), ProtocolError::Truncated("check count")),
            (run[..60].to_vec(), ProtocolError::Truncated("check hash")),
            (run[..67].to_vec(), ProtocolError::Truncated("check path")),
            (run[..70].to_vec(), ProtocolError::Truncated("check path")),
            // A second check announced but missing.
            (with(32, &[0, 3]), ProtocolError::Truncated("check hash")),
            (with(5, &[2]), ProtocolError::BadTool(2)),
            (with(5, &[0xff]), ProtocolError::BadTool(0xff)),
            (with(24, b"AB12cd34"), ProtocolError::BadStem),
            (with(24, b"ab12cd3."), ProtocolError::BadStem),
            (with(24, b"ab/2cd34"), ProtocolError::BadStem),
            (with(24, b"ab\x002cd34"), ProtocolError::BadStem),
        ];
        for (frame, want) in cases {
            assert_eq!(Request::decode(&frame), Err(want.clone()), "{want}");
        }
    }

    #[test]
    fn stem_rules() {
        let run_with_stem = |stem: &[u8]| {
            let mut frame = vec![b'R', 0, 0, 0, 1, 0];
            frame.extend([0; 16]);
            frame.extend((stem.len() as u16).to_be_bytes());
            frame.extend(stem);
            frame.extend([0, 0]);
            Request::decode(&frame)
        };
        for good in [&b"a"[..], b"0", b"ab12cd34", &[b'z'; MAX_STEM_LEN]] {
            assert!(
                run_with_stem(good).is_ok(),
                "{}",
                String::from_utf8_lossy(good)
            );
        }
        for bad in [
            &b""[..],
            &[b'a'; MAX_STEM_LEN + 1],
            b"a-b",
            b"a b",
            b"\xc3\xa9",
            b"..",
            b"A",
        ] {
            assert_eq!(
                run_with_stem(bad),
                Err(ProtocolError::BadStem),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn malformed_replies() {
        let cases: Vec<(Vec<u8>, ProtocolError)> = vec![
            (vec![b'O', 0, 0, 0, 1], ProtocolError::BadChunk(0)),
            (
                [vec![b'E', 0, 0, 0, 1], vec![0; MAX_OUTPUT_CHUNK + 1]].concat(),
                ProtocolError::BadChunk(MAX_OUTPUT_CHUNK + 1),
            ),
            (
                vec![b'Y', 0, 0, 0, 1, 0, 0, 0],
                ProtocolError::Truncated("pid"),
            ),
            (
                vec![b'Y', 0, 0, 0, 1, 0, 0, 0, 2, 9],
                ProtocolError::TrailingBytes(1),
            ),
            (
                vec![b'X', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
                ProtocolError::Truncated("duration"),
            ),
            (vec![b'H', 0, 0], ProtocolError::Truncated("running count")),
            (vec![b'F', 0, 0, 0, 1, 0xff], ProtocolError::BadUtf8),
            (vec![b'R', 0, 0, 0, 1], ProtocolError::UnknownType(b'R')),
        ];
        for (frame, want) in cases {
            assert_eq!(Reply::decode(&frame), Err(want.clone()), "{want}");
        }
    }
}
