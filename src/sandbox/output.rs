//! The sandbox's pure output handling: bytes from an exec become UTF-8 text
//! that never splits a character ([`Utf8Decoder`]), live [`ExecChunk`]s for
//! the sockets, and the copy kept for the model, capped to its head and tail
//! in bounded memory ([`ModelOutput`]). No I/O here: the exec feeds
//! [`OutputCollector`] whatever the engine delivers.

use actix::Recipient;

use super::ExecChunk;
use crate::protocol::{CallId, OutputStream};

/// Room kept in `output_for_model` for the "[... N bytes omitted ...]"
/// marker, so the result stays within the cap; fits any `usize` N.
const OMISSION_MARKER_RESERVE: usize = 48;

/// Turns a byte stream into UTF-8 text piece by piece, holding back an
/// incomplete multi-byte character until its remaining bytes arrive.
#[derive(Debug, Default)]
struct Utf8Decoder {
    /// At most 3 bytes: the start of a character cut by the last chunk.
    pending: Vec<u8>,
}

impl Utf8Decoder {
    /// Decode `bytes` after what was held back; invalid bytes become U+FFFD.
    fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let buf = std::mem::take(&mut self.pending);
        let mut out = String::with_capacity(buf.len());
        let mut at = 0;
        while at < buf.len() {
            match std::str::from_utf8(&buf[at..]) {
                Ok(s) => {
                    out.push_str(s);
                    at = buf.len();
                }
                Err(e) => {
                    let valid_end = at + e.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&buf[at..valid_end]));
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            at = valid_end + bad;
                        }
                        None => {
                            self.pending = buf[valid_end..].to_vec();
                            at = buf.len();
                        }
                    }
                }
            }
        }
        out
    }

    /// Whatever is still held back at the end of the stream (a cut-off
    /// character), as U+FFFD.
    fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        String::from_utf8_lossy(&rest).into_owned()
    }
}

/// Largest index `<= at` that is a char boundary of `s`.
fn floor_boundary(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Smallest index `>= at` that is a char boundary of `s`.
fn ceil_boundary(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at += 1;
    }
    at
}

/// Output kept for the model: the first and the last bytes of everything,
/// in bounded memory however much the command prints.
#[derive(Debug)]
struct ModelOutput {
    cap: usize,
    head: String,
    /// Once something went past the head, the head takes nothing more, so
    /// output never gets reordered.
    head_closed: bool,
    /// The latest output; trimmed to `cap - cap / 2` bytes when it reaches
    /// twice that, so memory stays within about twice the cap.
    tail: String,
    total: usize,
}

impl ModelOutput {
    fn new(cap: usize) -> Self {
        ModelOutput {
            cap,
            head: String::new(),
            head_closed: false,
            tail: String::new(),
            total: 0,
        }
    }

    fn head_cap(&self) -> usize {
        self.cap / 2
    }

    fn tail_cap(&self) -> usize {
        self.cap - self.cap / 2
    }

    fn push(&mut self, mut s: &str) {
        self.total += s.len();
        if !self.head_closed {
            let room = self.head_cap() - self.head.len();
            let take = floor_boundary(s, room);
            self.head.push_str(&s[..take]);
            s = &s[take..];
            if !s.is_empty() {
                self.head_closed = true;
            }
        }
        if s.is_empty() {
            return;
        }
        self.tail.push_str(s);
        let tail_cap = self.tail_cap();
        if self.tail.len() > 2 * tail_cap.max(1024) {
            let cut = ceil_boundary(&self.tail, self.tail.len() - tail_cap);
            self.tail.drain(..cut);
        }
    }

    fn finish(mut self) -> String {
        if self.total <= self.cap {
            self.head.push_str(&self.tail);
            return self.head;
        }
        let keep_head = self.head_cap().saturating_sub(OMISSION_MARKER_RESERVE / 2);
        let keep_tail = self.tail_cap().saturating_sub(OMISSION_MARKER_RESERVE / 2);
        self.head.truncate(floor_boundary(&self.head, keep_head));
        let cut = ceil_boundary(&self.tail, self.tail.len().saturating_sub(keep_tail));
        let tail = &self.tail[cut..];
        let omitted = self.total - self.head.len() - tail.len();
        format!("{}\n[... {omitted} bytes omitted ...]\n{}", self.head, tail)
    }
}

/// Splits the exec's stream into live [`ExecChunk`]s and the model's copy.
pub(super) struct OutputCollector {
    call_id: CallId,
    output: Recipient<ExecChunk>,
    stdout: Utf8Decoder,
    stderr: Utf8Decoder,
    model: ModelOutput,
}

