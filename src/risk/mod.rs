//! Risk classification of tool calls (DESIGN.md §5): how dangerous a shell
//! command or a Python program looks, judged from its syntax tree, with the
//! reasons in plain words for the person who approves it.
//!
//! # Layout
//!
//! - this file: the public entry points, the [`Assessment`] that collects
//!   findings while a classifier walks a tree, and the judgement of a path
//!   that something writes to (shared by both languages);
//! - `shell.rs`: tree-sitter-bash walk, wrapper unwrapping, the command
//!   table;
//! - `options.rs`: the options IronClaw knows for each command, and the
//!   check that finds one it does not know;
//! - `python.rs`: tree-sitter-python walk, import/alias tracking, the call
//!   table;
//! - `tests.rs`: the tables of cases.
//!
//! Everything here is a pure function of the text and of a
//! [`WorkspaceView`]: the classifier itself reads no file and runs no
//! program. The view answers what the workspace holds (the real one in
//! [`crate::workspace`], confined to the workspace; an in-memory one in the
//! tests), so a call that runs a workspace file is judged on that file's
//! contents, and a write onto an existing file is told apart from a new one.
//! What cannot be decided is high risk.

mod options;
mod python;
mod shell;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};
use tree_sitter::Node;

use crate::protocol::{Risk, RiskLevel, Tool};

/// Where the agent's files live inside the sandbox (DESIGN.md §4).
const WORKSPACE: &str = "/workspace";

/// Longest code we parse. The sandbox accepts at most 1 MiB of code per call
/// (DESIGN.md §4); anything longer cannot run anyway, so it is not worth the
/// parse time.
const MAX_CODE_BYTES: usize = 1 << 20;

/// How deep a classifier follows a syntax tree. Each level is a stack frame
/// of the recursive walk; real commands and scripts stay far below this, and
/// a pathological input (thousands of nested parentheses) must not overflow
/// the stack of the actor thread that classifies it.
const MAX_SYNTAX_DEPTH: usize = 200;

/// How many times code nested in strings is re-parsed (`sh -c "bash -c '…'"`,
/// `python -c` inside `sh -c`, a literal command in `os.system`). Real
/// commands nest two or three levels; deeper nesting is only an attempt to
/// hide something.
const MAX_NESTING: usize = 8;

/// The reason given when a shell command only reads.
const SHELL_LOW_REASON: &str = "only reads files or shows information";

/// The reason given when a Python program only computes and reads.
const PYTHON_LOW_REASON: &str = "only computes, reads files and prints; changes nothing";

/// Largest workspace file the classifier reads to judge it. The same as the
/// largest code accepted for one call: a script bigger than that is not
/// something a person reviews, and reading it must not stall the review.
pub const MAX_JUDGED_FILE_BYTES: usize = MAX_CODE_BYTES;

/// How many workspace files one call may be judged on (a script that runs
/// scripts that import modules …). Real projects stay far below; past it the
/// call is high rather than the review slow.
const MAX_JUDGED_FILES: usize = 64;

/// What the workspace holds at one path (workspace-relative, normalised).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Missing,
    File {
        size: u64,
    },
    Folder,
    /// A symbolic link: writing to it writes wherever it points, which may
    /// be outside the workspace.
    Link,
    /// A fifo, socket or device, or a path that could not be looked at.
    Other,
}

/// The classifier's window on the workspace. Paths are relative to the
/// workspace root, already normalised (no `.`, `..` or leading `/`).
pub trait WorkspaceView {
    fn entry(&self, path: &str) -> Entry;
    /// The contents of the regular file at `path`; `None` when it is not one
    /// or is larger than [`MAX_JUDGED_FILE_BYTES`].
    fn read(&self, path: &str) -> Option<Vec<u8>>;
}

/// A view of an empty workspace, for callers that only have the text.
pub struct EmptyWorkspace;

impl WorkspaceView for EmptyWorkspace {
    fn entry(&self, _: &str) -> Entry {
        Entry::Missing
    }
    fn read(&self, _: &str) -> Option<Vec<u8>> {
        None
    }
}

