//! The sandbox against the real Docker engine and the real image: exec
//! through the resident agent, streaming, timeouts, cancel, leftovers,
//! tamper resistance, the watchdog, hardening, idle stop, recreation,
//! reaping.
//!
//! These tests fail (never skip) when Docker or `ironclaw-sandbox:latest` is
//! missing. Each one has its own workspace and instance id, and a guard
//! removes its containers even when it panics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::CreateContainerOptions;
use bollard::Docker;
use ironclaw::config::SandboxSettings;
use ironclaw::protocol::{LogLevel, OutputStream, Tool};
use ironclaw::sandbox::{
    connect_docker, container_name, docker_status, reap_orphans, CancelExec, Engine, Exec,
    ExecChunk, ExecOutcome, RemoveContainer, SandboxActor, SandboxError, SandboxNotice,
    MAX_CODE_BYTES,
};

const IMAGE: &str = "ironclaw-sandbox:latest";

/// Generous ceiling for commands that should finish at once; a hang fails
/// the test instead of stalling the suite.
const QUICK: Duration = Duration::from_secs(20);

fn settings() -> SandboxSettings {
    SandboxSettings {
        image: IMAGE.to_string(),
        network: "none".to_string(),
        memory_mb: 256,
        cpus: 1.0,
        pids: 128,
        exec_timeout_secs: 20,
        idle_stop_secs: 600,
        tmpfs_mb: 64,
        warm_pool: 0,
        start_concurrency: 4,
    }
}

/// Everything the collector saw, with arrival times.
#[derive(Default, Clone)]
struct Seen {
    chunks: Arc<Mutex<Vec<(Instant, ExecChunk)>>>,
    notices: Arc<Mutex<Vec<SandboxNotice>>>,
}

impl Seen {
    fn text(&self, call_id: &str, stream: OutputStream) -> String {
        self.chunks
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, c)| c.call_id == call_id && c.stream == stream)
            .map(|(_, c)| c.data.as_str())
            .collect()
    }

    fn notices(&self) -> Vec<String> {
        self.notices
            .lock()
            .unwrap()
            .iter()
            .map(|n| n.message.clone())
            .collect()
    }
}

/// Stands in for the agent actor: records output and notices.
struct Collector(Seen);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<ExecChunk> for Collector {
    type Result = ();
    fn handle(&mut self, msg: ExecChunk, _: &mut Self::Context) {
        self.0.chunks.lock().unwrap().push((Instant::now(), msg));
    }
}

impl Handler<SandboxNotice> for Collector {
    type Result = ();
    fn handle(&mut self, msg: SandboxNotice, _: &mut Self::Context) {
        self.0.notices.lock().unwrap().push(msg);
    }
}

/// Removes every container of one instance id when dropped, panicking test
/// or not.
struct ContainerGuard {
    instance_id: String,
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let filter = format!("label=ironclaw.instance={}", self.instance_id);
        let Ok(out) = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
        else {
            return;
        };
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !ids.is_empty() {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
    }
}

async fn docker() -> Docker {
    let docker = connect_docker()
        .await
        .unwrap_or_else(|e| panic!("these tests need a running Docker engine: {e}"));
    let (docker_ok, image_ok, detail) = docker_status(&docker, IMAGE).await;
    assert!(
        docker_ok && image_ok,
        "these tests need Docker and {IMAGE}: {detail}"
    );
    docker
}

/// One session's sandbox actor with a collector and a temp workspace.
struct Session {
    addr: Addr<SandboxActor>,
    seen: Seen,
    collector: Addr<Collector>,
    /// Holds the workspace, `<temp>/workspace`: the sandbox makes a
    /// workspace's parent private (on a server, `data/workspaces`), so it
    /// must not be /tmp itself.
    _temp: tempfile::TempDir,
    workspace: std::path::PathBuf,
    docker: Docker,
    name: String,
}

impl Session {
    fn new(docker: &Docker, settings: SandboxSettings, instance_id: &str) -> Session {
        Session::with_engine(docker, Engine::from(docker.clone()), settings, instance_id)
    }