impl OutputCollector {
    pub(super) fn new(call_id: CallId, output: Recipient<ExecChunk>, cap: usize) -> Self {
        OutputCollector {
            call_id,
            output,
            stdout: Utf8Decoder::default(),
            stderr: Utf8Decoder::default(),
            model: ModelOutput::new(cap),
        }
    }

    /// The next piece of one stream, as the engine delivered it.
    pub(super) fn bytes(&mut self, stream: OutputStream, bytes: &[u8]) {
        let text = match stream {
            OutputStream::Stdout => self.stdout.push(bytes),
            OutputStream::Stderr => self.stderr.push(bytes),
        };
        self.text(stream, text);
    }

    fn text(&mut self, stream: OutputStream, text: String) {
        if text.is_empty() {
            return;
        }
        self.model.push(&text);
        // Never waits on the receiver: the agent may be awaiting this very
        // exec, and the agent's handler only forwards to sockets that have
        // their own bounded queues.
        self.output.do_send(ExecChunk {
            call_id: self.call_id.clone(),
            stream,
            data: text,
        });
    }

    /// The end of the output: sends what the decoders held back and
    /// answers the model's copy.
    pub(super) fn finish(mut self) -> String {
        let out = self.stdout.finish();
        self.text(OutputStream::Stdout, out);
        let err = self.stderr.finish();
        self.text(OutputStream::Stderr, err);
        self.model.finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn utf8_decoder_never_splits_a_character() {
        /// Chunks in, text out per chunk, text at finish.
        type Case = (
            &'static [&'static [u8]],
            &'static [&'static str],
            &'static str,
        );
        let cases: &[Case] = &[
            (&[b"plain"], &["plain"], ""),
            (&[b"a\xc3", b"\xa9b"], &["a", "\u{e9}b"], ""),
            (&[b"\xe2", b"\x82", b"\xac!"], &["", "", "\u{20ac}!"], ""),
            (&[b"\xf0\x9f", b"\x98\x80"], &["", "\u{1f600}"], ""),
            (&[b"bad\xffbyte"], &["bad\u{fffd}byte"], ""),
            (&[b"x\xc3", b"y"], &["x", "\u{fffd}y"], ""),
            (&[b"cut\xe2\x82"], &["cut"], "\u{fffd}"),
            (&[b""], &[""], ""),
        ];
        for (chunks, want, want_end) in cases {
            let mut d = Utf8Decoder::default();
            let got: Vec<String> = chunks.iter().map(|c| d.push(c)).collect();
            assert_eq!(&got, want, "chunks {chunks:?}");
            assert_eq!(d.finish(), *want_end, "end of {chunks:?}");
        }
    }

    #[test]
    fn model_output_keeps_head_and_tail_within_the_cap() {
        // (cap, pushes, expected)
        let cases: &[(usize, &[&str], &str)] = &[
            (100, &["hello ", "world"], "hello world"),
            (11, &["hello ", "world"], "hello world"),
            (0, &[], ""),
        ];
        for (cap, pushes, want) in cases {
            let mut m = ModelOutput::new(*cap);
            for p in *pushes {
                m.push(p);
            }
            assert_eq!(m.finish(), *want);
        }

        let mut m = ModelOutput::new(200);
        let lines: Vec<String> = (0..1000).map(|i| format!("line {i}\n")).collect();
        let total: usize = lines.iter().map(String::len).sum();
        for l in &lines {
            m.push(l);
        }
        let out = m.finish();
        assert!(out.len() <= 200, "{} bytes", out.len());
        assert!(out.starts_with("line 0\nline 1\n"), "{out}");
        assert!(out.ends_with("line 999\n"), "{out}");
        let marker_start = out.find("\n[... ").unwrap();
        let marker_end = out.find(" ...]\n").unwrap() + " ...]\n".len();
        let omitted: usize = out[marker_start + 6..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(omitted, total - marker_start - (out.len() - marker_end));
    }

    #[test]
    fn model_output_cuts_on_character_boundaries_and_keeps_order() {
        // Cap 100: head and tail keep 50 - 24 = 26 bytes each.
        let mut m = ModelOutput::new(100);
        m.push(&"é".repeat(40));
        m.push(&"ü".repeat(500));
        m.push("END");
        let out = m.finish();
        assert!(out.len() <= 100, "{out}");
        assert!(out.starts_with(&"é".repeat(13)), "{out}");
        assert!(out.ends_with(&format!("{}END", "ü".repeat(11))), "{out}");

        // Head cap 5 holds "abcd"; "é" does not fit, so the head closes and
        // the "x" after it cannot jump ahead of it.
        let mut m = ModelOutput::new(10);
        m.push("abcd");
        m.push("é");
        m.push("x");
        assert_eq!(m.finish(), "abcdéx");
    }
}