/// A workspace file the judgement read, with the SHA-256 of what it read.
/// The call may only run while the file still has that hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JudgedFile {
    /// Workspace-relative.
    pub path: String,
    /// Lowercase hex.
    pub sha256: String,
}

/// A classification and the files it rests on.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub risk: Risk,
    /// Sorted by path; empty when the call runs no workspace file.
    pub files: Vec<JudgedFile>,
}

/// The SHA-256 of `bytes` in lowercase hex, as `sha256sum` prints it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Classifies one tool call against an empty workspace.
pub fn classify(tool: Tool, code: &str) -> Risk {
    classify_with(tool, code, &EmptyWorkspace).risk
}

/// Classifies one tool call against what the workspace holds now.
pub fn classify_with(tool: Tool, code: &str, view: &dyn WorkspaceView) -> Judgement {
    let mut found = Assessment::new(view);
    let low_reason = match tool {
        Tool::Shell => {
            shell::assess(code, &mut found, 0);
            SHELL_LOW_REASON
        }
        Tool::Python => {
            python::assess(code, &mut found, 0);
            PYTHON_LOW_REASON
        }
    };
    let files = found
        .judged
        .iter()
        .map(|(path, sha256)| JudgedFile {
            path: path.clone(),
            sha256: sha256.clone(),
        })
        .collect();
    Judgement {
        risk: found.into_risk(low_reason),
        files,
    }
}

/// Classifies a command line as `bash -c` would run it.
#[cfg(test)]
pub fn classify_shell(command: &str) -> Risk {
    classify(Tool::Shell, command)
}

/// Classifies a Python program as `python3` would run it.
#[cfg(test)]
pub fn classify_python(code: &str) -> Risk {
    classify(Tool::Python, code)
}

/// The language of a workspace file that a call runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileLanguage {
    Shell,
    Python,
    /// Decided by the file's `#!` line (a program run by path).
    ByShebang,
    /// An interpreter the checker has no grammar for (`perl x.pl`).
    Other(&'static str),
}

/// The findings of one classification, in the order they were made.
struct Assessment<'v> {
    /// Each finding with its level; duplicates are dropped at the end.
    findings: Vec<(RiskLevel, String)>,
    /// Set once a command may have moved the working directory out of the
    /// workspace (`cd /etc`, `os.chdir(path)`): from then on a relative path
    /// no longer means "inside the workspace".
    left_workspace: bool,
    /// The working directory while it is inside the workspace
    /// (workspace-relative, `""` for the root): after `cd sub`, `> f` writes
    /// `sub/f`. Meaningless once `left_workspace` is set.
    cwd: String,
    /// Other folders the working directory may be in, when a `cd` ran only
    /// maybe (`false && cd sub`, an `if` branch, a function body): a
    /// relative write is judged in each of them too.
    cwd_maybe: BTreeSet<String>,
    /// Where the last file judged left the working directory, for
    /// `source`, which runs it in the caller's own shell.
    sourced_dir: Option<WorkingDir>,
    view: &'v dyn WorkspaceView,
    /// Workspace files whose contents were judged: path -> SHA-256.
    judged: BTreeMap<String, String>,
    /// Files being judged right now, innermost last: a script that runs
    /// itself is judged once.
    judging: Vec<String>,
    /// Workspace paths this call writes, so far in the walk. A file the
    /// call writes and then runs or imports cannot be judged beforehand.
    written: BTreeSet<String>,
    /// The whole new contents of some of the `written` files, when the call
    /// spells them out as literal text (`cat > x.py <<'EOF' … EOF`): a file
    /// run after that is judged on this text. Any other write to the file
    /// forgets it.
    written_text: BTreeMap<String, String>,
    /// Workspace paths written more than once by this call: which write
    /// lands last may depend on what ran (`cp a x.py || cat > x.py <<…`),
    /// so no literal text is trusted for them.
    rewritten: BTreeSet<String>,
    /// Set once the call started something that runs alongside what
    /// follows (`&`): it may rewrite any file at any time, so no text
    /// written later can be trusted to stay.
    runs_alongside: bool,
    /// Where Python looks for modules first (`sys.path[0]`): the folder of
    /// the Python file being judged, the workspace root otherwise.
    module_dirs: Vec<String>,
}