    /// A session whose sandbox shares `engine` (and its start gate).
    fn with_engine(
        docker: &Docker,
        engine: Engine,
        settings: SandboxSettings,
        instance_id: &str,
    ) -> Session {
        let session_id = uuid::Uuid::new_v4().to_string();
        let temp = tempfile::tempdir().unwrap();
        let workspace = temp.path().join("workspace");
        let seen = Seen::default();
        let collector = Collector(seen.clone()).start();
        let addr = SandboxActor::new(
            engine,
            settings,
            session_id.clone(),
            instance_id.to_string(),
            workspace.clone(),
            collector.clone().recipient(),
        )
        .start();
        Session {
            addr,
            seen,
            collector,
            _temp: temp,
            workspace,
            docker: docker.clone(),
            name: container_name(instance_id, &session_id),
        }
    }

    fn exec(&self, tool: Tool, code: &str, timeout: Duration) -> (String, Exec) {
        let call_id = uuid::Uuid::new_v4().to_string();
        let msg = Exec {
            call_id: call_id.clone().into(),
            tool,
            code: code.to_string(),
            files: Vec::new(),
            timeout,
            output: self.collector.clone().recipient(),
            model_output_cap: 16 * 1024,
        };
        (call_id, msg)
    }

    async fn try_run(
        &self,
        tool: Tool,
        code: &str,
        timeout: Duration,
    ) -> Result<(String, ExecOutcome), SandboxError> {
        let (call_id, msg) = self.exec(tool, code, timeout);
        let outcome = tokio::time::timeout(timeout + QUICK, self.addr.send(msg))
            .await
            .unwrap_or_else(|_| panic!("exec of {code:?} never resolved"))
            .expect("sandbox actor is gone")?;
        Ok((call_id, outcome))
    }

    async fn run_for(&self, tool: Tool, code: &str, timeout: Duration) -> (String, ExecOutcome) {
        self.try_run(tool, code, timeout)
            .await
            .unwrap_or_else(|e| panic!("exec of {code:?} failed: {e} ({})", e.code()))
    }

    async fn run(&self, tool: Tool, code: &str) -> (String, ExecOutcome) {
        self.run_for(tool, code, QUICK).await
    }

    /// Run a shell command that must succeed; its stdout.
    async fn sh(&self, code: &str) -> String {
        let (call_id, out) = self.run(Tool::Shell, code).await;
        assert_eq!(
            out.exit_code,
            Some(0),
            "{code:?} failed: {}",
            out.output_for_model
        );
        self.seen.text(&call_id, OutputStream::Stdout)
    }

    async fn processes(&self) -> String {
        self.sh("ps -eo pid,pgid,cmd").await
    }

    async fn inspect(&self) -> bollard::models::ContainerInspectResponse {
        self.docker
            .inspect_container(&self.name, None)
            .await
            .expect("container exists")
    }

    async fn remove(self) {
        self.addr
            .send(RemoveContainer)
            .await
            .expect("sandbox actor is gone")
            .expect("container removed");
    }
}

fn instance() -> (String, ContainerGuard) {
    let instance_id = format!("test-{}", uuid::Uuid::new_v4().simple());
    let guard = ContainerGuard {
        instance_id: instance_id.clone(),
    };
    (instance_id, guard)
}

fn no_sleep_600(ps: &str) {
    assert!(
        !ps.contains("sleep 600"),
        "a sleep 600 outlived its exec:\n{ps}"
    );
}

