//! The ApprovalActor: one per live session. It judges a tool call's risk
//! (the parser-based classifier in [`crate::risk`], run off the actor
//! thread), then decides whether the call may run by policy (the session's
//! approval mode, the risk, and commands the person chose to remember), or
//! opens a pending approval and waits for the person, denying it when it
//! expires.
//!
//! Pending approvals are `approval id -> oneshot::Sender<Verdict>`: the
//! AgentActor holds the receiving end and carries on when it resolves.
//!
//! The classifier sees the session's workspace (through the confined
//! [`Workspace`] view), so a call that runs a workspace file is judged on
//! that file. The review hands back the SHA-256 of every file it read; the
//! sandbox refuses to run the call if any of them changed (what is approved
//! is what runs), and a remembered approval only covers the same code over
//! the same files.
//!
//! Messages: [`ReviewCall`], [`Decide`], [`Withdraw`].

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use actix::prelude::*;
use chrono::{SecondsFormat, Utc};
use tokio::sync::oneshot;

use crate::protocol::{
    ApprovalId, ApprovalMode, DecidedBy, Decision, Resolution, Risk, RiskLevel, Tool,
};
use crate::provider::ToolCall;
use crate::risk::{sha256_hex, EmptyWorkspace, JudgedFile, Judgement};
use crate::workspace::Workspace;

/// How a review ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub resolution: Resolution,
    pub by: DecidedBy,
}

/// What the agent gets back from a review: the call's risk and what
/// happens next.
#[derive(Debug)]
pub struct Reviewed {
    pub risk: Risk,
    /// The workspace files the risk rests on, with their hashes: the call
    /// may only run while they are unchanged.
    pub files: Vec<JudgedFile>,
    pub review: Review,
}

/// Whether a reviewed call runs, or waits for the person.
#[derive(Debug)]
pub enum Review {
    /// Decided by policy at once.
    Decided(Verdict),
    /// The person must decide. Announce the request, then wait on `verdict`.
    Ask {
        approval_id: ApprovalId,
        /// RFC 3339.
        expires_at: String,
        verdict: oneshot::Receiver<Verdict>,
    },
}

/// Whether `mode` needs the person for a call of `level`.
pub fn needs_person(mode: ApprovalMode, level: RiskLevel) -> bool {
    match mode {
        ApprovalMode::Always => true,
        ApprovalMode::Risky => level >= RiskLevel::High,
        ApprovalMode::Never => false,
    }
}

/// Judge a tool call's risk and decide whether it may run.
#[derive(Message)]
#[rtype(result = "Reviewed")]
pub struct ReviewCall {
    pub call: ToolCall,
    pub mode: ApprovalMode,
}

/// The person's answer to a pending approval.
#[derive(Message)]
#[rtype(result = "Result<(), ApprovalError>")]
pub struct Decide {
    pub approval_id: ApprovalId,
    pub decision: Decision,
    /// Approve the same command without asking for the rest of the session.
    pub remember: bool,
}

/// The turn was cancelled: drop a pending approval without a verdict.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Withdraw {
    pub approval_id: ApprovalId,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApprovalError {
    #[error("There is no pending approval with that id; it may have been answered in another tab or expired.")]
    Unknown,
}

/// What a remembered approval covers: the tool, the SHA-256 of the code,
/// and the workspace files it was judged on with their hashes.
type Remembered = (Tool, String, Vec<JudgedFile>);

struct Pending {
    /// What `remember` would store.
    covers: Remembered,
    reply: oneshot::Sender<Verdict>,
    expiry: SpawnHandle,
}

pub struct ApprovalActor {
    /// A pending approval is denied after this long.
    timeout: Duration,
    pending: HashMap<ApprovalId, Pending>,
    /// Commands approved with `remember`: tool, code and judged files.
    remembered: HashSet<Remembered>,
    /// The session's workspace on the host; the classifier reads it.
    workspace: PathBuf,
}

impl ApprovalActor {
    pub fn new(timeout: Duration, workspace: PathBuf) -> Self {
        ApprovalActor {
            timeout,
            pending: HashMap::new(),
            remembered: HashSet::new(),
            workspace,
        }
    }
}

impl Actor for ApprovalActor {
    type Context = Context<Self>;
}