impl<'v> Assessment<'v> {
    fn new(view: &'v dyn WorkspaceView) -> Self {
        Assessment {
            findings: Vec::new(),
            left_workspace: false,
            cwd: String::new(),
            cwd_maybe: BTreeSet::new(),
            sourced_dir: None,
            view,
            judged: BTreeMap::new(),
            judging: Vec::new(),
            written: BTreeSet::new(),
            written_text: BTreeMap::new(),
            rewritten: BTreeSet::new(),
            runs_alongside: false,
            module_dirs: Vec::new(),
        }
    }

    fn add(&mut self, level: RiskLevel, reason: impl Into<String>) {
        self.findings.push((level, reason.into()));
    }

    fn medium(&mut self, reason: impl Into<String>) {
        self.add(RiskLevel::Medium, reason);
    }

    fn high(&mut self, reason: impl Into<String>) {
        self.add(RiskLevel::High, reason);
    }

    fn level(&self) -> RiskLevel {
        self.findings
            .iter()
            .map(|(level, _)| *level)
            .max()
            .unwrap_or(RiskLevel::Low)
    }

    /// Judges a write to `path` done by `actor` (a command name, or the path
    /// itself for a redirection). `None` is a path only known at run time;
    /// `shown` is how the person sees it in that case.
    fn write_to(&mut self, path: Option<&str>, shown: &str, actor: &str) {
        self.write(path, shown, actor, Write::Replace);
    }

    /// Judges a write that keeps what the file holds (`>>`, `touch`,
    /// `mkdir`): only where it lands matters.
    fn append_to(&mut self, path: Option<&str>, shown: &str, actor: &str) {
        self.write(path, shown, actor, Write::Keep);
    }

    fn write(&mut self, path: Option<&str>, shown: &str, actor: &str, how: Write) {
        self.in_each_dir(path, |found| found.write_here(path, shown, actor, how));
    }

    /// Runs `judge` with the working directory set to each folder it may
    /// be in, when `path` is relative and there is more than one.
    fn in_each_dir(&mut self, path: Option<&str>, mut judge: impl FnMut(&mut Self)) {
        judge(self);
        if !path.is_some_and(is_relative) || self.cwd_maybe.is_empty() {
            return;
        }
        let cwd = self.cwd.clone();
        for other in self.cwd_maybe.clone() {
            self.cwd = other;
            judge(self);
        }
        self.cwd = cwd;
    }

    fn write_here(&mut self, path: Option<&str>, shown: &str, actor: &str, how: Write) {
        if let Some(inside) = path.and_then(|p| self.workspace_path(p)) {
            if !self.written.insert(inside.clone()) {
                self.rewritten.insert(inside.clone());
            }
            self.written_text.remove(&inside);
            match self.view.entry(&inside) {
                Entry::File { size } if how == Write::Replace => self.high(format!(
                    "overwrites {} ({})",
                    shell::show(&inside),
                    human_size(size)
                )),
                Entry::Link => self.high(format!(
                    "writes through the link {}, which may lead outside the workspace",
                    shell::show(&inside)
                )),
                Entry::Other => self.high(format!(
                    "writes to {}, which is not a regular file",
                    shell::show(&inside)
                )),
                Entry::Missing | Entry::Folder | Entry::File { .. } => {}
            }
        }
        let Some(path) = path else {
            self.high(format!(
                "writes to a place only known at run time (`{shown}`), which cannot be checked"
            ));
            return;
        };
        match place_of(&self.resolve(path), self.left_workspace) {
            Place::Discard => {}
            Place::Workspace => self.medium(format!("changes files in the workspace (`{actor}`)")),
            Place::GitInternals => self.high(format!(
                "changes git's own settings or hooks (`{path}`), which can make later git commands run programs"
            )),
            Place::Outside if self.left_workspace && is_relative(path) => self.high(format!(
                "writes to `{path}` after moving to a folder that may be outside the workspace"
            )),
            Place::Outside => self.high(format!("writes outside the workspace (`{path}`)")),
        }
    }

