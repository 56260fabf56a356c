//! The warm pool: a few containers created, started and hardened exactly
//! like a session's, with no session yet, so a new session's first command
//! does not wait for the engine (`sandbox.warm_pool`, default 2).
//!
//! Each pooled container bind-mounts a fresh workspace of its own
//! (`data/workspaces/.pool-<id>`, on its own quota filesystem when the
//! server is root). A session whose workspace was never used adopts one:
//! the workspace is moved into the session's place
//! ([`WorkspaceVolume::move_to`]) and the container renamed to the
//! session's name. [`TakePooled`] hands each container out once and
//! forgets it, so none ever serves a second session. The pool refills in
//! the background through the same start gate as every session (bounded
//! and first come, first served), and [`DrainPool`] removes what it holds
//! at shutdown. Leftovers of an earlier run are removed at start: the
//! containers by the reaper (they carry the instance label), the
//! workspaces here.
//!
//! Messages: [`TakePooled`], [`PoolStatus`], [`DrainPool`].

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::channel::Channel;
use super::container::{create_hardened, prepare_workspace, Engine, LABEL_INSTANCE};
use super::SandboxError;
use crate::config::Settings;
use crate::quota::{WorkspaceVolume, POOL_PREFIX};

/// Label marking a pooled container (its session is not known yet).
pub const LABEL_POOL: &str = "ironclaw.pool";

/// Pause before trying again when filling failed (engine down, image
/// missing): the pool must not hammer a broken engine.
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// How long removing a pooled container waits for its exec agent to exit
/// once its channel is closed.
const POOL_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// How long the drain waits for fills under way to finish and remove what
/// they made.
const DRAIN_WAIT: Duration = Duration::from_secs(60);

/// Pause between handing a container out and making its replacement.
const REFILL_AFTER_TAKE: Duration = Duration::from_millis(300);

/// A started container waiting for a session.
#[derive(Debug)]
pub struct Pooled {
    /// Docker's id: how the adopting session recognises it after renaming.
    pub(super) id: String,
    pub(super) name: String,
    pub(super) workspace: WorkspaceVolume,
    /// Its exec agent, already answering (when opening it worked): the
    /// adopting session's first command goes straight to it.
    pub(super) channel: Option<Arc<Channel>>,
}

/// Hand out one ready container, or `None` when the pool is empty (the
/// session then creates its own). A refill follows shortly.
#[derive(Message)]
#[rtype(result = "Option<Pooled>")]
pub struct TakePooled;

/// What the pool holds now.
#[derive(Message)]
#[rtype(result = "PoolState")]
pub struct PoolStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    /// Started and waiting for a session.
    pub ready: usize,
    /// Being created.
    pub filling: usize,
}

/// Stop refilling and remove every pooled container and its workspace
/// (shutdown). Answers how many were removed.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct DrainPool;

pub struct WarmPool {
    engine: Engine,
    settings: Arc<Settings>,
    instance_id: String,
    target: usize,
    ready: VecDeque<Pooled>,
    /// Containers being made now; shared with the drain, which waits for
    /// them.
    filling: Rc<Cell<usize>>,
    /// Shared with the fills under way: one that finishes after the drain
    /// began removes what it made.
    draining: Rc<Cell<bool>>,
    /// A retry after a failure is scheduled.
    retry_pending: bool,
}

impl WarmPool {
    pub fn new(engine: Engine, settings: Arc<Settings>, instance_id: String) -> Self {
        WarmPool {
            target: settings.sandbox.warm_pool,
            engine,
            settings,
            instance_id,
            ready: VecDeque::new(),
            filling: Rc::new(Cell::new(0)),
            draining: Rc::new(Cell::new(false)),
            retry_pending: false,
        }
    }

    fn refill(&mut self, ctx: &mut Context<Self>) {
        while !self.draining.get() && self.ready.len() + self.filling.get() < self.target {
            self.filling.set(self.filling.get() + 1);
            let (engine, settings, instance_id) = (
                self.engine.clone(),
                self.settings.clone(),
                self.instance_id.clone(),
            );
            let (filling, draining) = (self.filling.clone(), self.draining.clone());
            ctx.spawn(
                async move {
                    let made = make_pooled(&engine, &settings, &instance_id).await;
                    let made = match made {
                        Ok(pooled) if draining.get() => {
                            remove_pooled(engine, pooled).await;
                            None
                        }
                        made => Some(made),
                    };
                    filling.set(filling.get() - 1);
                    made
                }
                .into_actor(self)
                .map(|made, act, ctx| {
                    let Some(made) = made else { return };
                    match made {
                        Ok(pooled) => {
                            log::debug!("warm pool: {} ready", pooled.name);
                            act.ready.push_back(pooled);
                        }
                        Err(e) => {
                            log::warn!("warm pool: could not prepare a container: {e}");
                            if !act.retry_pending {
                                act.retry_pending = true;
                                ctx.run_later(RETRY_AFTER, |act, ctx| {
                                    act.retry_pending = false;
                                    act.refill(ctx);
                                });
                            }
                            return;
                        }
                    }
                    act.refill(ctx);
                }),
            );
        }
    }
}