#[actix::test]
async fn shell_and_python_run_in_the_workspace() {
    let docker = docker().await;
    let (instance_id, _guard) = instance();
    let s = Session::new(&docker, settings(), &instance_id);

    let started = Instant::now();
    let (id, out) = s.run(Tool::Shell, "echo out; echo err >&2; exit 3").await;
    let first = started.elapsed();
    assert_eq!(out.exit_code, Some(3));
    assert!(!out.timed_out && !out.cancelled);
    assert_eq!(s.seen.text(&id, OutputStream::Stdout), "out\n");
    assert_eq!(s.seen.text(&id, OutputStream::Stderr), "err\n");
    assert!(out.output_for_model.contains("out\n") && out.output_for_model.contains("err\n"));

    let (id, out) = s
        .run(
            Tool::Python,
            "import sys\nprint('py', 6 * 7)\nprint('oops', file=sys.stderr)\nprint(repr(sys.stdin.read()))",
        )
        .await;
    assert_eq!(out.exit_code, Some(0), "{}", out.output_for_model);
    assert_eq!(
        s.seen.text(&id, OutputStream::Stdout),
        "py 42\n''\n",
        "stdin must be empty"
    );
    assert_eq!(s.seen.text(&id, OutputStream::Stderr), "oops\n");

    let (id, out) = s.run(Tool::Python, "raise SystemExit(5)").await;
    assert_eq!(out.exit_code, Some(5));
    assert_eq!(s.seen.text(&id, OutputStream::Stdout), "");

    let (id, out) = s.run(Tool::Python, "x = 1\ny = x / 0\n").await;
    assert_eq!(out.exit_code, Some(1));
    let err = s.seen.text(&id, OutputStream::Stderr);
    assert!(
        err.contains("ZeroDivisionError") && err.contains("y = x / 0"),
        "{err}"
    );

    assert_eq!(
        s.sh("id -u; id -g; pwd; echo $HOME").await,
        "1000\n1000\n/workspace\n/home/sandbox\n"
    );
    assert_eq!(s.sh("cat /dev/stdin | wc -c").await.trim(), "0");
    assert_eq!(
        s.sh("env | grep -c IRONCLAW; true").await,
        "0\n",
        "wrapper leaks into env"
    );

    // A file from one exec is there for the next, and on the host.
    s.sh("echo hello > note.txt && printf 'def f():\\n    return 7\\n' > helper.py")
        .await;
    let (id, out) = s
        .run(
            Tool::Python,
            "import helper\nprint(open('note.txt').read().strip(), helper.f())",
        )
        .await;
    assert_eq!(out.exit_code, Some(0), "{}", out.output_for_model);
    assert_eq!(s.seen.text(&id, OutputStream::Stdout), "hello 7\n");
    let on_host = std::fs::read_to_string(s.workspace.join("note.txt")).unwrap();
    assert_eq!(on_host, "hello\n");

    let warm_started = Instant::now();
    s.sh("true").await;
    let warm = warm_started.elapsed();
    eprintln!("latency: first exec (create+start+exec) {first:?}, warm exec {warm:?}");

    assert!(
        s.seen.notices().iter().any(|n| n.contains("created")),
        "{:?}",
        s.seen.notices()
    );
    s.remove().await;
}

#[actix::test]
async fn output_streams_live_in_whole_characters_and_is_capped_for_the_model() {
    let docker = docker().await;
    let (instance_id, _guard) = instance();
    let s = Session::new(&docker, settings(), &instance_id);

    let (id, out) = s
        .run(Tool::Shell, "echo first; sleep 1.5; echo second")
        .await;
    let ended = Instant::now();
    let chunks = s.seen.chunks.lock().unwrap().clone();
    let first = chunks
        .iter()
        .find(|(_, c)| c.call_id == id && c.data.contains("first"))
        .expect("first chunk");
    assert!(
        ended.duration_since(first.0) > Duration::from_millis(1000),
        "output was not streamed live"
    );
    assert_eq!(out.exit_code, Some(0));

    // "é" split across two writes arrives whole.
    let (id, _) = s
        .run(
            Tool::Python,
            "import sys, time\nw = sys.stdout.buffer\nw.write(b'a\\xc3'); w.flush(); time.sleep(0.3)\nw.write(b'\\xa9b\\n'); w.flush()",
        )
        .await;
    let pieces: Vec<String> = s
        .seen
        .chunks
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, c)| c.call_id == id)
        .map(|(_, c)| c.data.clone())
        .collect();
    assert!(pieces.len() >= 2, "expected two chunks, got {pieces:?}");
    assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "{pieces:?}");
    assert_eq!(pieces.concat(), "aéb\n");

    let (call_id, msg) = s.exec(Tool::Shell, "seq 1 100000", QUICK);
    let msg = Exec {
        model_output_cap: 1000,
        ..msg
    };
    let out = s.addr.send(msg).await.unwrap().unwrap();
    let model = &out.output_for_model;
    assert!(model.len() <= 1000, "{} bytes", model.len());
    assert!(model.starts_with("1\n2\n3\n"), "{model}");
    assert!(model.ends_with("99999\n100000\n"), "{model}");
    assert!(model.contains(" bytes omitted ...]"), "{model}");
    let all = s.seen.text(&call_id, OutputStream::Stdout);
    assert_eq!(all.lines().count(), 100000, "live output is not capped");
    s.remove().await;
}

