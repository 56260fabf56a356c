//! The agent in a real sandbox container, hardened as in production, driven
//! over its real stdin/stdout: every test starts its own container through
//! [`Sandbox::start`] and asserts on whole frames.
//!
//! Needs Docker and the sandbox image (`SANDBOX_IMAGE`, default
//! `ironclaw-sandbox:latest`; `make sandbox-image`). The freshly built
//! binary is bind-mounted over the image's copy, so the image only has to
//! provide bash, python3 and procps.

// A panic is how a test helper reports a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ironclaw_sandbox_agent::protocol::{
    Check, Exit, FrameBuffer, Reply, Request, Run, Tool, MAX_OUTPUT_CHUNK,
};
use sha2::{Digest, Sha256};

/// Where the agent lives in the image (and where the test binary is mounted).
const AGENT_PATH: &str = "/usr/local/lib/ironclaw/agent";

/// Upper bound for anything that should happen promptly; generous because
/// the test machine may be busy compiling.
const PROMPT: Duration = Duration::from_secs(20);

/// Default timeout of a test call: long enough never to fire by accident.
const CALL_TIMEOUT_MS: u64 = 60_000;

fn image() -> String {
    std::env::var("SANDBOX_IMAGE").unwrap_or_else(|_| "ironclaw-sandbox:latest".into())
}

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).output().unwrap_or_else(|err| {
        panic!("the agent's integration tests need the docker CLI and a running daemon: `docker {}` failed: {err}", args[0])
    })
}