impl Actor for WarmPool {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.target == 0 {
            return;
        }
        // An earlier run's pooled workspaces first: their containers are
        // gone (the reaper ran before the pool starts).
        let dir = self.settings.workspaces_dir();
        let settings = self.settings.clone();
        ctx.wait(
            async move {
                let _ =
                    tokio::task::spawn_blocking(move || remove_leftovers(&settings, &dir)).await;
            }
            .into_actor(self),
        );
        ctx.run_later(Duration::ZERO, |act, ctx| act.refill(ctx));
    }
}

impl Handler<TakePooled> for WarmPool {
    type Result = MessageResult<TakePooled>;

    fn handle(&mut self, _: TakePooled, ctx: &mut Context<Self>) -> Self::Result {
        let taken = if self.draining.get() {
            None
        } else {
            self.ready.pop_front()
        };
        // Not at once: making a workspace (mkfs, mount) and a container
        // would compete for the machine with the session adopting this one,
        // whose first command is waiting.
        ctx.run_later(REFILL_AFTER_TAKE, |act, ctx| act.refill(ctx));
        MessageResult(taken)
    }
}

impl Handler<PoolStatus> for WarmPool {
    type Result = MessageResult<PoolStatus>;

    fn handle(&mut self, _: PoolStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(PoolState {
            ready: self.ready.len(),
            filling: self.filling.get(),
        })
    }
}

impl Handler<DrainPool> for WarmPool {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, _: DrainPool, _: &mut Context<Self>) -> Self::Result {
        self.draining.set(true);
        let pooled: Vec<Pooled> = self.ready.drain(..).collect();
        let engine = self.engine.clone();
        let filling = self.filling.clone();
        Box::pin(async move {
            let n = pooled.len();
            futures_util::future::join_all(
                pooled.into_iter().map(|p| remove_pooled(engine.clone(), p)),
            )
            .await;
            // Fills under way remove what they make; wait for them, so
            // nothing of the pool outlives the server.
            let give_up = std::time::Instant::now() + DRAIN_WAIT;
            while filling.get() > 0 && std::time::Instant::now() < give_up {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            n
        })
    }
}

/// Create and start one pooled container with a fresh workspace.
async fn make_pooled(
    engine: &Engine,
    settings: &Settings,
    instance_id: &str,
) -> Result<Pooled, SandboxError> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let id = &id[..12];
    let workspace = WorkspaceVolume::pooled(settings, id);
    let path = prepare_workspace(&workspace).await?;
    let name = super::container_name(instance_id, &format!("pool-{id}"));
    let labels = HashMap::from([
        (LABEL_INSTANCE.to_string(), instance_id.to_string()),
        (LABEL_POOL.to_string(), "1".to_string()),
    ]);
    let _turn = engine.starts.enter().await;
    let made = async {
        let id = create_hardened(&engine.docker, &settings.sandbox, &name, labels, &path).await?;
        engine.start(&name).await?;
        Ok::<_, SandboxError>(id)
    }
    .await;
    let pooled = Pooled {
        id: String::new(),
        name,
        workspace,
        channel: None,
    };
    match made {
        Ok(id) => {
            // Not worth failing the fill for: the session opens its own.
            let channel = Channel::open(&engine.docker, &pooled.name, &settings.sandbox.image)
                .await
                .inspect_err(|e| log::warn!("warm pool: {}: {e}", pooled.name))
                .ok();
            Ok(Pooled {
                id,
                channel,
                ..pooled
            })
        }
        Err(e) => {
            remove_pooled(engine.clone(), pooled).await;
            Err(e)
        }
    }
}

/// Remove a pooled container and its workspace (drain, or a failed fill
/// or adoption).
pub(super) async fn remove_pooled(engine: Engine, pooled: Pooled) {
    if let Some(channel) = &pooled.channel {
        channel.close(POOL_CLOSE_WAIT).await;
    }
    if let Err(e) = engine.remove_by_name(&pooled.name).await {
        log::warn!("warm pool: could not remove {}: {e}", pooled.name);
    }
    let workspace = pooled.workspace;
    let removed = tokio::task::spawn_blocking(move || workspace.remove()).await;
    if let Ok(Err(e)) = removed {
        log::warn!("warm pool: could not remove a workspace: {e}");
    }
}

/// Pooled workspaces left by an earlier run (their containers are gone).
fn remove_leftovers(settings: &Settings, dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(id) = name.strip_prefix(POOL_PREFIX) {
            if let Err(e) = WorkspaceVolume::pooled(settings, id).remove() {
                log::warn!("warm pool: could not remove leftover {name}: {e}");
            }
        }
    }
}