    /// Records that the write just judged at `path` leaves exactly `text` in
    /// the file, so that running the file later is judged on it.
    fn wrote_text(&mut self, path: &str, text: &str) {
        if self.runs_alongside {
            return;
        }
        if let Some(inside) = self.workspace_path(path) {
            let first_and_new = self.written.contains(&inside)
                && !self.rewritten.contains(&inside)
                && self.view.entry(&inside) == Entry::Missing;
            if first_and_new {
                self.written_text.insert(inside, text.to_string());
            }
        }
    }

    /// Something ran that may write files the classifier cannot follow (a
    /// build, a program, an archive unpacked over the workspace): the text
    /// recorded by [`Assessment::wrote_text`] may no longer be there.
    fn files_may_change(&mut self) {
        self.written_text.clear();
    }

    /// Something now runs alongside the rest of the call (`&`, a `trap`
    /// that may fire before any command).
    fn started_alongside(&mut self) {
        self.runs_alongside = true;
        self.files_may_change();
    }

    /// `path` relative to the workspace root when it lies inside it (the root
    /// itself is `""`).
    fn workspace_path(&self, path: &str) -> Option<String> {
        workspace_path(&self.resolve(path), self.left_workspace)
    }

    /// `path` as the command names it, made absolute when the working
    /// directory is a known folder below the workspace root.
    fn resolve(&self, path: &str) -> String {
        if self.cwd.is_empty() || self.left_workspace || !is_relative(path) {
            path.to_string()
        } else {
            format!("{WORKSPACE}/{}/{path}", self.cwd)
        }
    }

    /// Where relative paths currently count from, to be restored with
    /// [`Assessment::return_to`] when a process of its own (a subshell, a
    /// script run by an interpreter) ends.
    fn working_dir(&self) -> WorkingDir {
        WorkingDir {
            left_workspace: self.left_workspace,
            cwd: self.cwd.clone(),
            cwd_maybe: self.cwd_maybe.clone(),
        }
    }

    fn return_to(&mut self, dir: WorkingDir) {
        self.left_workspace = dir.left_workspace;
        self.cwd = dir.cwd;
        self.cwd_maybe = dir.cwd_maybe;
    }

    /// After a part of the call that may or may not have run, which was
    /// walked starting from `before`: the working directory is where that
    /// part left it, or where it was before.
    fn maybe_moved_from(&mut self, before: WorkingDir) {
        self.left_workspace |= before.left_workspace;
        self.cwd_maybe.extend(before.cwd_maybe);
        self.cwd_maybe.insert(before.cwd);
        self.cwd_maybe.remove(&self.cwd);
    }

    /// A command moves the working directory to `dir` (`None`: a place
    /// only known at run time, `-`, the home folder). Only a plain move to a
    /// folder inside the workspace is followed:
    /// - a folder the workspace holds, or one this call created, becomes
    ///   where relative paths count from;
    /// - a folder that does not exist leaves the directory where it was
    ///   (`cd` fails; with `;` the next command runs in the old place);
    /// - anything else (outside, through a link, not a folder, unknown) is
    ///   a place the classifier cannot follow: relative writes are high.
    fn change_dir(&mut self, dir: Option<&str>) {
        let inside = dir
            .filter(|d| *d != "-")
            .and_then(|d| self.workspace_path(d));
        let Some(inside) = inside else {
            self.left_workspace = true;
            return;
        };
        if self.left_workspace {
            return;
        }
        if dir.is_some_and(is_relative) && !self.cwd_maybe.is_empty() {
            // Relative to a folder that is itself uncertain: not followed.
            self.left_workspace = true;
            return;
        }
        let mut prefix = String::new();
        for part in inside.split('/').filter(|p| !p.is_empty()) {
            prefix = if prefix.is_empty() {
                part.to_string()
            } else {
                format!("{prefix}/{part}")
            };
            if prefix == ".git" || prefix.starts_with(".git/") {
                self.left_workspace = true;
                return;
            }
            match self.view.entry(&prefix) {
                Entry::Folder => {}
                Entry::Missing if self.written.contains(&prefix) => {}
                Entry::Missing => return,
                Entry::File { .. } | Entry::Link | Entry::Other => {
                    self.left_workspace = true;
                    return;
                }
            }
        }
        self.cwd = inside;
        self.cwd_maybe.clear();
    }