#[actix::test]
async fn timeout_and_cancel_leave_nothing_running() {
    let docker = docker().await;
    let (instance_id, _guard) = instance();
    let s = Session::new(&docker, settings(), &instance_id);
    // Background children are in the process group too.
    let code = "sleep 600 & sleep 600 & echo started; sleep 600";

    let (id, out) = s.run_for(Tool::Shell, code, Duration::from_secs(2)).await;
    assert!(out.timed_out, "{out:?}");
    assert!(!out.cancelled);
    assert!(matches!(out.exit_code, Some(124) | Some(137)), "{out:?}");
    assert!(out.duration_ms >= 2000 && out.duration_ms < 6000, "{out:?}");
    assert_eq!(s.seen.text(&id, OutputStream::Stdout), "started\n");
    no_sleep_600(&s.processes().await);

    // A program that ignores SIGTERM is killed too.
    let (_, out) = s
        .run_for(
            Tool::Shell,
            "trap '' TERM; sleep 600",
            Duration::from_secs(1),
        )
        .await;
    assert!(out.timed_out && out.exit_code == Some(137), "{out:?}");
    no_sleep_600(&s.processes().await);

    let (id, msg) = s.exec(Tool::Shell, code, Duration::from_secs(60));
    let running = s.addr.send(msg);
    let cancel = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        s.addr.do_send(CancelExec {
            call_id: id.clone().into(),
        });
        Instant::now()
    };
    let (out, cancelled_at) = futures_util::join!(running, cancel);
    let out = out.unwrap().unwrap();
    assert!(out.cancelled && !out.timed_out, "{out:?}");
    assert_eq!(out.exit_code, Some(137), "{out:?}");
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(3),
        "cancel took too long"
    );
    assert_eq!(s.seen.text(&id, OutputStream::Stdout), "started\n");
    no_sleep_600(&s.processes().await);

    // Two calls at once in one session both complete.
    let (a, b) = futures_util::join!(
        s.run(Tool::Shell, "sleep 0.5; echo a"),
        s.run(Tool::Python, "import time; time.sleep(0.5); print('b')")
    );
    assert_eq!(s.seen.text(&a.0, OutputStream::Stdout), "a\n");
    assert_eq!(s.seen.text(&b.0, OutputStream::Stdout), "b\n");

    // Cancelling a call that is not running is a no-op.
    s.addr
        .send(CancelExec {
            call_id: "nope".into(),
        })
        .await
        .unwrap();
    assert_eq!(s.sh("echo ok").await, "ok\n");
    s.remove().await;
}