/// Fails loudly, once per test, when Docker or the image is missing.
fn require_image() {
    let image = image();
    let out = docker(&["image", "inspect", "--format", "{{.Id}}", &image]);
    assert!(
        out.status.success(),
        "image {image} is missing (build it with `make sandbox-image`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Everything a call sent until its EXIT.
#[derive(Debug)]
struct Outcome {
    stdout: String,
    stderr: String,
    exit: Exit,
    /// Sizes of the STDOUT/STDERR frames, in arrival order.
    chunks: Vec<usize>,
}

/// One container with the agent running in it via `docker exec -i`, the way
/// the server starts it.
struct Sandbox {
    name: String,
    workspace: PathBuf,
    exec: Child,
    stdin: Option<ChildStdin>,
    replies: Receiver<Result<Reply, String>>,
    /// Replies received but not yet asked for.
    pending: Vec<Reply>,
    /// The agent's stderr so far (its diagnostics), for failure messages.
    agent_stderr: Arc<Mutex<String>>,
    /// Collects `agent_stderr`; joined once the agent has exited, so the
    /// text is complete.
    stderr_reader: Option<thread::JoinHandle<()>>,
    /// From READY.
    agent_pid: u32,
}

impl Sandbox {
    fn start() -> Sandbox {
        Sandbox::start_with_env(&[])
    }

    /// `env`: extra `NAME=value` for the container (and so the agent).
    fn start_with_env(env: &[&str]) -> Sandbox {
        require_image();
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "ironclaw-agent-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let workspace = Path::new(env!("CARGO_TARGET_TMPDIR")).join(&name);
        std::fs::create_dir_all(&workspace).expect("create the test workspace");
        // The sandbox user owns /workspace in production. Without root here,
        // a world-writable folder does the same for the tests.
        if std::os::unix::fs::chown(&workspace, Some(1000), Some(1000)).is_err() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&workspace, std::fs::Permissions::from_mode(0o777))
                .expect("chmod workspace");
        }

        // AGENT_BINARY: run the tests against another build, such as the
        // static release binary that goes into the image.
        let binary = std::env::var("AGENT_BINARY")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_ironclaw-agent").to_owned());
        let workspace_mount = format!("{}:/workspace", workspace.display());
        let agent_mount = format!("{binary}:{AGENT_PATH}:ro");
        let mut args = vec![
            "run",
            "--rm",
            "--detach",
            "--name",
            &name,
            "--user",
            "0:0",
            "--cap-drop",
            "ALL",
            "--cap-add",
            "SETUID",
            "--cap-add",
            "SETGID",
            "--cap-add",
            "KILL",
            "--security-opt",
            "no-new-privileges",
            "--read-only",
            "--tmpfs",
            "/tmp:rw,exec,nosuid,nodev,size=64m,mode=1777",
            "--network",
            "none",
            "--init",
            "--pids-limit",
            "128",
            "-v",
            &workspace_mount,
            "-v",
            &agent_mount,
        ];
        for var in env {
            args.extend(["-e", var]);
        }
        let image = image();
        args.extend([image.as_str(), "sleep", "infinity"]);
        let out = docker(&args);
        assert!(
            out.status.success(),
            "docker run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let mut exec = Command::new("docker")
            .args(["exec", "-i", "-u", "0:0", &name, AGENT_PATH])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker exec the agent");
        let stdin = exec.stdin.take();
        let mut stdout = exec.stdout.take().expect("piped stdout");
        let mut stderr = exec.stderr.take().expect("piped stderr");

        let (tx, replies) = mpsc::channel();
        thread::spawn(move || {
            let mut frames = FrameBuffer::new();
            let mut buf = vec![0; 1 << 16];
            loop {
                let n = match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                frames.extend(&buf[..n]);
                loop {
                    let reply = match frames.next_frame() {
                        Ok(None) => break,
                        Ok(Some(frame)) => Reply::decode(&frame).map_err(|err| err.to_string()),
                        Err(err) => Err(err.to_string()),
                    };
                    if tx.send(reply).is_err() {
                        return;
                    }
                }
            }
        });
        let agent_stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&agent_stderr);
        let stderr_reader = thread::spawn(move || {
            let mut text = String::new();
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut buf) {
                text.push_str(&String::from_utf8_lossy(&buf[..n]));
                sink.lock().unwrap().clone_from(&text);
            }
        });

        let mut sandbox = Sandbox {
            name,
            workspace,
            exec,
            stdin,
            replies,
            pending: Vec::new(),
            agent_stderr,
            stderr_reader: Some(stderr_reader),
            agent_pid: 0,
        };
        match sandbox.next_reply(PROMPT) {
            Some(Reply::Ready { version, pid }) => {
                assert_eq!(version, 1);
                sandbox.agent_pid = pid;
            }
            other => panic!(
                "expected READY first, got {other:?}{}",
                sandbox.diagnostics()
            ),
        }
        sandbox
    }

    fn diagnostics(&self) -> String {
        format!(
            "\n--- agent stderr ---\n{}",
            self.agent_stderr.lock().unwrap()
        )
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(bytes)
            .and_then(|()| stdin.flush())
            .expect("write to the agent");
    }

    fn send(&mut self, request: &Request) {
        self.send_raw(&request.encode());
    }

    /// Starts `code` as call `call` with the test defaults.
    fn run(&mut self, call: u32, tool: Tool, code: &str) {
        self.send(&Request::Run(run(call, tool, code)));
    }

    /// The next reply from the agent (pending ones first), or None.
    fn next_reply(&mut self, within: Duration) -> Option<Reply> {
        if !self.pending.is_empty() {
            return Some(self.pending.remove(0));
        }
        self.receive(within)
    }

    fn receive(&mut self, within: Duration) -> Option<Reply> {
        match self.replies.recv_timeout(within) {
            Ok(Ok(reply)) => Some(reply),
            Ok(Err(err)) => panic!("the agent sent a bad frame: {err}{}", self.diagnostics()),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Waits for the first reply that `want` accepts; replies before it stay
    /// pending for later waits.
    fn wait_for(&mut self, within: Duration, what: &str, want: impl Fn(&Reply) -> bool) -> Reply {
        if let Some(at) = self.pending.iter().position(&want) {
            return self.pending.remove(at);
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.receive(left) {
                Some(reply) if want(&reply) => return reply,
                Some(reply) => self.pending.push(reply),
                None => panic!(
                    "no {what} within {within:?}; got meanwhile {:?}{}",
                    self.pending,
                    self.diagnostics()
                ),
            }
        }
    }

    /// Collects `call`'s output until its EXIT, checking that nothing of
    /// it comes after the EXIT.
    fn wait_exit(&mut self, call: u32, within: Duration) -> Outcome {
        let exit = self.wait_for(
            within,
            &format!("EXIT of call {call}"),
            |reply| matches!(reply, Reply::Exit(exit) if exit.call == call),
        );
        let Reply::Exit(exit) = exit else {
            unreachable!()
        };
        let (mut stdout, mut stderr, mut chunks) = (Vec::new(), Vec::new(), Vec::new());
        let mut started = false;
        self.pending.retain(|reply| match reply {
            Reply::Started { call: c } if *c == call => {
                started = true;
                false
            }
            Reply::Stdout { call: c, bytes } if *c == call => {
                chunks.push(bytes.len());
                stdout.extend_from_slice(bytes);
                false
            }
            Reply::Stderr { call: c, bytes } if *c == call => {
                chunks.push(bytes.len());
                stderr.extend_from_slice(bytes);
                false
            }
            _ => true,
        });
        assert!(started, "no STARTED before the EXIT of call {call}");
        let stdout = String::from_utf8_lossy(&stdout).into_owned();
        let stderr = String::from_utf8_lossy(&stderr).into_owned();
        Outcome {
            stdout,
            stderr,
            exit,
            chunks,
        }
    }

    /// Runs `code` to its end.
    fn call(&mut self, call: u32, tool: Tool, code: &str) -> Outcome {
        self.run(call, tool, code);
        self.wait_exit(call, PROMPT)
    }

    /// Waits until `call`'s stdout contains `text` (so it is running);
    /// returns its stdout so far. The output stays pending:
    /// [`Sandbox::wait_exit`] still sees it.
    fn wait_output(&mut self, call: u32, text: &str) -> String {
        let deadline = Instant::now() + PROMPT;
        loop {
            let printed: Vec<u8> = self
                .pending
                .iter()
                .filter_map(|reply| match reply {
                    Reply::Stdout { call: c, bytes } if *c == call => Some(bytes.as_slice()),
                    _ => None,
                })
                .flatten()
                .copied()
                .collect();
            let printed = String::from_utf8_lossy(&printed);
            if printed.contains(text) {
                return printed.into_owned();
            }
            match self.receive(deadline.saturating_duration_since(Instant::now())) {
                Some(reply) => self.pending.push(reply),
                None => panic!(
                    "no {text:?} from call {call} within {PROMPT:?}; got {:?}{}",
                    self.pending,
                    self.diagnostics()
                ),
            }
        }
    }

    /// Processes of uid 1000 in the container, seen from outside (as root,
    /// not through the agent): `args` lines.
    fn sandbox_processes(&self) -> Vec<String> {
        let out = docker(&[
            "exec", "-u", "0:0", &self.name, "ps", "-u", "1000", "-o", "args=",
        ]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Closes the agent's stdin and returns its exit status.
    fn close_and_wait(&mut self, within: Duration) -> ExitStatus {
        self.stdin = None;
        self.wait_agent(within)
    }

    fn wait_agent(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exec.try_wait().expect("wait for docker exec") {
                if let Some(reader) = self.stderr_reader.take() {
                    let _ = reader.join();
                }
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not exit within {within:?}{}",
                self.diagnostics()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stdin = None;
        let _ = Command::new("docker")
            .args(["rm", "--force", &self.name])
            .output();
        let _ = self.exec.kill();
        let _ = self.exec.wait();
        let _ = std::fs::remove_dir_all(&self.workspace);
    }
}

fn run(call: u32, tool: Tool, code: &str) -> Run {
    Run {
        call,
        tool,
        timeout_ms: CALL_TIMEOUT_MS,
        grace_ms: 1_000,
        stem: format!("t{call}"),
        checks: Vec::new(),
        code: code.as_bytes().to_vec(),
    }
}

fn assert_plain_exit(outcome: &Outcome, code: i32) {
    assert_eq!(
        (
            outcome.exit.code,
            outcome.exit.timed_out,
            outcome.exit.cancelled
        ),
        (code, false, false),
        "{outcome:#?}"
    );
}

#[test]
fn shell_and_python_run_as_the_sandbox_user_without_capabilities() {
    let mut sandbox = Sandbox::start_with_env(&["IRONCLAW_SECRET=do-not-leak", "VISIBLE=yes"]);

    let shell = sandbox.call(
        1,
        Tool::Shell,
        "id -u; id -g; id -G; pwd; grep CapEff /proc/self/status\n\
         echo \"secret=${IRONCLAW_SECRET-unset} visible=$VISIBLE\"\n\
         echo to-stderr >&2; exit 3",
    );
    assert_plain_exit(&shell, 3);
    assert_eq!(
        shell.stdout,
        "1000\n1000\n1000\n/workspace\nCapEff:\t0000000000000000\nsecret=unset visible=yes\n",
        "{shell:#?}"
    );
    assert_eq!(shell.stderr, "to-stderr\n");

    let python = sandbox.call(
        2,
        Tool::Python,
        "import os, sys\n\
         caps = [l for l in open('/proc/self/status') if l.startswith('CapEff')]\n\
         print(os.getuid(), os.getgid(), os.getgroups(), os.getcwd(), sys.argv, caps[0].split()[1])\n\
         print('IRONCLAW_SECRET' in os.environ, os.environ.get('VISIBLE'), '_p' in globals(), '_s' in globals())\n\
         sys.stderr.write('py-err\\n')\n\
         sys.exit(5)\n",
    );
    assert_plain_exit(&python, 5);
    assert_eq!(
        python.stdout, "1000 1000 [] /workspace ['-c'] 0000000000000000\nFalse yes False False\n",
        "{python:#?}"
    );
    assert_eq!(python.stderr, "py-err\n");

    // Both staged files were removed; the staging folder is the sandbox
    // user's own, 0700.
    let staging = sandbox.call(
        3,
        Tool::Shell,
        "stat -c '%u %a' /tmp/.ironclaw; ls /tmp/.ironclaw",
    );
    assert_plain_exit(&staging, 0);
    assert_eq!(staging.stdout, "1000 700\nt3.sh\n");

    // stdin is /dev/null, open and empty, for both tools.
    let stdin = sandbox.call(
        4,
        Tool::Python,
        "import sys, os\nprint(repr(sys.stdin.read()), os.readlink('/proc/self/fd/0'))\n",
    );
    assert_plain_exit(&stdin, 0);
    assert_eq!(stdin.stdout, "'' /dev/null\n", "{stdin:#?}");
    let stdin = sandbox.call(5, Tool::Shell, "cat; readlink /proc/self/fd/0");
    assert_plain_exit(&stdin, 0);
    assert_eq!(stdin.stdout, "/dev/null\n", "{stdin:#?}");
}

#[test]
fn python_tracebacks_and_signals_are_reported() {
    let mut sandbox = Sandbox::start();
    let raised = sandbox.call(1, Tool::Python, "x = 1\nraise ValueError('boom')\n");
    assert_plain_exit(&raised, 1);
    assert!(raised.stderr.contains("ValueError: boom"), "{raised:#?}");
    assert!(
        raised.stderr.contains("/tmp/.ironclaw/t1.py\", line 2"),
        "{raised:#?}"
    );

    let killed = sandbox.call(2, Tool::Shell, "kill -SEGV $$");
    assert_plain_exit(&killed, 128 + 11);
}

#[test]
fn output_arrives_whole_in_order_and_in_bounded_chunks() {
    let mut sandbox = Sandbox::start();
    let big = sandbox.call(
        1,
        Tool::Shell,
        "head -c 1000000 /dev/zero | tr '\\0' x; echo; seq 1 20000 >&2; echo tail",
    );
    assert_plain_exit(&big, 0);
    assert_eq!(big.stdout.len(), 1_000_000 + 1 + 5);
    assert!(big.stdout.starts_with("xxxx") && big.stdout.ends_with("x\ntail\n"));
    let numbers: Vec<u32> = big.stderr.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(numbers, (1..=20000).collect::<Vec<_>>());
    assert!(
        big.chunks
            .iter()
            .all(|&n| (1..=MAX_OUTPUT_CHUNK).contains(&n)),
        "{:?}",
        big.chunks
    );
}

#[test]
fn detached_processes_are_swept_while_other_calls_are_untouched() {
    let mut sandbox = Sandbox::start();
    sandbox.run(1, Tool::Shell, "echo up; exec sleep 600");
    sandbox.wait_output(1, "up\n");

    let escapers = sandbox.call(
        2,
        Tool::Shell,
        "setsid sleep 601 &\n\
         ( ( sleep 602 & ) & )\n\
         nohup sleep 603 >/dev/null 2>&1 &\n\
         setsid bash -c 'sleep 604 & sleep 605' &\n\
         sleep 0.3; ps -u 1000 -o args= | grep -c '^sleep 60[1-5]$'",
    );
    assert_plain_exit(&escapers, 0);
    assert_eq!(
        escapers.stdout, "5\n",
        "all five were running: {escapers:#?}"
    );

    let left = sandbox.sandbox_processes();
    assert!(
        left.iter()
            .all(|p| !p.starts_with("sleep 60") || p == "sleep 600"),
        "{left:?}"
    );
    assert!(
        left.iter().any(|p| p == "sleep 600"),
        "the other call was touched: {left:?}"
    );

    // Seen by a call, too.
    let seen = sandbox.call(
        3,
        Tool::Shell,
        "ps -u 1000 -o args= | grep '^sleep' || true",
    );
    assert_eq!(seen.stdout, "sleep 600\n");

    sandbox.send(&Request::Kill { call: 1 });
    let first = sandbox.wait_exit(1, PROMPT);
    assert_eq!(first.exit.code, 137);
}

#[test]
fn a_fork_bomb_is_swept() {
    let mut sandbox = Sandbox::start();
    sandbox.send(&Request::Run(Run {
        timeout_ms: 2_000,
        grace_ms: 500,
        ..run(1, Tool::Shell, "trap '' TERM; b() { b & b & wait; }; b")
    }));
    let bomb = sandbox.wait_exit(1, PROMPT);
    assert!(
        bomb.exit.timed_out && [124, 137].contains(&bomb.exit.code),
        "{bomb:#?}"
    );
    assert_eq!(sandbox.sandbox_processes(), Vec::<String>::new());
    let after = sandbox.call(2, Tool::Shell, "echo still fine");
    assert_eq!(after.stdout, "still fine\n");
}

#[test]
fn timeouts_terminate_then_escalate() {
    let mut sandbox = Sandbox::start();
    let with_timeout = |call, code: &str| {
        Request::Run(Run {
            timeout_ms: 1_000,
            grace_ms: 1_000,
            ..run(call, Tool::Shell, code)
        })
    };
    sandbox.send(&with_timeout(1, "sleep 600"));
    sandbox.send(&with_timeout(2, "trap '' TERM; sleep 600"));

    let polite = sandbox.wait_exit(1, PROMPT);
    assert_eq!(
        (
            polite.exit.code,
            polite.exit.timed_out,
            polite.exit.cancelled
        ),
        (124, true, false)
    );
    assert!(
        (900..10_000).contains(&polite.exit.duration_ms),
        "{polite:#?}"
    );

    let stubborn = sandbox.wait_exit(2, PROMPT);
    assert_eq!(
        (
            stubborn.exit.code,
            stubborn.exit.timed_out,
            stubborn.exit.cancelled
        ),
        (137, true, false)
    );
    assert!(
        (1_900..15_000).contains(&stubborn.exit.duration_ms),
        "{stubborn:#?}"
    );
    assert_eq!(sandbox.sandbox_processes(), Vec::<String>::new());
}

#[test]
fn kill_frame_cancels_at_once() {
    let mut sandbox = Sandbox::start();
    sandbox.run(
        1,
        Tool::Shell,
        "trap '' TERM; echo up; sleep 600; echo never",
    );
    sandbox.wait_output(1, "up\n");
    let sent = Instant::now();
    sandbox.send(&Request::Kill { call: 1 });
    let cancelled = sandbox.wait_exit(1, PROMPT);
    assert_eq!(
        (
            cancelled.exit.code,
            cancelled.exit.timed_out,
            cancelled.exit.cancelled
        ),
        (137, false, true)
    );
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "took {:?}",
        sent.elapsed()
    );
    assert!(!cancelled.stdout.contains("never"));
    // KILL for a call that is not running is ignored.
    sandbox.send(&Request::Kill { call: 99 });
    assert_plain_exit(&sandbox.call(2, Tool::Shell, "true"), 0);
}

#[test]
fn programs_cannot_signal_the_agent_or_their_keeper() {
    let mut sandbox = Sandbox::start();
    let agent = sandbox.agent_pid;
    let attempt = sandbox.call(
        1,
        Tool::Shell,
        &format!("kill -9 $PPID; echo keeper=$?; kill -9 {agent}; echo agent=$?; kill -STOP {agent}; echo stop=$?"),
    );
    assert_plain_exit(&attempt, 0);
    assert_eq!(attempt.stdout, "keeper=1\nagent=1\nstop=1\n");
    assert_eq!(
        attempt.stderr.matches("Operation not permitted").count(),
        3,
        "{attempt:#?}"
    );

    let python = sandbox.call(2, Tool::Python, &format!("import os\ntry:\n    os.kill({agent}, 9)\nexcept PermissionError as e:\n    print(e.errno)\n"));
    assert_eq!(python.stdout, "1\n");

    // Still serving.
    assert_plain_exit(&sandbox.call(3, Tool::Shell, "echo alive"), 0);
}

#[test]
fn checked_files_must_match_what_was_approved() {
    let mut sandbox = Sandbox::start();
    std::fs::write(sandbox.workspace.join("data.txt"), "approved\n").unwrap();
    let hash = |text: &str| -> [u8; 32] { Sha256::digest(text.as_bytes()).into() };
    let check = |text: &str, path: &str| Check {
        sha256: hash(text),
        path: path.as_bytes().to_vec(),
    };

    sandbox.send(&Request::Run(Run {
        checks: vec![check("approved\n", "data.txt")],
        ..run(1, Tool::Shell, "cat data.txt")
    }));
    let matching = sandbox.wait_exit(1, PROMPT);
    assert_plain_exit(&matching, 0);
    assert_eq!(matching.stdout, "approved\n");

    let message = "ironclaw: not run: data.txt changed after the command was approved, so it is not what was approved. Review the file and run the command again.\n";
    sandbox.send(&Request::Run(Run {
        checks: vec![
            check("approved\n", "data.txt"),
            check("what was approved\n", "data.txt"),
        ],
        ..run(2, Tool::Shell, "echo ran")
    }));
    let changed = sandbox.wait_exit(2, PROMPT);
    assert_plain_exit(&changed, 126);
    assert_eq!(
        (changed.stdout.as_str(), changed.stderr.as_str()),
        ("", message)
    );

    sandbox.send(&Request::Run(Run {
        checks: vec![check("", "missing.txt")],
        ..run(3, Tool::Python, "print('ran')")
    }));
    let missing = sandbox.wait_exit(3, PROMPT);
    assert_plain_exit(&missing, 126);
    assert!(
        missing
            .stderr
            .starts_with("ironclaw: not run: missing.txt changed"),
        "{missing:#?}"
    );
}

#[test]
fn heartbeats_arrive_every_second() {
    let mut sandbox = Sandbox::start();
    sandbox.run(1, Tool::Shell, "sleep 600");
    let mut beats = Vec::new();
    while beats.len() < 4 {
        if let Reply::Heartbeat { running } =
            sandbox.wait_for(Duration::from_secs(5), "HEARTBEAT", |r| {
                matches!(r, Reply::Heartbeat { .. })
            })
        {
            beats.push((Instant::now(), running));
        }
    }
    assert!(beats.iter().all(|&(_, running)| running == 1), "{beats:?}");
    for pair in beats.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap > Duration::from_millis(500) && gap < Duration::from_millis(2_500),
            "gap {gap:?}"
        );
    }
}

#[test]
fn duplicate_and_bad_requests_are_refused() {
    let mut sandbox = Sandbox::start();
    sandbox.run(1, Tool::Shell, "echo up; sleep 600");
    sandbox.wait_output(1, "up\n");
    sandbox.run(1, Tool::Shell, "echo second");
    let refused = sandbox.wait_for(PROMPT, "REFUSED", |r| matches!(r, Reply::Refused { .. }));
    assert_eq!(
        refused,
        Reply::Refused {
            call: 1,
            message: "call 1 is already running".into()
        }
    );

    sandbox.send(&Request::Run(Run {
        checks: vec![Check {
            sha256: [0; 32],
            path: b"a\0b".to_vec(),
        }],
        ..run(2, Tool::Shell, "true")
    }));
    match sandbox.wait_for(PROMPT, "REFUSED", |r| matches!(r, Reply::Refused { .. })) {
        Reply::Refused { call: 2, message } => assert!(message.contains("NUL"), "{message}"),
        other => panic!("{other:?}"),
    }

    sandbox.send(&Request::Kill { call: 1 });
    assert_eq!(sandbox.wait_exit(1, PROMPT).exit.code, 137);
}

#[test]
fn a_protocol_error_kills_everything_and_exits_3() {
    let mut sandbox = Sandbox::start();
    sandbox.run(1, Tool::Shell, "echo up; exec sleep 600");
    sandbox.wait_output(1, "up\n");
    sandbox.send_raw(&[0, 0, 0, 0]);
    let status = sandbox.wait_agent(PROMPT);
    assert_eq!(status.code(), Some(3), "{}", sandbox.diagnostics());
    assert!(
        sandbox.diagnostics().contains("frame length 0"),
        "{}",
        sandbox.diagnostics()
    );
    assert_eq!(sandbox.sandbox_processes(), Vec::<String>::new());
}

#[test]
fn stdin_eof_kills_running_calls_and_exits_0() {
    let mut sandbox = Sandbox::start();
    sandbox.run(1, Tool::Shell, "echo up; trap '' TERM; sleep 600");
    sandbox.run(
        2,
        Tool::Python,
        "import time\nprint('up', flush=True)\ntime.sleep(600)\n",
    );
    sandbox.wait_output(1, "up\n");
    sandbox.wait_output(2, "up\n");
    let status = sandbox.close_and_wait(PROMPT);
    assert_eq!(status.code(), Some(0), "{}", sandbox.diagnostics());
    assert_eq!(sandbox.sandbox_processes(), Vec::<String>::new());
    let agents = docker(&[
        "exec",
        "-u",
        "0:0",
        &sandbox.name,
        "ps",
        "-e",
        "-o",
        "args=",
    ]);
    let agents = String::from_utf8_lossy(&agents.stdout);
    assert!(!agents.contains(AGENT_PATH), "{agents}");
}

#[test]
fn a_dead_keepers_processes_are_swept_by_the_agent() {
    let mut sandbox = Sandbox::start();
    sandbox.run(
        1,
        Tool::Shell,
        "setsid sleep 606 & echo keeper=$PPID; exec sleep 600",
    );
    let printed = sandbox.wait_output(1, "\n");
    let keeper = printed
        .trim()
        .strip_prefix("keeper=")
        .expect("the keeper's pid")
        .to_owned();
    // Only root outside the sandbox user's reach can do this; it stands for
    // the OOM killer picking the keeper.
    let out = docker(&["exec", "-u", "0:0", &sandbox.name, "kill", "-9", &keeper]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ended = sandbox.wait_exit(1, PROMPT);
    assert_plain_exit(&ended, 137);
    assert_eq!(sandbox.sandbox_processes(), Vec::<String>::new());
    assert_plain_exit(&sandbox.call(2, Tool::Shell, "true"), 0);
}