    /// Judges running the workspace file at `path` (as the command sees
    /// it): its contents are classified as `language`, the strictest
    /// finding wins, and the reasons name the file. A file that cannot be
    /// read or parsed makes the call high.
    fn run_file(&mut self, path: &str, language: FileLanguage, nesting: usize) {
        self.in_each_dir(Some(path), |found| {
            found.load_file(path, language, nesting, "runs")
        });
    }

    /// Judges `source path`: the file runs in this very shell, so a `cd`
    /// in it moves what follows.
    fn source_file(&mut self, path: &str, nesting: usize) {
        let working_dir = self.working_dir();
        self.sourced_dir = None;
        self.load_file(path, FileLanguage::Shell, nesting, "runs");
        if let Some(moved) = self.sourced_dir.take() {
            self.return_to(moved);
        } else {
            self.return_to(working_dir);
        }
    }

    /// Judges the workspace file at `path` that the call loads; `verb` says
    /// how in the reasons ("runs", "imports"). Importing a module that only
    /// defines things adds nothing of its own.
    fn load_file(&mut self, path: &str, language: FileLanguage, nesting: usize, verb: &str) {
        let Some(inside) = self.workspace_path(path) else {
            self.high(format!(
                "runs `{}`, which is outside the workspace and cannot be checked",
                shell::show(path)
            ));
            return;
        };
        let shown = shell::show(&inside);
        if self.judging.contains(&inside) {
            return;
        }
        if nesting > MAX_NESTING || self.judged.len() >= MAX_JUDGED_FILES {
            self.high(format!(
                "runs {shown}, one file too many or too deep to check"
            ));
            return;
        }
        let text = if self.written.contains(&inside) {
            // Written by this very call: judged on the text the call puts
            // there, which is part of the code approved, so no hash is kept.
            let Some(text) = self.written_text.get(&inside).cloned() else {
                self.high(format!(
                    "runs {shown}, which this same call writes first, so what runs cannot be checked"
                ));
                return;
            };
            text
        } else {
            let contents = match self.view.entry(&inside) {
                Entry::File { .. } => self.view.read(&inside),
                Entry::Missing => {
                    self.high(format!(
                        "runs {shown}, which is not in the workspace, so it cannot be checked"
                    ));
                    return;
                }
                Entry::Folder | Entry::Link | Entry::Other => None,
            };
            let Some(bytes) = contents else {
                self.high(format!(
                    "runs {shown}, which cannot be read, so it cannot be checked"
                ));
                return;
            };
            self.judged.insert(inside.clone(), sha256_hex(&bytes));
            let Ok(text) = String::from_utf8(bytes) else {
                self.high(format!(
                    "runs {shown}, a binary program that cannot be checked"
                ));
                return;
            };
            text
        };
        let language = match language {
            FileLanguage::ByShebang => shebang_language(&text),
            other => other,
        };
        if verb == "runs" {
            self.medium(format!("runs {shown}"));
        }
        // The file's findings are collected apart, then re-worded to name it.
        let outer = std::mem::take(&mut self.findings);
        let working_dir = self.working_dir();
        self.judging.push(inside.clone());
        match language {
            FileLanguage::Shell | FileLanguage::ByShebang => {
                shell::assess(&text, self, nesting + 1)
            }
            FileLanguage::Python => {
                let dir = inside.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                self.module_dirs.push(dir.to_string());
                python::assess(&text, self, nesting + 1);
                self.module_dirs.pop();
            }
            FileLanguage::Other(language) => {
                if shell::has_risky_words(&text) {
                    self.high(format!(
                        "is a {language} program that may run commands, change files or use the network"
                    ));
                } else {
                    self.medium(format!("is a {language} program"));
                }
            }
        }
        self.judging.pop();
        self.sourced_dir = Some(self.working_dir());
        self.return_to(working_dir);
        let inner = std::mem::replace(&mut self.findings, outer);
        for (level, reason) in inner {
            if level >= RiskLevel::Medium {
                self.add(level, format!("{verb} {shown}, which {reason}"));
            }
        }
    }