#[actix::test]
async fn container_is_hardened() {
    let docker = docker().await;
    let (instance_id, _guard) = instance();
    let s = Session::new(&docker, settings(), &instance_id);

    let (_, out) = s
        .run(
            Tool::Python,
            "import socket\ns = socket.socket()\ns.settimeout(2)\ntry:\n    s.connect(('1.1.1.1', 53))\n    print('connected')\nexcept OSError as e:\n    print('refused', e)",
        )
        .await;
    assert!(
        out.output_for_model.starts_with("refused"),
        "{}",
        out.output_for_model
    );
    assert_eq!(s.sh("ls /sys/class/net").await, "lo\n");

    let (_, out) = s.run(Tool::Shell, "touch /usr/x").await;
    assert_ne!(out.exit_code, Some(0), "root filesystem is writable");
    assert!(
        out.output_for_model.contains("Read-only file system"),
        "{}",
        out.output_for_model
    );
    s.sh("touch /tmp/x ~/y /workspace/z").await;
    let (_, out) = s
        .run(
            Tool::Shell,
            "grep -E 'Cap(Eff|Prm)' /proc/self/status; grep NoNewPrivs /proc/self/status",
        )
        .await;
    assert!(
        out.output_for_model.contains("CapEff:\t0000000000000000"),
        "{}",
        out.output_for_model
    );
    assert!(
        out.output_for_model.contains("NoNewPrivs:\t1"),
        "{}",
        out.output_for_model
    );

    let info = s.inspect().await;
    let host = info.host_config.expect("host config");
    assert_eq!(host.readonly_rootfs, Some(true));
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
    // Only the exec agent (root inside) can use these; every call runs as
    // uid 1000 with none (CapEff above).
    assert_eq!(
        host.cap_add,
        Some(vec![
            "SETUID".to_string(),
            "SETGID".to_string(),
            "KILL".to_string()
        ])
    );
    assert_eq!(
        host.security_opt,
        Some(vec!["no-new-privileges".to_string()])
    );
    assert_eq!(host.network_mode.as_deref(), Some("none"));
    assert_eq!(host.pids_limit, Some(128));
    assert_eq!(host.memory, Some(256 * 1024 * 1024));
    assert_eq!(host.memory_swap, host.memory);
    assert_eq!(host.nano_cpus, Some(1_000_000_000));
    assert_eq!(host.init, Some(true));
    let tmpfs = host.tmpfs.expect("tmpfs");
    assert!(
        tmpfs.contains_key("/tmp") && tmpfs.contains_key("/home/sandbox"),
        "{tmpfs:?}"
    );
    let config = info.config.expect("config");
    // Root inside with only the three capabilities above (for the exec
    // agent); the calls run as the sandbox user with none (CapEff above).
    assert_eq!(config.user.as_deref(), Some("0:0"));
    assert_eq!(s.sh("id -u; id -g; id -G").await, "1000\n1000\n1000\n");
    assert_eq!(config.working_dir.as_deref(), Some("/workspace"));
    let labels = config.labels.expect("labels");
    assert_eq!(labels.get("ironclaw.instance"), Some(&instance_id));
    assert!(labels.contains_key("ironclaw.session"));
    s.remove().await;
}

#[actix::test]
async fn fork_bomb_is_contained_and_the_session_recovers() {
    let docker = docker().await;
    let (instance_id, _guard) = instance();
    let s = Session::new(
        &docker,
        SandboxSettings {
            pids: 64,
            ..settings()
        },
        &instance_id,
    );
    let (_, out) = s
        .run_for(Tool::Shell, ":(){ :|:& };:", Duration::from_secs(3))
        .await;
    assert!(out.duration_ms < 15_000, "{out:?}");
    let ps = s.processes().await;
    assert!(
        ps.lines().count() < 10,
        "fork bomb left processes behind:\n{ps}"
    );
    assert_eq!(s.sh("echo alive").await, "alive\n");

    // One that keeps its shell busy runs into the timeout.
    let (_, out) = s
        .run_for(
            Tool::Shell,
            ":(){ :|:& };: ; sleep 600",
            Duration::from_secs(2),
        )
        .await;
    assert!(out.timed_out, "{out:?}");
    let ps = s.processes().await;
    assert!(
        ps.lines().count() < 10,
        "fork bomb left processes behind:\n{ps}"
    );
    assert_eq!(s.sh("echo alive").await, "alive\n");
    s.remove().await;
}

#[actix::test]
async fn memory_hog_is_killed_and_the_session_recovers() {
    let docker = docker().await;
    let (instance_id, _guard) = instance();
    let s = Session::new(
        &docker,
        SandboxSettings {
            memory_mb: 128,
            ..settings()
        },
        &instance_id,
    );
    let (_, out) = s
        .run(
            Tool::Python,
            "chunks = []\nwhile True:\n    chunks.append(b'x' * 10**7)",
        )
        .await;
    assert!(!out.timed_out, "{out:?}");
    assert!(
        out.exit_code == Some(137)
            || (out.exit_code == Some(1) && out.output_for_model.contains("MemoryError")),
        "{out:?}"
    );
    assert_eq!(s.sh("echo alive").await, "alive\n");
    s.remove().await;
}