/// Pending approvals are lost with the actor; the agent treats a dropped
/// verdict as denied, so nothing runs unapproved.
impl Supervised for ApprovalActor {}

impl ApprovalActor {
    /// Policy, or a pending approval the person must answer.
    fn decide(
        &mut self,
        call: ToolCall,
        mode: ApprovalMode,
        judgement: &Judgement,
        ctx: &mut Context<Self>,
    ) -> Review {
        let risk = &judgement.risk;
        let covers = (
            call.tool,
            sha256_hex(call.code.as_bytes()),
            judgement.files.clone(),
        );
        let policy = |resolution| {
            Review::Decided(Verdict {
                resolution,
                by: DecidedBy::Policy,
            })
        };
        if !needs_person(mode, risk.level) {
            return policy(Resolution::Approved);
        }
        if self.remembered.contains(&covers) {
            return policy(Resolution::Approved);
        }
        let approval_id = ApprovalId::random();
        let expires_at = (Utc::now()
            + chrono::Duration::from_std(self.timeout).unwrap_or(chrono::Duration::minutes(5)))
        .to_rfc3339_opts(SecondsFormat::Secs, true);
        let (tx, rx) = oneshot::channel();
        let id = approval_id.clone();
        let expiry = ctx.run_later(self.timeout, move |act, _| {
            if let Some(p) = act.pending.remove(&id) {
                let _ = p.reply.send(Verdict {
                    resolution: Resolution::TimedOut,
                    by: DecidedBy::Policy,
                });
            }
        });
        self.pending.insert(
            approval_id.clone(),
            Pending {
                covers,
                reply: tx,
                expiry,
            },
        );
        Review::Ask {
            approval_id,
            expires_at,
            verdict: rx,
        }
    }
}

/// Classify the call's code on a blocking thread: a large program takes a
/// while to parse, the workspace files it runs are read from disk, and the
/// actor must keep answering decisions meanwhile.
async fn classify(tool: Tool, code: String, workspace: PathBuf) -> Judgement {
    tokio::task::spawn_blocking(move || {
        // A session whose workspace does not exist yet holds no files; the
        // check must not create it.
        if workspace.is_dir() {
            match Workspace::open(workspace) {
                Ok(view) => crate::risk::classify_with(tool, &code, &view),
                Err(_) => unchecked(),
            }
        } else {
            crate::risk::classify_with(tool, &code, &EmptyWorkspace)
        }
    })
    .await
    .unwrap_or_else(|_| unchecked())
}

/// The verdict when the check itself failed: high, so nothing unchecked
/// runs without the person.
fn unchecked() -> Judgement {
    Judgement {
        risk: Risk {
            level: RiskLevel::High,
            reasons: vec!["the command could not be checked".into()],
        },
        files: Vec::new(),
    }
}

impl Handler<ReviewCall> for ApprovalActor {
    type Result = ResponseActFuture<Self, Reviewed>;

    fn handle(&mut self, msg: ReviewCall, _: &mut Context<Self>) -> Self::Result {
        let (tool, code) = (msg.call.tool, msg.call.code.clone());
        Box::pin(
            classify(tool, code, self.workspace.clone())
                .into_actor(self)
                .map(move |judgement, act, ctx| {
                    let review = act.decide(msg.call, msg.mode, &judgement, ctx);
                    Reviewed {
                        risk: judgement.risk,
                        files: judgement.files,
                        review,
                    }
                }),
        )
    }
}

impl Handler<Decide> for ApprovalActor {
    type Result = Result<(), ApprovalError>;

    fn handle(&mut self, msg: Decide, ctx: &mut Context<Self>) -> Self::Result {
        let p = self
            .pending
            .remove(&msg.approval_id)
            .ok_or(ApprovalError::Unknown)?;
        ctx.cancel_future(p.expiry);
        let resolution = match msg.decision {
            Decision::Approve => {
                if msg.remember {
                    self.remembered.insert(p.covers);
                }
                Resolution::Approved
            }
            Decision::Deny => Resolution::Denied,
        };
        let _ = p.reply.send(Verdict {
            resolution,
            by: DecidedBy::User,
        });
        Ok(())
    }
}

impl Handler<Withdraw> for ApprovalActor {
    type Result = ();

