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
//! - `python.rs`: tree-sitter-python walk, import/alias tracking, the call
//!   table;
//! - `tests.rs`: the tables of cases.
//!
//! Everything here is a pure function of the text: no file is read, no
//! program is run. What cannot be decided from the text is high risk.

mod python;
mod shell;
#[cfg(test)]
mod tests;

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

/// Classifies one tool call.
pub fn classify(tool: Tool, code: &str) -> Risk {
    match tool {
        Tool::Shell => classify_shell(code),
        Tool::Python => classify_python(code),
    }
}

/// Classifies a command line as `bash -c` would run it.
pub fn classify_shell(command: &str) -> Risk {
    let mut found = Assessment::default();
    shell::assess(command, &mut found, 0);
    found.into_risk(SHELL_LOW_REASON)
}

/// Classifies a Python program as `python3` would run it.
pub fn classify_python(code: &str) -> Risk {
    let mut found = Assessment::default();
    python::assess(code, &mut found, 0);
    found.into_risk(PYTHON_LOW_REASON)
}

/// The findings of one classification, in the order they were made.
#[derive(Debug, Default)]
struct Assessment {
    /// Each finding with its level; duplicates are dropped at the end.
    findings: Vec<(RiskLevel, String)>,
    /// Set once a command may have moved the working directory out of the
    /// workspace (`cd /etc`, `os.chdir(path)`): from then on a relative path
    /// no longer means "inside the workspace".
    left_workspace: bool,
}

impl Assessment {
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
        let Some(path) = path else {
            self.high(format!(
                "writes to a place only known at run time (`{shown}`), which cannot be checked"
            ));
            return;
        };
        match place_of(path, self.left_workspace) {
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

    /// Whether `path` lies outside the workspace (or cannot be placed).
    fn is_outside(&self, path: Option<&str>) -> bool {
        match path {
            None => true,
            Some(path) => matches!(
                place_of(path, self.left_workspace),
                Place::Outside | Place::GitInternals
            ),
        }
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
    found: &mut Assessment,
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