#[actix::test]
async fn sessions_are_isolated() {
    let docker = docker().await;
    let (instance_id, _guard) = instance();
    let a = Session::new(&docker, settings(), &instance_id);
    let b = Session::new(&docker, settings(), &instance_id);
    a.sh("echo secret-a > a.txt").await;
    b.sh("echo secret-b > b.txt").await;
    assert_ne!(a.name, b.name);
    assert_ne!(a.inspect().await.id, b.inspect().await.id);
    assert_eq!(a.sh("ls /workspace").await, "a.txt\n");
    assert_eq!(b.sh("ls /workspace").await, "b.txt\n");
    let (_, out) = b.run(Tool::Shell, "grep -r secret-a / 2>/dev/null").await;
    assert_ne!(out.exit_code, Some(0), "{}", out.output_for_model);
    assert!(b.workspace.join("b.txt").exists());
    assert!(!b.workspace.join("a.txt").exists());
    a.remove().await;
    b.remove().await;
}

#[actix::test]
async fn reaper_removes_leftover_containers_of_its_instance_only() {
    let docker = docker().await;
    let (instance_id, _guard) = instance();
    let (other_instance, _other_guard) = instance();
    for (i, inst) in [&instance_id, &instance_id, &other_instance]
        .into_iter()
        .enumerate()
    {
        let name = container_name(inst, &format!("leftover-{i}"));
        docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name),
                    ..Default::default()
                }),
                ContainerCreateBody {
                    image: Some(IMAGE.to_string()),
                    cmd: Some(vec!["sleep".into(), "infinity".into()]),
                    labels: Some(HashMap::from([
                        ("ironclaw.instance".to_string(), inst.clone()),
                        ("ironclaw.session".to_string(), format!("leftover-{i}")),
                    ])),
                    ..Default::default()
                },
            )
            .await
            .expect("create leftover container");
    }
    docker
        .start_container(&container_name(&instance_id, "leftover-0"), None)
        .await
        .unwrap();
    assert_eq!(
        reap_orphans(&docker, &instance_id, &Default::default())
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        reap_orphans(&docker, &instance_id, &Default::default())
            .await
            .unwrap(),
        0
    );
    assert!(docker
        .inspect_container(&container_name(&other_instance, "leftover-2"), None)
        .await
        .is_ok());
    assert_eq!(
        reap_orphans(&docker, &other_instance, &Default::default())
            .await
            .unwrap(),
        1
    );
}

#[actix::test]
async fn container_removed_behind_our_back_is_recreated() {
    let docker = docker().await;
    let (instance_id, _guard) = instance();
    let s = Session::new(&docker, settings(), &instance_id);
    s.sh("echo kept > kept.txt").await;
    let status = std::process::Command::new("docker")
        .args(["rm", "-f", &s.name])
        .output()
        .unwrap();
    assert!(status.status.success());
    assert_eq!(s.sh("cat kept.txt").await, "kept\n");
    assert!(
        s.seen
            .notices()
            .iter()
            .any(|n| n == "container was gone; recreated"),
        "{:?}",
        s.seen.notices()
    );

    // Stopped behind our back: started again.
    docker.stop_container(&s.name, None).await.unwrap();
    assert_eq!(s.sh("echo back").await, "back\n");
    s.remove().await;
}