    fn handle(&mut self, msg: Withdraw, ctx: &mut Context<Self>) {
        if let Some(p) = self.pending.remove(&msg.approval_id) {
            ctx.cancel_future(p.expiry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_ask_for_what_they_promise() {
        use ApprovalMode::*;
        use RiskLevel::*;
        for (mode, level, ask) in [
            (Always, Low, true),
            (Always, High, true),
            (Risky, Low, false),
            (Risky, Medium, false),
            (Risky, High, true),
            (Never, High, false),
            (Never, Low, false),
        ] {
            assert_eq!(needs_person(mode, level), ask, "{mode:?} {level:?}");
        }
    }

    fn review(code: &str, mode: ApprovalMode) -> ReviewCall {
        ReviewCall {
            call: ToolCall {
                id: "c".into(),
                tool: Tool::Shell,
                code: code.into(),
            },
            mode,
        }
    }

    #[actix_rt::test]
    async fn a_remembered_approval_covers_the_same_files_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.sh"), "rm -f x\n").unwrap();
        let addr = ApprovalActor::new(Duration::from_secs(60), dir.path().to_path_buf()).start();
        let reviewed = addr
            .send(review("bash a.sh", ApprovalMode::Risky))
            .await
            .unwrap();
        assert_eq!(reviewed.files.len(), 1);
        assert_eq!(reviewed.files[0].path, "a.sh");
        let Review::Ask { approval_id, .. } = reviewed.review else {
            panic!("did not ask for a script that deletes")
        };
        addr.send(Decide {
            approval_id,
            decision: Decision::Approve,
            remember: true,
        })
        .await
        .unwrap()
        .unwrap();
        let again = addr
            .send(review("bash a.sh", ApprovalMode::Risky))
            .await
            .unwrap();
        assert!(
            matches!(again.review, Review::Decided(_)),
            "same file: remembered"
        );
        // The same command over a changed file is a new question.
        std::fs::write(dir.path().join("a.sh"), "rm -rf .\n").unwrap();
        let changed = addr
            .send(review("bash a.sh", ApprovalMode::Risky))
            .await
            .unwrap();
        assert!(
            matches!(changed.review, Review::Ask { .. }),
            "changed file: asked"
        );
    }

    #[actix_rt::test]
    async fn decide_remember_and_expiry() {
        let addr =
            ApprovalActor::new(Duration::from_millis(200), PathBuf::from("/nonexistent")).start();
        // Low risk in risky mode: policy, and the risk is the classifier's.
        let reviewed = addr.send(review("ls", ApprovalMode::Risky)).await.unwrap();
        assert_eq!(reviewed.risk.level, RiskLevel::Low);
        let reviewed = addr
            .send(review("rm x", ApprovalMode::Never))
            .await
            .unwrap();
        assert_eq!(reviewed.risk.level, RiskLevel::High);
        match addr
            .send(review("ls", ApprovalMode::Risky))
            .await
            .unwrap()
            .review
        {
            Review::Decided(v) => assert_eq!(v.by, DecidedBy::Policy),
            Review::Ask { .. } => panic!("asked for ls"),
        }
        // High risk: ask; approve with remember; the same command then passes.
        let Review::Ask {
            approval_id,
            verdict,
            ..
        } = addr
            .send(review("rm x", ApprovalMode::Risky))
            .await
            .unwrap()
            .review
        else {
            panic!("did not ask for rm")
        };
        addr.send(Decide {
            approval_id: approval_id.clone(),
            decision: Decision::Approve,
            remember: true,
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(verdict.await.unwrap().resolution, Resolution::Approved);
        assert_eq!(
            addr.send(Decide {
                approval_id,
                decision: Decision::Deny,
                remember: false
            })
            .await
            .unwrap(),
            Err(ApprovalError::Unknown),
            "answered once only"
        );
        assert!(matches!(
            addr.send(review("rm x", ApprovalMode::Risky))
                .await
                .unwrap()
                .review,
            Review::Decided(Verdict {
                resolution: Resolution::Approved,
                by: DecidedBy::Policy
            })
        ));
        // Another command still asks, and expires as timed out.
        let Review::Ask { verdict, .. } = addr
            .send(review("rm y", ApprovalMode::Risky))
            .await
            .unwrap()
            .review
        else {
            panic!("did not ask for rm y")
        };
        let v = verdict.await.unwrap();
        assert_eq!(v.resolution, Resolution::TimedOut);
    }
}