    /// Judges importing the Python module `module` (dotted): every workspace
    /// file the import would load is judged like a program.
    fn import_module(&mut self, module: &str, nesting: usize) {
        let dir = self.module_dirs.last().cloned().unwrap_or_default();
        let mut prefix = String::new();
        for part in module.split('.') {
            if part.is_empty() {
                return;
            }
            prefix = if prefix.is_empty() {
                part.to_string()
            } else {
                format!("{prefix}/{part}")
            };
            let base = if dir.is_empty() {
                prefix.clone()
            } else {
                format!("{dir}/{prefix}")
            };
            let mut found_one = false;
            for candidate in [format!("{base}.py"), format!("{base}/__init__.py")] {
                if self.written.contains(&candidate) && !self.written_text.contains_key(&candidate)
                {
                    self.high(format!(
                        "imports {}, which this same call writes first, so what runs cannot be checked",
                        shell::show(&candidate)
                    ));
                    return;
                }
                let spelled_out = self.written_text.contains_key(&candidate);
                if !spelled_out && matches!(self.view.entry(&candidate), Entry::Missing) {
                    continue;
                }
                found_one = true;
                let absolute = format!("{WORKSPACE}/{candidate}");
                self.load_file(&absolute, FileLanguage::Python, nesting, "imports");
            }
            if !found_one && !matches!(self.view.entry(&base), Entry::Folder) {
                return;
            }
        }
    }

    /// Whether `path` lies outside the workspace (or cannot be placed).
    fn is_outside(&self, path: Option<&str>) -> bool {
        match path {
            None => true,
            Some(path) => matches!(self.place(path), Place::Outside | Place::GitInternals),
        }
    }

    /// Where a write to `path` lands; the worst place when the working
    /// directory may be in more than one folder.
    fn place(&self, path: &str) -> Place {
        let mut places = vec![place_of(&self.resolve(path), self.left_workspace)];
        if is_relative(path) {
            for other in &self.cwd_maybe {
                let resolved = if other.is_empty() {
                    path.to_string()
                } else {
                    format!("{WORKSPACE}/{other}/{path}")
                };
                places.push(place_of(&resolved, self.left_workspace));
            }
        }
        for worst in [Place::Outside, Place::GitInternals, Place::Workspace] {
            if places.contains(&worst) {
                return worst;
            }
        }
        Place::Discard
    }

    /// The final verdict: the strictest level wins. Reasons below medium are
    /// only shown when nothing is riskier, so a person approving a deletion
    /// is not distracted by "only reads files".
    fn into_risk(self, low_reason: &str) -> Risk {
        let level = self.level();
        let mut findings = self.findings;
        // Stable: within a level, reasons keep the order of the command.
        findings.sort_by_key(|(level, _)| std::cmp::Reverse(*level));
        let mut reasons: Vec<String> = Vec::new();
        for (finding_level, reason) in findings {
            let shown = if level == RiskLevel::Low {
                true
            } else {
                finding_level >= RiskLevel::Medium
            };
            if shown && !reasons.contains(&reason) {
                reasons.push(reason);
            }
        }
        if reasons.is_empty() {
            reasons.push(low_reason.to_string());
        }
        Risk { level, reasons }
    }
}