#[actix::test]
async fn idle_container_is_stopped_and_started_on_demand() {
    let docker = docker().await;
    let (instance_id, _guard) = instance();
    let s = Session::new(
        &docker,
        SandboxSettings {
            idle_stop_secs: 1,
            ..settings()
        },
        &instance_id,
    );
    s.sh("echo x > x.txt").await;
    let give_up = Instant::now() + Duration::from_secs(10);
    while !s.seen.notices().iter().any(|n| n.contains("stopped after")) {
        assert!(
            Instant::now() < give_up,
            "never stopped: {:?}",
            s.seen.notices()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let state = s.inspect().await.state.unwrap();
    assert_eq!(state.running, Some(false));
    assert_eq!(s.sh("cat x.txt").await, "x\n");
    assert_eq!(s.inspect().await.state.unwrap().running, Some(true));
    s.remove().await;
}

#[actix::test]
async fn large_programs_run_and_oversized_ones_are_refused() {
    let docker = docker().await;
    let (instance_id, _guard) = instance();
    let s = Session::new(&docker, settings(), &instance_id);

    let mut code = String::from("data = [\n");
    while code.len() < MAX_CODE_BYTES - 100 {
        code.push_str("    'abcdefghijklmnopqrstuvwxyz0123456789',\n");
    }
    code.push_str("]\nprint(len(data))\n");
    assert!(code.len() <= MAX_CODE_BYTES && code.len() > 1_000_000);
    let expected = code.matches("abcdefghij").count();
    let (id, out) = s.run(Tool::Python, &code).await;
    assert_eq!(out.exit_code, Some(0), "{}", out.output_for_model);
    assert_eq!(
        s.seen.text(&id, OutputStream::Stdout),
        format!("{expected}\n")
    );

    let big_shell = format!("x='{}'; echo ${{#x}}", "y".repeat(300_000));
    let (id, out) = s.run(Tool::Shell, &big_shell).await;
    assert_eq!(out.exit_code, Some(0), "{}", out.output_for_model);
    assert_eq!(s.seen.text(&id, OutputStream::Stdout), "300000\n");

    let too_big = "#".repeat(MAX_CODE_BYTES + 1);
    let err = s.try_run(Tool::Python, &too_big, QUICK).await.unwrap_err();
    assert_eq!(err.code(), "code_too_large");
    s.remove().await;
}

#[actix::test]
async fn missing_image_is_reported_with_what_to_do() {
    let docker = docker().await;
    let (instance_id, _guard) = instance();
    let missing = "ironclaw-no-such-image:latest";
    let (docker_ok, image_ok, detail) = docker_status(&docker, missing).await;
    assert!(docker_ok && !image_ok);
    assert!(detail.contains("make sandbox-image"), "{detail}");
    assert_eq!(
        docker_status(&docker, IMAGE).await,
        (true, true, "ok".to_string())
    );

    let s = Session::new(
        &docker,
        SandboxSettings {
            image: missing.to_string(),
            ..settings()
        },
        &instance_id,
    );
    let err = s.try_run(Tool::Shell, "true", QUICK).await.unwrap_err();
    assert_eq!(err.code(), "image_missing");
    assert!(err.to_string().contains("make sandbox-image"), "{err}");
    let notices = s.seen.notices.lock().unwrap().clone();
    assert!(notices
        .iter()
        .all(|n| n.level != LogLevel::Info || !n.message.contains("created")));
}

#[actix::test]
async fn leftovers_of_a_call_are_gone_after_it_and_other_calls_are_untouched() {
    let docker = docker().await;
    let (instance_id, _guard) = instance();
    let s = Session::new(&docker, settings(), &instance_id);
    // Every way out of a process group: a new session, a double fork
    // (reparented away from the call's shell), nohup in the background,
    // and a daemon that closes its output so nothing waits on it.
    let escape = "setsid sleep 600 & ( ( sleep 600 & ) & ); nohup sleep 600 >/dev/null 2>&1 & \
                  setsid sh -c 'exec sleep 600 </dev/null >/dev/null 2>&1' & echo started";
    let slow = "sleep 3; echo survived";
    let ((_, other), (id, out)) = futures_util::join!(s.run(Tool::Shell, slow), async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        s.run(Tool::Shell, escape).await
    });
    assert_eq!(out.exit_code, Some(0), "{out:?}");
    assert_eq!(s.seen.text(&id, OutputStream::Stdout), "started\n");
    assert_eq!(other.exit_code, Some(0), "{other:?}");
    assert!(
        other.output_for_model.contains("survived"),
        "a call running beside it was killed: {other:?}"
    );
    no_sleep_600(&s.processes().await);
    s.remove().await;
}

#[actix::test]
async fn a_program_cannot_stop_or_kill_the_agent_that_runs_it() {
    let docker = docker().await;
    let (instance_id, _guard) = instance();
    let s = Session::new(&docker, settings(), &instance_id);
    assert_eq!(s.sh("echo ready").await, "ready\n");
    let agent = agent_pid(&s.name);
    let code =
        format!("kill -STOP $PPID; echo keeper=$?; kill -9 {agent}; echo agent=$?; sleep 600");
    let (id, out) = s.run_for(Tool::Shell, &code, Duration::from_secs(2)).await;
    assert!(out.timed_out, "{out:?}");
    assert_eq!(out.exit_code, Some(124), "{out:?}");
    let stdout = s.seen.text(&id, OutputStream::Stdout);
    assert!(
        stdout.contains("keeper=1") && stdout.contains("agent=1"),
        "{stdout}"
    );
    let stderr = s.seen.text(&id, OutputStream::Stderr);
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
    assert_eq!(agent_pid(&s.name), agent, "the agent was replaced");
    no_sleep_600(&s.processes().await);
    assert_eq!(s.sh("echo ok").await, "ok\n");
    s.remove().await;
}

#[actix::test]
async fn an_agent_killed_or_frozen_inside_the_sandbox_is_detected_and_the_container_recovered() {
    let docker = docker().await;
    let (instance_id, _guard) = instance();
    let s = Session::new(&docker, settings(), &instance_id);
    s.sh("echo kept > kept.txt").await;

    // Killed (by root inside the container, which the sandbox user cannot
    // be) between calls: the watchdog restarts the container on its own.
    let agent = agent_pid(&s.name);
    root_exec(&s.name, &format!("kill -9 {agent}"));
    wait_for_notice(&s, "exec agent stopped answering", 1).await;
    assert_eq!(s.sh("cat kept.txt").await, "kept\n");

    // Frozen during a call: its heartbeats stop, the call ends without an
    // exit code, and the container is restarted under it.
    let (id, msg) = s.exec(Tool::Shell, "echo started; sleep 600", QUICK);
    let running = s.addr.send(msg);
    let freeze = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        root_exec(&s.name, &format!("kill -STOP {}", agent_pid(&s.name)));
    };
    let (out, ()) = futures_util::join!(running, freeze);
    let out = out.unwrap().unwrap();
    assert_eq!(out.exit_code, None, "{out:?}");
    assert_eq!(s.seen.text(&id, OutputStream::Stdout), "started\n");
    wait_for_notice(&s, "exec agent stopped answering", 2).await;
    no_sleep_600(&s.processes().await);
    assert_eq!(s.sh("cat kept.txt").await, "kept\n");
    s.remove().await;
}

#[actix::test]
async fn sandboxes_starting_at_once_take_turns_and_the_one_waiting_is_told() {
    let docker = docker().await;
    let (instance_id, _guard) = instance();
    // One start at a time: the second sandbox waits for the first's.
    let engine = Engine::from(docker.clone()).with_start_concurrency(1);
    let a = Session::with_engine(&docker, engine.clone(), settings(), &instance_id);
    let b = Session::with_engine(&docker, engine, settings(), &instance_id);
    let (out_a, out_b) = futures_util::join!(a.sh("echo a"), b.sh("echo b"));
    assert_eq!((out_a.as_str(), out_b.as_str()), ("a\n", "b\n"));
    let told: Vec<String> = a
        .seen
        .notices()
        .into_iter()
        .chain(b.seen.notices())
        .filter(|n| n.starts_with("starting your sandbox…"))
        .collect();
    assert_eq!(told.len(), 1, "the one that waited is told: {told:?}");
    a.remove().await;
    b.remove().await;
}

/// The exec agent's pid inside the container (the oldest process of its
/// binary: the keepers of running calls are forks of it).
fn agent_pid(name: &str) -> String {
    let out = root_exec(name, "pgrep -o -f '^/usr/local/lib/ironclaw/agent'");
    let pid = out.trim().to_string();
    assert!(
        !pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit()),
        "no single agent: {out:?}"
    );
    pid
}

/// A shell command as root inside the container (what no call can do).
fn root_exec(name: &str, code: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["exec", "-u", "0", name, "sh", "-c", code])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until `times` notices contain `text`.
async fn wait_for_notice(s: &Session, text: &str, times: usize) {
    let give_up = Instant::now() + Duration::from_secs(30);
    while s.seen.notices().iter().filter(|n| n.contains(text)).count() < times {
        assert!(
            Instant::now() < give_up,
            "no {text:?} notice: {:?}",
            s.seen.notices()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