/// Where relative paths count from, saved while a process of its own (a
/// subshell, a script run by an interpreter) may move it.
#[derive(Debug, Clone)]
struct WorkingDir {
    left_workspace: bool,
    cwd: String,
    cwd_maybe: BTreeSet<String>,
}

/// Whether a write replaces what a file holds or keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    Replace,
    Keep,
}

/// A size as a person reads it: "812 bytes", "14 KB", "3.2 MB".
fn human_size(bytes: u64) -> String {
    const KB: u64 = 1024;
    const MB: u64 = 1024 * KB;
    if bytes < KB {
        format!("{bytes} bytes")
    } else if bytes < MB {
        format!("{} KB", bytes.div_ceil(KB))
    } else {
        format!("{:.1} MB", bytes as f64 / MB as f64)
    }
}

/// The language a `#!` line names; a file without one runs under the shell.
fn shebang_language(text: &str) -> FileLanguage {
    let Some(line) = text.lines().next().and_then(|l| l.strip_prefix("#!")) else {
        return FileLanguage::Shell;
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    let program = match words.as_slice() {
        [env, rest @ ..] if env.ends_with("/env") => rest
            .iter()
            .find(|w| !w.starts_with('-'))
            .copied()
            .unwrap_or_default(),
        [program, ..] => program,
        [] => "",
    };
    let name = program.rsplit('/').next().unwrap_or_default();
    if name.starts_with("python") {
        FileLanguage::Python
    } else if listed("sh bash dash ash ksh", name) {
        FileLanguage::Shell
    } else {
        FileLanguage::Other("script")
    }
}

/// `path` (as a command in the sandbox names it) relative to the workspace
/// root, when it lies inside; lexical, like [`place_of`].
fn workspace_path(path: &str, left_workspace: bool) -> Option<String> {
    if path.starts_with('~') || (!path.starts_with('/') && left_workspace) {
        return None;
    }
    let parts = path.split('/').filter(|p| !p.is_empty() && *p != ".");
    if path.starts_with('/') {
        let mut root: Vec<&str> = Vec::new();
        for part in parts {
            if part == ".." {
                root.pop();
            } else {
                root.push(part);
            }
        }
        let (first, inside) = root.split_first()?;
        return (*first == WORKSPACE.trim_start_matches('/')).then(|| inside.join("/"));
    }
    let mut inside: Vec<&str> = Vec::new();
    for part in parts {
        if part == ".." {
            inside.pop()?;
        } else {
            inside.push(part);
        }
    }
    Some(inside.join("/"))
}

/// Where a write lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// `/dev/null` and the process's own output streams.
    Discard,
    Workspace,
    /// Inside the workspace but under `.git/`: hooks and config there make
    /// later, harmless-looking git commands run programs.
    GitInternals,
    /// Anywhere else, including the home directory (`~`) and paths whose
    /// `..` climb out of the workspace.
    Outside,
}

/// Places a path written to, lexically: no symlink is resolved (the
/// classifier reads no files). Relative paths count from the workspace root,
/// which is where commands start (DESIGN.md §4), unless the working
/// directory may have left it.
fn place_of(path: &str, left_workspace: bool) -> Place {
    const DISCARDS: [&str; 7] = [
        "/dev/null",
        "/dev/stdout",
        "/dev/stderr",
        "/dev/fd/1",
        "/dev/fd/2",
        "/proc/self/fd/1",
        "/proc/self/fd/2",
    ];
    if DISCARDS.contains(&path) {
        return Place::Discard;
    }
    if path.starts_with('~') {
        return Place::Outside;
    }
    let absolute = path.starts_with('/');
    if !absolute && left_workspace {
        return Place::Outside;
    }
    // Components below the workspace root, after `.` and `..` are applied.
    let mut inside: Vec<&str> = Vec::new();
    let mut parts = path.split('/').filter(|p| !p.is_empty() && *p != ".");
    if absolute {
        let mut root: Vec<&str> = Vec::new();
        for part in parts {
            if part == ".." {
                root.pop();
            } else {
                root.push(part);
            }
        }
        let workspace = WORKSPACE.trim_start_matches('/');
        if root.first() != Some(&workspace) {
            return Place::Outside;
        }
        inside.extend(root.into_iter().skip(1));
    } else {
        for part in parts.by_ref() {
            if part == ".." {
                if inside.pop().is_none() {
                    return Place::Outside;
                }
            } else {
                inside.push(part);
            }
        }
    }
    if inside.contains(&".git") {
        Place::GitInternals
    } else {
        Place::Workspace
    }
}

/// Whether `word` is one of the whitespace-separated words of `list`. Long
/// tables of names are kept as one string each, so that they read as a
/// paragraph rather than a column of hundreds of lines.
fn listed(list: &str, word: &str) -> bool {
    list.split_whitespace().any(|w| w == word)
}

/// Whether `path` counts from the working directory.
fn is_relative(path: &str) -> bool {
    !path.starts_with('/') && !path.starts_with('~')
}

/// Quotes a word so that the shell reads it back as exactly that word; used
/// when a Python argument list is judged as a shell command.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%^".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A grammar and the words used for text it cannot check.
struct Grammar {
    language: fn() -> tree_sitter::Language,
    /// For "the … grammar failed to load".
    name: &'static str,
    /// What hides inside quoting: "code", "commands".
    hidden: &'static str,
    /// Said of text with a syntax error.
    invalid: &'static str,
}

/// Parse `src` for a classifier. Text that cannot be checked at all (too
/// deep, too long, no parser) is recorded as high and `None` returned; a
/// syntax error is recorded as high and the tree still returned, so the
/// parts that did parse are judged too.
fn parse_for_check(
    src: &str,
    grammar: &Grammar,
    found: &mut Assessment<'_>,
    nesting: usize,
) -> Option<tree_sitter::Tree> {
    if nesting > MAX_NESTING {
        found.high(format!(
            "hides {} inside too many layers of quoting, which cannot be checked",
            grammar.hidden
        ));
        return None;
    }
    if src.len() > MAX_CODE_BYTES {
        found.high("is too long to check");
        return None;
    }
    let mut parser = tree_sitter::Parser::new();
    if parser.set_language(&(grammar.language)()).is_err() {
        found.high(format!(
            "could not be checked: the {} grammar failed to load",
            grammar.name
        ));
        return None;
    }
    let Some(tree) = parser.parse(src, None) else {
        found.high("could not be understood, so it cannot be checked");
        return None;
    };
    let root = tree.root_node();
    if root.has_error() {
        found.high(match first_error(root) {
            Some(node) if !node.is_missing() => format!(
                "{} (near `{}`), so it cannot be checked",
                grammar.invalid,
                shell::show(src.get(node.byte_range()).unwrap_or_default())
            ),
            _ => format!(
                "is incomplete or {}, so it cannot be checked",
                grammar.invalid.trim_start_matches("is ")
            ),
        });
    }
    Some(tree)
}

/// The first ERROR or MISSING node, to point at in the reason.
fn first_error(root: Node) -> Option<Node> {
    let mut stack = vec![root];
    while let Some(node) = stack.pop() {
        if node.is_error() || node.is_missing() {
            return Some(node);
        }
        let mut cursor = node.walk();
        let children: Vec<Node> = node.children(&mut cursor).collect();
        stack.extend(children.into_iter().rev());
    }
    None
}

/// The children of `node` with the field each fills.
fn fielded_children(node: Node) -> Vec<(Option<&'static str>, Node)> {
    let mut out = Vec::new();
    let mut cursor = node.walk();
    if cursor.goto_first_child() {
        loop {
            out.push((cursor.field_name(), cursor.node()));
            if !cursor.goto_next_sibling() {
                break;
            }
        }
    }
    out
}
