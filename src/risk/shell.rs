//! Shell risk: the tree-sitter-bash walk that judges every simple command of
//! a command line on its own, the unwrapping of wrappers (`env`, `sudo`,
//! `sh -c`, `xargs`, `find -exec` …) and the table of familiar commands.
//!
//! A command is judged by the words it will run with, after quote removal
//! (`'r''m'` is `rm`). A word that needs expanding (`$x`, `$(…)`, `${IFS}`)
//! is only known at run time: harmless as a file to read, high risk as a
//! command name, a place to write, or code to run.

use std::collections::HashSet;

use tree_sitter::Node;

use super::options::{
    options_of, unknown_option, FREE_ARGUMENTS, GIT, GIT_GLOBAL, GIT_READS, MOVING, READING,
};
use super::{
    fielded_children, listed, parse_for_check, Assessment, Entry, FileLanguage, Grammar, Place,
    MAX_SYNTAX_DEPTH,
};
use crate::protocol::RiskLevel;

/// Longest piece of a command quoted back in a reason; longer ones are cut
/// so that a reason stays one readable line.
const MAX_SHOWN_CHARS: usize = 60;

/// Where the standard programs live: `/usr/bin/rm` is judged as `rm`, while
/// a program elsewhere (`/tmp/ls`) is not the `ls` it pretends to be.
const PROGRAM_DIRS: [&str; 6] = [
    "/bin",
    "/usr/bin",
    "/usr/local/bin",
    "/sbin",
    "/usr/sbin",
    "/usr/local/sbin",
];

/// Commands that only read files or show information.
pub(super) const READS: &str = "\
    : [ ack ag apropos arch b2sum base32 base64 basename basenc bc bg break bzcat cal \
    caller cat cksum clear cmp colordiff column comm compgen continue cut df diff diff3 \
    dir dirname dirs du echo egrep exit expand expr factor false fg fgrep file \
    flake8 fmt fold free getconf getopts grep groups hd head help hexdump history id \
    info jobs join jq less let locale locate logname look ls lsblk lscpu lsof man md5sum \
    more mypy nl nproc numfmt od paste pgrep pidof printenv printf ps pstree pwd \
    pycodestyle pyflakes pylint read readarray readlink mapfile realpath return rev rg \
    sdiff seq set sha1sum sha224sum sha256sum sha384sum sha512sum shasum shellcheck \
    shift shopt sleep ss stat strings stty sum tac tail test times top tput tr true \
    tsort tty type ulimit umask uname unexpand unset uptime users vdir w wc whatis \
    whereis which who whoami xzcat yes zcat zdiff zgrep zless zmore zstdcat netstat \
    lsb_release
";

/// Commands that contact the network.
const NETWORK: &str = "\
    aria2c axel curl dig elinks ftp host http https lftp links lynx mtr nc ncat netcat \
    nmap nslookup ping ping6 rsync scp sftp smbclient socat ssh telnet tracepath \
    traceroute w3m wget whois
";

/// Commands that delete files.
const DELETES: &str = "\
    rm rmdir shred srm unlink wipe
";

/// Commands that stop or signal other programs.
const PROCESS_CONTROL: &str = "\
    kill killall pkill renice skill xkill
";

/// Commands that stop or restart the machine.
const POWER: &str = "\
    halt init poweroff reboot shutdown telinit
";

/// Commands that change the system itself: disks, services, users, clock,
/// firewall, kernel. None of them belongs in a workspace session.
const SYSTEM: &str = "\
    at batch capsh chpasswd cryptsetup crontab ctr docker fdisk groupadd groupdel \
    hostnamectl hwclock insmod ip6tables iptables kubectl losetup lxc mkswap modprobe \
    mount nerdctl newgrp nft nsenter parted passwd podman rmmod service setcap setpriv \
    sg swapoff swapon sysctl systemctl timedatectl ufw umount unshare useradd userdel \
    usermod visudo wipefs
";

/// Package managers with no read-only use worth telling apart: any call
/// installs, removes or downloads software.
const PACKAGE_MANAGERS: &str = "\
    apk aptitude brew bundle composer conda cpan cpanm dnf easy_install flatpak gem \
    mamba micromamba nix-env pacman pipx port snap yum zypper
";

/// Shells whose `-c` string is a command line of its own.
const SHELLS: &str = "\
    ash bash csh dash fish ksh mksh rbash sh tcsh zsh
";

/// How an interpreter other than Python and the shells takes a program on
/// its command line.
struct Interpreter {
    program: &'static str,
    language: &'static str,
    /// Option letters whose value is code (`-e`).
    code_letters: &'static str,
    /// Long options whose value is code (`--eval`).
    code_options: &'static [&'static str],
    /// Option letters that take a value (`-I dir`, `-Mmodule`).
    value_letters: &'static str,
    /// Whether code may be attached to its letter (`-e'print 1'`); if not,
    /// letters after a code letter are more options (`node -pe`).
    attached_code: bool,
    /// Whether `-i` edits the named files in place.
    edits_in_place: bool,
}

const INTERPRETERS: &[Interpreter] = &[
    Interpreter {
        program: "perl",
        language: "Perl",
        code_letters: "eE",
        code_options: &[],
        value_letters: "MmIFdDxC",
        attached_code: true,
        edits_in_place: true,
    },
    Interpreter {
        program: "ruby",
        language: "Ruby",
        code_letters: "e",
        code_options: &[],
        value_letters: "rICFEKWTx",
        attached_code: true,
        edits_in_place: true,
    },
    Interpreter {
        program: "node",
        language: "JavaScript",
        code_letters: "ep",
        code_options: &["--eval", "--print"],
        value_letters: "rC",
        attached_code: false,
        edits_in_place: false,
    },
    Interpreter {
        program: "nodejs",
        language: "JavaScript",
        code_letters: "ep",
        code_options: &["--eval", "--print"],
        value_letters: "rC",
        attached_code: false,
        edits_in_place: false,
    },
    Interpreter {
        program: "php",
        language: "PHP",
        code_letters: "rRBE",
        code_options: &[
            "--run",
            "--process-code",
            "--process-begin",
            "--process-end",
        ],
        value_letters: "dcfzt",
        attached_code: true,
        edits_in_place: false,
    },
    Interpreter {
        program: "lua",
        language: "Lua",
        code_letters: "e",
        code_options: &[],
        value_letters: "l",
        attached_code: true,
        edits_in_place: false,
    },
];

/// Words in a one-liner of a language the checker cannot parse that show it
/// may run commands, change files or use the network. Matching is on plain
/// substrings: a false alarm costs a question, a miss costs much more.
const RISKY_ONE_LINER_WORDS: &str = "\
    ` %x chmod chown child_process curl Dir. eval exec fetch File fork fs. http IO. kill \
    LWP Net:: net. open popen process. qx remove rename require rm socket Socket spawn \
    syscall system unlink wget write
";

/// Whether code in a language the checker cannot parse has any of the
/// [`RISKY_ONE_LINER_WORDS`].
pub(super) fn has_risky_words(code: &str) -> bool {
    RISKY_ONE_LINER_WORDS
        .split_whitespace()
        .any(|w| code.contains(w))
}

/// Variables that make other programs run a command or load code of the
/// caller's choosing.
const HIJACKING_VARIABLES: &str = "\
    BASH_ENV BASHOPTS BROWSER EDITOR ENV GIT_ASKPASS GIT_DIR GIT_EDITOR GIT_EXEC_PATH \
    GIT_EXTERNAL_DIFF GIT_PAGER GIT_SSH GIT_SSH_COMMAND GIT_TEMPLATE_DIR LESSCLOSE \
    LESSOPEN MANPAGER NODE_OPTIONS PAGER PERL5OPT PROMPT_COMMAND PS4 PYTHONHOME \
    PYTHONSTARTUP RUBYOPT SHELLOPTS SSH_ASKPASS VISUAL
";

/// Variables that change where programs and modules are looked up: later
/// commands may then run code from the workspace instead of the system's.
const LOOKUP_VARIABLES: &str = "\
    CDPATH NODE_PATH PATH PERL5LIB PYTHONPATH RUBYLIB
";

/// Git settings that cannot make git run a program. Any other key set with
/// `git -c` or `git config` is high risk: `core.pager`, `core.sshCommand`,
/// `alias.*`, `filter.*`, hooks and many more run programs, and an
/// allow-list cannot miss one.
const SAFE_GIT_SETTINGS: &str = "\
    advice. blame. branch.autosetuprebase color. column. commit.gpgsign core.abbrev \
    core.autocrlf core.eol core.filemode core.ignorecase core.quotepath core.safecrlf \
    diff.algorithm diff.colormoved diff.mnemonicprefix diff.noprefix diff.renames \
    fetch.prune grep. i18n. init.defaultbranch log. merge.conflictstyle merge.ff pull.ff \
    pull.rebase push.autosetupremote push.default rebase.autostash rerere.enabled \
    safe.directory status. tag.gpgsign user.email user.name
";

/// How a shell command that cannot be checked is described.
const SHELL: Grammar = Grammar {
    language: || tree_sitter_bash::LANGUAGE.into(),
    name: "shell",
    hidden: "commands",
    invalid: "could not be understood",
};

pub(super) fn assess(command: &str, found: &mut Assessment<'_>, nesting: usize) {
    assess_with_input(command, found, nesting, &Input::Nothing);
}

/// Judges `command` run with data fed to its input by the caller (Python's
/// `subprocess.run(…, input=…)`): a shell there runs what it is fed.
pub(super) fn assess_fed(command: &str, found: &mut Assessment<'_>, nesting: usize) {
    assess_with_input(command, found, nesting, &Input::Pipe);
}

/// Judges `command` as a shell would run it with `input` on its standard
/// input (which matters when it is itself a shell: `curl … | sh -c 'bash'`).
fn assess_with_input(command: &str, found: &mut Assessment<'_>, nesting: usize, input: &Input) {
    let Some(tree) = parse_for_check(command, &SHELL, found, nesting) else {
        return;
    };
    let root = tree.root_node();
    let mut walker = Walker {
        src: command,
        functions: defined_functions(root, command),
        found,
        nesting,
        in_functions: Vec::new(),
        calls: Vec::new(),
        background: Vec::new(),
    };
    walker.statement(root, input, 0);
    walker.finish();
}

/// What a command reads on its standard input. It matters for shells and
/// interpreters, which run what they read.
#[derive(Debug, Clone)]
enum Input {
    /// What the sandbox gives a command: nothing to run.
    Nothing,
    /// The output of the previous command of a pipeline.
    Pipe,
    /// A here-document or here-string; `None` when it has expansions.
    Text(Option<String>),
    /// A file (`< file`); `None` when its name is only known at run time.
    File(Option<String>),
}

/// One word of a simple command.
#[derive(Debug, Clone)]
struct Word {
    /// The word after quote removal, or `None` when it is only known at run
    /// time (an expansion or a substitution is part of it).
    value: Option<String>,
    /// The word as written, to show in reasons.
    raw: String,
}

impl Word {
    fn literal(value: &str) -> Word {
        Word {
            value: Some(value.to_string()),
            raw: value.to_string(),
        }
    }

    fn runtime(raw: &str) -> Word {
        Word {
            value: None,
            raw: raw.to_string(),
        }
    }

    fn text(&self) -> Option<&str> {
        self.value.as_deref()
    }

    fn is(&self, value: &str) -> bool {
        self.text() == Some(value)
    }

    fn is_option(&self) -> bool {
        self.text()
            .is_some_and(|t| t.starts_with('-') && t.len() > 1)
    }

    /// The word for a reason: its value when known, else as written.
    fn shown(&self) -> String {
        show(self.text().unwrap_or(&self.raw))
    }
}

/// The arguments of a command split into options and operands.
#[derive(Debug, Default)]
struct Args {
    /// Options without values, one entry per letter (`-rf` gives `-r` and
    /// `-f`); long ones as written.
    flags: Vec<String>,
    /// Options with their values (`-o out`, `-oout`, `--output=out`).
    values: Vec<(String, Word)>,
    /// Everything else, in order. A word only known at run time is an
    /// operand (it may expand to an option; callers that care check).
    operands: Vec<Word>,
}

impl Args {
    /// Splits `args` the way GNU tools read them; `with_value` names the
    /// options that take a value (`-o`, `--output`).
    fn parse(args: &[Word], with_value: &[&str]) -> Args {
        let mut parsed = Args::default();
        let mut words = args.iter();
        while let Some(word) = words.next() {
            let Some(text) = word.text() else {
                parsed.operands.push(word.clone());
                continue;
            };
            if text == "--" {
                parsed.operands.extend(words.by_ref().cloned());
                break;
            }
            if let Some(long) = text.strip_prefix("--") {
                if let Some((name, value)) = long.split_once('=') {
                    parsed
                        .values
                        .push((format!("--{name}"), Word::literal(value)));
                } else if with_value.contains(&text) {
                    let value = words.next().cloned().unwrap_or_else(|| Word::literal(""));
                    parsed.values.push((text.to_string(), value));
                } else {
                    parsed.flags.push(text.to_string());
                }
                continue;
            }
            let Some(letters) = text.strip_prefix('-').filter(|l| !l.is_empty()) else {
                parsed.operands.push(word.clone());
                continue;
            };
            for (at, letter) in letters.char_indices() {
                let option = format!("-{letter}");
                if with_value.contains(&option.as_str()) {
                    let rest = &letters[at + letter.len_utf8()..];
                    let value = if rest.is_empty() {
                        words.next().cloned().unwrap_or_else(|| Word::literal(""))
                    } else {
                        Word::literal(rest)
                    };
                    parsed.values.push((option, value));
                    break;
                }
                parsed.flags.push(option);
            }
        }
        parsed
    }

    fn has(&self, options: &[&str]) -> bool {
        self.flags.iter().any(|f| options.contains(&f.as_str()))
            || self
                .values
                .iter()
                .any(|(o, _)| options.contains(&o.as_str()))
    }

    fn value_of(&self, options: &[&str]) -> Vec<&Word> {
        self.values
            .iter()
            .filter(|(o, _)| options.contains(&o.as_str()))
            .map(|(_, w)| w)
            .collect()
    }
}

/// The walk over one parsed command line.
struct Walker<'a, 'v> {
    src: &'a str,
    found: &'a mut Assessment<'v>,
    /// How many times this text was already unwrapped from a string.
    nesting: usize,
    /// Functions the command line defines: their bodies are judged where
    /// they are defined, so calling one adds nothing.
    functions: HashSet<String>,
    /// The functions whose bodies the walk is in, innermost last.
    in_functions: Vec<String>,
    /// Calls from one defined function to another: a cycle among them is a
    /// function that calls itself.
    calls: Vec<(String, String)>,
    /// Commands started with `&` and not yet waited for.
    background: Vec<String>,
}

impl Walker<'_, '_> {
    fn text(&self, node: Node) -> &str {
        self.src.get(node.byte_range()).unwrap_or_default()
    }

    /// Walks any node, judging every command found in it.
    fn statement(&mut self, node: Node, input: &Input, depth: usize) {
        if depth > MAX_SYNTAX_DEPTH {
            self.found
                .high("is nested too deeply to check, which only hiding something needs");
            return;
        }
        match node.kind() {
            "command" => self.command(node, input, Vec::new(), depth),
            "redirected_statement" => self.redirected(node, input, depth),
            "pipeline" => self.pipeline(node, input, depth),
            "command_substitution" => {
                let form = if self.text(node).starts_with('`') {
                    "a command in backquotes"
                } else {
                    "`$(...)`"
                };
                self.found.high(format!(
                    "runs a command built at run time ({form}), which cannot be checked"
                ));
                self.subshell(node, input, depth);
            }
            "process_substitution" => {
                let form = if self.text(node).starts_with('>') {
                    ">(...)"
                } else {
                    "<(...)"
                };
                self.found.high(format!(
                    "runs a command built at run time (`{form}`), which cannot be checked"
                ));
                self.subshell(node, input, depth);
            }
            "subshell" => self.subshell(node, input, depth),
            "list" => self.list(node, input, depth),
            "if_statement" | "case_statement" => {
                self.maybe_runs(|walker| walker.children(node, input, depth));
            }
            "while_statement" | "for_statement" | "c_style_for_statement" => {
                // A later round runs after what the body writes at its end.
                self.found.files_may_change();
                self.maybe_runs(|walker| walker.children(node, input, depth));
            }
            "variable_assignment" => self.assignment(node, input, depth),
            "expansion" => {
                // `${x@P}` expands `$(…)` stored in `x` as a prompt would.
                let text = self.text(node);
                if text.contains("@P") {
                    self.found.high(format!(
                        "runs a command built at run time (`{}`), which cannot be checked",
                        show(text)
                    ));
                }
                self.children(node, input, depth);
            }
            "file_redirect" | "heredoc_redirect" | "herestring_redirect" => {
                self.redirect(node, depth);
            }
            "comment" => {}
            "function_definition" => {
                let name = node
                    .child_by_field_name("name")
                    .map(|n| self.text(n).to_string())
                    .unwrap_or_default();
                self.in_functions.push(name);
                // The body runs when the function is called, after writes
                // the walk has not reached yet.
                let written_text = std::mem::take(&mut self.found.written_text);
                self.maybe_runs(|walker| walker.children(node, input, depth));
                self.found.written_text = written_text;
                self.in_functions.pop();
            }
            _ => self.children(node, input, depth),
        }
    }

    /// Walks the children of `node`. A statement followed by `&` runs in
    /// the background.
    fn children(&mut self, node: Node, input: &Input, depth: usize) {
        let mut cursor = node.walk();
        let children: Vec<Node> = node.children(&mut cursor).collect();
        for (at, child) in children.iter().enumerate() {
            if !child.is_named() {
                continue;
            }
            let backgrounded = children.get(at + 1).is_some_and(|n| n.kind() == "&");
            if backgrounded {
                self.maybe_runs(|walker| walker.statement(*child, input, depth + 1));
            } else {
                self.statement(*child, input, depth + 1);
            }
            if backgrounded && child.kind() != "comment" {
                self.background.push(show(self.text(*child)));
                self.found.started_alongside();
            }
        }
    }

    /// What can only be judged once the whole command line was walked:
    /// background jobs left running, functions that call themselves.
    fn finish(&mut self) {
        if let Some(job) = self.background.first() {
            self.found.high(format!(
                "leaves `{job}` running in the background after the command ends"
            ));
        }
        let recursive = self.calls.iter().find(|(from, _)| self.reaches(from, from));
        if let Some((name, _)) = recursive {
            self.found.high(format!(
                "defines a function that calls itself (`{}`), which can start processes without end (a fork bomb)",
                show(name)
            ));
        }
    }

    /// Whether function `from` calls `to`, directly or through others.
    fn reaches(&self, from: &str, to: &str) -> bool {
        let mut seen: Vec<&str> = Vec::new();
        let mut stack = vec![from];
        while let Some(at) = stack.pop() {
            for (caller, callee) in &self.calls {
                if caller != at {
                    continue;
                }
                if callee == to {
                    return true;
                }
                if !seen.contains(&callee.as_str()) {
                    seen.push(callee);
                    stack.push(callee);
                }
            }
        }
        false
    }

    /// Walks a part of the command line that may or may not run (the right
    /// of `&&` or `||`, the branches of `if` and `case`, loop bodies, a
    /// function body, the parts of a pipeline, a background job): a `cd`
    /// in it leaves the working directory in one of two places.
    fn maybe_runs(&mut self, walk: impl FnOnce(&mut Self)) {
        let before = self.found.working_dir();
        walk(self);
        self.found.maybe_moved_from(before);
    }

    /// `a && b || c`: the first part runs; each later one only maybe.
    fn list(&mut self, node: Node, input: &Input, depth: usize) {
        let mut cursor = node.walk();
        let parts: Vec<Node> = node.named_children(&mut cursor).collect();
        for (at, part) in parts.into_iter().enumerate() {
            if at == 0 {
                self.statement(part, input, depth + 1);
            } else {
                self.maybe_runs(|walker| walker.statement(part, input, depth + 1));
            }
        }
    }

    /// `( … )`, `$( … )`: a `cd` inside does not move what follows.
    fn subshell(&mut self, node: Node, input: &Input, depth: usize) {
        let working_dir = self.found.working_dir();
        self.children(node, input, depth);
        self.found.return_to(working_dir);
    }

    /// `a | b | c`: each command after the first reads the one before.
    fn pipeline(&mut self, node: Node, input: &Input, depth: usize) {
        let mut cursor = node.walk();
        let parts: Vec<Node> = node.named_children(&mut cursor).collect();
        // The parts run at the same time: one may rewrite a file while
        // another runs it.
        self.found.files_may_change();
        for (at, part) in parts.into_iter().enumerate() {
            let part_input = if at == 0 { input.clone() } else { Input::Pipe };
            self.maybe_runs(|walker| walker.statement(part, &part_input, depth + 1));
        }
    }

    /// A statement with redirections: `cmd > out`, `{ …; } 2>/dev/null`,
    /// `while …; done < list`.
    fn redirected(&mut self, node: Node, input: &Input, depth: usize) {
        let mut body = None;
        let mut redirects = Vec::new();
        for (field, child) in fielded_children(node) {
            match field {
                Some("body") => body = Some(child),
                Some("redirect") => redirects.push(child),
                _ if child.is_named() => self.statement(child, input, depth + 1),
                _ => {}
            }
        }
        match body {
            Some(body) => self.redirected_body(body, &redirects, input, depth + 1),
            None => {
                for redirect in redirects {
                    let _ = self.redirect(redirect, depth + 1);
                }
            }
        }
    }

    /// The grammar hangs `a && b > out` and `a | b > out` on the whole list
    /// or pipeline, but the shell redirects only the last command: `a` runs
    /// first, in its own place.
    fn redirected_body(&mut self, body: Node, redirects: &[Node], input: &Input, depth: usize) {
        if depth > MAX_SYNTAX_DEPTH {
            self.found
                .high("is nested too deeply to check, which only hiding something needs");
            return;
        }
        if matches!(body.kind(), "list" | "pipeline") {
            let piped = body.kind() == "pipeline";
            if piped {
                self.found.files_may_change();
            }
            let mut cursor = body.walk();
            let parts: Vec<Node> = body
                .named_children(&mut cursor)
                .filter(|p| p.kind() != "comment")
                .collect();
            if let Some((last, before)) = parts.split_last() {
                for (at, part) in before.iter().enumerate() {
                    let part_input = if piped && at > 0 {
                        Input::Pipe
                    } else {
                        input.clone()
                    };
                    if at == 0 && !piped {
                        self.statement(*part, &part_input, depth + 1);
                    } else {
                        self.maybe_runs(|walker| walker.statement(*part, &part_input, depth + 1));
                    }
                }
                let last_input = if piped && !before.is_empty() {
                    Input::Pipe
                } else {
                    input.clone()
                };
                if before.is_empty() && !piped {
                    self.redirected_body(*last, redirects, &last_input, depth + 1);
                } else {
                    self.maybe_runs(|walker| {
                        walker.redirected_body(*last, redirects, &last_input, depth + 1)
                    });
                }
                return;
            }
        }
        let mut own_input = None;
        let mut extra = Vec::new();
        for redirect in redirects {
            let (redirected_input, words) = self.redirect(*redirect, depth);
            own_input = redirected_input.or(own_input);
            extra.extend(words);
        }
        let input = own_input.unwrap_or_else(|| input.clone());
        if body.kind() == "command" {
            let plain = extra.is_empty();
            self.command(body, &input, extra, depth + 1);
            if plain {
                let words = self.plain_words(body);
                self.literal_file(&words, redirects, &input);
            }
        } else {
            self.statement(body, &input, depth + 1);
            if !extra.is_empty() {
                self.found.high(
                    "could not be understood (words after a redirection), so it cannot be checked",
                );
            }
        }
    }

    /// Judges one redirection. Returns what it feeds the command's input, if
    /// anything, and any words after its target (`echo hi > out more`, where
    /// `more` is an argument of `echo`).
    fn redirect(&mut self, node: Node, depth: usize) -> (Option<Input>, Vec<Word>) {
        match node.kind() {
            "file_redirect" => self.file_redirect(node, depth),
            "herestring_redirect" => {
                let mut text = None;
                let mut cursor = node.walk();
                let parts: Vec<Node> = node.named_children(&mut cursor).collect();
                for part in parts {
                    self.statement(part, &Input::Nothing, depth + 1);
                    text = Some(self.word(part).value.map(|t| t + "\n"));
                }
                (text.map(Input::Text), Vec::new())
            }
            "heredoc_redirect" => (Some(self.heredoc(node, depth)), Vec::new()),
            _ => {
                self.statement(node, &Input::Nothing, depth + 1);
                (None, Vec::new())
            }
        }
    }

    fn file_redirect(&mut self, node: Node, depth: usize) -> (Option<Input>, Vec<Word>) {
        let mut operator = "";
        let mut targets = Vec::new();
        for (field, child) in fielded_children(node) {
            match field {
                Some("destination") => targets.push(child),
                Some("descriptor") => {}
                _ if !child.is_named() => operator = child.kind(),
                _ => self.statement(child, &Input::Nothing, depth + 1),
            }
        }
        let mut targets = targets.into_iter();
        let Some(target) = targets.next() else {
            return (None, Vec::new());
        };
        self.statement(target, &Input::Nothing, depth + 1);
        let extra: Vec<Word> = targets
            .map(|t| {
                self.statement(t, &Input::Nothing, depth + 1);
                self.word(t)
            })
            .collect();
        let word = self.word(target);
        let duplicates_descriptor =
            matches!(operator, ">&" | "<&") && (target.kind() == "number" || word.is("-"));
        if duplicates_descriptor {
            return (None, extra);
        }
        if word
            .text()
            .is_some_and(|t| t.starts_with("/dev/tcp/") || t.starts_with("/dev/udp/"))
        {
            self.found
                .high(format!("contacts the network (`{}`)", word.shown()));
        }
        match operator {
            "<" => (Some(Input::File(word.value)), extra),
            // Appending keeps what the file holds; `<>` opens it for reading
            // and writing without truncating it.
            ">>" | "&>>" | "<>" => {
                let shown = word.shown();
                self.found.append_to(word.text(), &shown, &shown);
                (None, extra)
            }
            _ => {
                let shown = word.shown();
                self.found.write_to(word.text(), &shown, &shown);
                (None, extra)
            }
        }
    }

    /// `<<EOF … EOF`: the text becomes the command's input. A pipeline
    /// written after the marker (`cat <<EOF | sh`) reads the command's
    /// output.
    fn heredoc(&mut self, node: Node, depth: usize) -> Input {
        let mut quoted = false;
        let mut content = Some(String::new());
        for child in fielded_children(node).into_iter().map(|(_, c)| c) {
            match child.kind() {
                "heredoc_start" => quoted = self.text(child).contains(['\'', '"', '\\']),
                "heredoc_end" => {}
                "heredoc_body" => {
                    let mut cursor = child.walk();
                    let parts: Vec<Node> = child.named_children(&mut cursor).collect();
                    let expands = parts.iter().any(|p| p.kind() != "heredoc_content");
                    for part in parts {
                        self.statement(part, &Input::Nothing, depth + 1);
                    }
                    content = if quoted || !expands {
                        Some(self.text(child).to_string())
                    } else {
                        None
                    };
                }
                "pipeline" => self.pipeline_after(child, depth),
                "file_redirect" | "herestring_redirect" | "heredoc_redirect" => {
                    // Their effect on input is beaten by the here-document.
                    let _ = self.redirect(child, depth + 1);
                }
                _ if child.is_named() => self.statement(child, &Input::Nothing, depth + 1),
                _ => {}
            }
        }
        Input::Text(content)
    }

    /// The `| sh` of `cat <<EOF | sh`: every part reads a pipe.
    fn pipeline_after(&mut self, node: Node, depth: usize) {
        let mut cursor = node.walk();
        let parts: Vec<Node> = node.named_children(&mut cursor).collect();
        for part in parts {
            self.statement(part, &Input::Pipe, depth + 1);
        }
    }

    /// `name=value`, alone or before a command.
    fn assignment(&mut self, node: Node, input: &Input, depth: usize) {
        let name = node
            .child_by_field_name("name")
            .map(|n| self.text(n).to_string())
            .unwrap_or_default();
        let value = node.child_by_field_name("value").map(|v| {
            self.statement(v, input, depth + 1);
            self.word(v)
        });
        self.variable(&name, value.as_ref().and_then(Word::text));
    }

    /// Judges setting the variable `name` (to `value` when known).
    fn variable(&mut self, name: &str, value: Option<&str>) {
        if listed(HIJACKING_VARIABLES, name)
            || name.starts_with("LD_")
            || name.starts_with("GIT_CONFIG")
        {
            self.found.high(format!(
                "sets `{name}`, which can make other programs run a command of its choosing"
            ));
        } else if listed(LOOKUP_VARIABLES, name) {
            self.found.medium(format!(
                "changes where programs are looked up (`{name}`), so later commands may run other programs"
            ));
        }
        if value.is_some_and(|v| v.contains("$(") || v.contains('`') || v.contains("<(")) {
            self.found.high(format!(
                "stores a command in a variable (`{name}`), where it may run later unchecked"
            ));
        }
    }

    /// A simple command; `extra` are words a redirection left behind.
    fn command(&mut self, node: Node, input: &Input, extra: Vec<Word>, depth: usize) {
        let mut words = Vec::new();
        let mut own_input = None;
        let mut redirects = Vec::new();
        for (field, child) in fielded_children(node) {
            match (field, child.kind()) {
                (_, "variable_assignment") => self.assignment(child, input, depth + 1),
                (Some("redirect"), _) => {
                    redirects.push(child);
                    let (redirected_input, more) = self.redirect(child, depth + 1);
                    own_input = redirected_input.or(own_input);
                    words.extend(more);
                }
                (Some("name"), _) => {
                    self.statement(child, input, depth + 1);
                    words.insert(0, self.word(child));
                }
                (Some("argument"), _) if child.is_named() => {
                    self.statement(child, input, depth + 1);
                    words.push(self.word(child));
                }
                _ if child.is_named() => self.statement(child, input, depth + 1),
                _ => {}
            }
        }
        if node.child_by_field_name("name").is_none() {
            return;
        }
        words.extend(extra);
        let input = own_input.unwrap_or_else(|| input.clone());
        self.judge(&words, &input, depth + 1);
        self.literal_file(&words, &redirects, &input);
    }

    /// After `cat > x.py <<'EOF' … EOF`: the file holds exactly the text of
    /// the here-document, so a later run of it is judged on that text. Only
    /// this plain shape is followed; any other write leaves the file's
    /// contents unknown.
    fn literal_file(&mut self, words: &[Word], redirects: &[Node], input: &Input) {
        let Input::Text(Some(text)) = input else {
            return;
        };
        if !matches!(words, [cat] if cat.is("cat")) {
            return;
        }
        // `cat <<'EOF' > x.py`: the grammar hangs the `>` on the
        // here-document.
        let mut all = Vec::new();
        for redirect in redirects {
            all.push(*redirect);
            if redirect.kind() == "heredoc_redirect" {
                let mut cursor = redirect.walk();
                all.extend(redirect.named_children(&mut cursor));
            }
        }
        let targets: Vec<String> = all.iter().filter_map(|r| self.stdout_target(*r)).collect();
        if let [target] = targets.as_slice() {
            self.found.wrote_text(target, text);
        }
    }

    /// The file a redirection fills with the command's standard output
    /// (`> f`, `>| f`, `&> f`), when it is named literally.
    fn stdout_target(&self, node: Node) -> Option<String> {
        if node.kind() != "file_redirect" {
            return None;
        }
        let mut operator = "";
        let mut target = None;
        let mut descriptor = None;
        for (field, child) in fielded_children(node) {
            match field {
                Some("destination") => target = target.or(Some(child)),
                Some("descriptor") => descriptor = Some(self.text(child)),
                _ if !child.is_named() => operator = child.kind(),
                _ => {}
            }
        }
        let to_stdout =
            matches!(operator, ">" | ">|" | "&>") && descriptor.is_none_or(|d| d == "1");
        if !to_stdout {
            return None;
        }
        self.word(target?).value
    }

    /// The name and arguments of a command node, without judging them.
    fn plain_words(&self, node: Node) -> Vec<Word> {
        fielded_children(node)
            .into_iter()
            .filter(|(field, child)| {
                child.is_named() && matches!(*field, Some("name") | Some("argument"))
            })
            .map(|(_, child)| self.word(child))
            .collect()
    }

    /// The value of a word node after quote removal, if it has no expansion.
    fn word(&self, node: Node) -> Word {
        Word {
            value: self.word_value(node),
            raw: self.text(node).to_string(),
        }
    }

    fn word_value(&self, node: Node) -> Option<String> {
        let text = self.text(node);
        match node.kind() {
            "command_name" => {
                let mut cursor = node.walk();
                let mut value = String::new();
                for child in node.children(&mut cursor) {
                    value.push_str(&self.word_value(child)?);
                }
                Some(value)
            }
            "word" => Some(unescape_unquoted(text)),
            "number" => Some(text.to_string()),
            "raw_string" => Some(
                text.strip_prefix('\'')
                    .and_then(|t| t.strip_suffix('\''))
                    .unwrap_or(text)
                    .to_string(),
            ),
            "ansi_c_string" => decode_ansi_c(text),
            "string" | "translated_string" => {
                let mut cursor = node.walk();
                let mut value = String::new();
                let children: Vec<Node> = node.children(&mut cursor).collect();
                let inner = children
                    .iter()
                    .skip(1)
                    .take(children.len().saturating_sub(2));
                for child in inner {
                    match child.kind() {
                        "string_content" => {
                            value.push_str(&unescape_double_quoted(self.text(*child)))
                        }
                        _ if !child.is_named() => value.push_str(self.text(*child)),
                        _ => return None,
                    }
                }
                Some(value)
            }
            "concatenation" => {
                let mut cursor = node.walk();
                let mut value = String::new();
                for child in node.children(&mut cursor) {
                    if child.is_named() {
                        value.push_str(&self.word_value(child)?);
                    } else {
                        value.push_str(self.text(child));
                    }
                }
                Some(value)
            }
            _ => None,
        }
    }

    /// Judges a command given as words; the first is the program.
    fn judge(&mut self, words: &[Word], input: &Input, depth: usize) {
        let Some((first, args)) = words.split_first() else {
            return;
        };
        if depth > MAX_SYNTAX_DEPTH {
            self.found
                .high("is nested too deeply to check, which only hiding something needs");
            return;
        }
        let Some(name) = first.text() else {
            self.found.high(format!(
                "runs a command whose name is only known at run time (`{}`), which cannot be checked",
                show(&first.raw)
            ));
            return;
        };
        let name = match self.program(name) {
            Program::Named(name) => name,
            Program::Workspace(path) => {
                self.found
                    .run_file(&path, FileLanguage::ByShebang, self.nesting + 1);
                return;
            }
            Program::Elsewhere(path) => {
                self.found.high(format!(
                    "runs a program from outside the workspace (`{}`)",
                    show(&path)
                ));
                return;
            }
        };
        if self.functions.contains(&name) {
            if let Some(caller) = self.in_functions.last() {
                self.calls.push((caller.clone(), name));
            }
            // Its body was judged where it is defined; what it writes now
            // is not followed.
            self.found.files_may_change();
            return;
        }
        self.named(&name, args, input, depth);
        if !writes_only_what_it_names(&name) {
            self.found.files_may_change();
        }
    }

    /// Which program a command word names.
    fn program(&self, word: &str) -> Program {
        if !word.contains('/') {
            return Program::Named(word.to_string());
        }
        if word.starts_with('/') {
            let normal = normalise_absolute(word);
            if let Some((dir, base)) = normal.rsplit_once('/') {
                let dir = if dir.is_empty() { "/" } else { dir };
                if PROGRAM_DIRS.contains(&dir) && !base.is_empty() {
                    return Program::Named(base.to_string());
                }
            }
        }
        match self.found.place(word) {
            Place::Workspace | Place::GitInternals => Program::Workspace(word.to_string()),
            Place::Discard | Place::Outside => Program::Elsewhere(word.to_string()),
        }
    }

    /// The table of familiar commands.
    fn named(&mut self, name: &str, args: &[Word], input: &Input, depth: usize) {
        if name != "tar" {
            self.options(name, args);
        }
        if listed(READS, name) {
            return;
        }
        if listed(NETWORK, name) {
            self.found.high(format!("contacts the network (`{name}`)"));
            return;
        }
        if listed(DELETES, name) {
            self.deletes(name, args);
            return;
        }
        if listed(PROCESS_CONTROL, name) {
            let lists = args
                .iter()
                .any(|a| a.is("-l") || a.is("-L") || a.is("--list"));
            if !(name == "kill" && lists) {
                self.found
                    .high(format!("stops or signals other programs (`{name}`)"));
            }
            return;
        }
        if listed(POWER, name) {
            self.found
                .high(format!("shuts down or restarts the machine (`{name}`)"));
            return;
        }
        if listed(SYSTEM, name) || name.starts_with("mkfs") {
            self.found.high(format!(
                "changes the system outside the workspace (`{name}`)"
            ));
            return;
        }
        if listed(PACKAGE_MANAGERS, name) {
            self.found
                .high(format!("installs or removes software (`{name}`)"));
            return;
        }
        if listed(SHELLS, name) {
            self.shell(name, args, input);
            return;
        }
        if is_python(name) {
            self.python(name, args, input);
            return;
        }
        if let Some(interpreter) = INTERPRETERS.iter().find(|i| i.program == name) {
            self.interpreter(interpreter, args, input);
            return;
        }
        let known = self.wrapper_or_builtin(name, args, input, depth)
            || self.file_tool(name, args)
            || self.developer_tool(name, args, depth);
        if !known {
            self.found.high(format!("unknown command `{}`", show(name)));
        }
    }

    /// Wrappers, judged by the command they run, and shell built-ins.
    /// Returns whether `name` is one of them.
    fn wrapper_or_builtin(
        &mut self,
        name: &str,
        args: &[Word],
        input: &Input,
        depth: usize,
    ) -> bool {
        match name {
            "env" => self.env(args, input, depth),
            "sudo" | "doas" | "pkexec" | "runuser" => self.privileged(name, args, input, depth),
            "su" => self.su(args, input),
            "chroot" => {
                self.found
                    .high("changes the system outside the workspace (`chroot`)");
                let rest = after_operands(args, 1);
                self.judge(rest, input, depth + 1);
            }
            "timeout" => {
                let rest = skip_options(args, &["-s", "--signal", "-k", "--kill-after"]);
                self.judge(rest.get(1..).unwrap_or_default(), input, depth + 1);
            }
            "nice" => {
                let mut rest = args;
                while let Some((first, tail)) = rest.split_first() {
                    let Some(t) = first.text() else { break };
                    if t == "-n" || t == "--adjustment" {
                        rest = tail.get(1..).unwrap_or_default();
                    } else if t.starts_with("--adjustment=")
                        || (t.starts_with('-')
                            && t.len() > 1
                            && t[1..].chars().all(|c| c.is_ascii_digit() || c == '-'))
                        || t.starts_with("-n")
                    {
                        rest = tail;
                    } else if t == "--" {
                        rest = tail;
                        break;
                    } else {
                        break;
                    }
                }
                self.judge(rest, input, depth + 1);
            }
            "nohup" => {
                self.found.high(
                    "detaches a program so that it keeps running after the command ends (`nohup`)",
                );
                let rest = skip_options(args, &[]);
                self.judge(rest, input, depth + 1);
            }
            "disown" => self.found.high(
                "detaches background programs so that they keep running after the command ends (`disown`)",
            ),
            "wait" => self.background.clear(),
            "coproc" | "builtin" => {
                let rest = skip_options(args, &[]);
                self.judge(rest, input, depth + 1);
            }
            "command" => {
                if args
                    .iter()
                    .take_while(|a| a.is_option())
                    .any(|a| a.is("-v") || a.is("-V"))
                {
                    return true;
                }
                let rest = skip_options(args, &[]);
                self.judge(rest, input, depth + 1);
            }
            "exec" => {
                let rest = skip_options(args, &["-a"]);
                self.judge(rest, input, depth + 1);
            }
            "busybox" => {
                if args.first().is_some_and(|a| a.is_option()) {
                    return true;
                }
                self.judge(args, input, depth + 1);
            }
            "stdbuf" => {
                let rest =
                    skip_options(args, &["-i", "-o", "-e", "--input", "--output", "--error"]);
                self.judge(rest, input, depth + 1);
            }
            "time" => {
                let parsed_end = skip_options(args, &["-f", "--format", "-o", "--output"]);
                let options = &args[..args.len() - parsed_end.len()];
                let parsed = Args::parse(options, &["-f", "--format", "-o", "--output"]);
                for out in parsed.value_of(&["-o", "--output"]) {
                    self.found.write_to(out.text(), &out.shown(), "time");
                }
                self.judge(parsed_end, input, depth + 1);
            }
            "ionice" => {
                if args
                    .iter()
                    .any(|a| a.is("-p") || a.is("-P") || a.is("-u") || a.is("--pid"))
                {
                    self.found
                        .high("changes the priority of other programs (`ionice -p`)");
                    return true;
                }
                let rest = skip_options(args, &["-c", "-n", "--class", "--classdata"]);
                self.judge(rest, input, depth + 1);
            }
            "setsid" => {
                self.found.high(
                    "detaches a program into a session of its own, so that it can outlive the command (`setsid`)",
                );
                let rest = skip_options(args, &[]);
                self.judge(rest, input, depth + 1);
            }
            "taskset" => {
                if args.iter().any(|a| a.is("-p") || a.is("--pid")) {
                    self.found
                        .high("changes how other programs run (`taskset -p`)");
                    return true;
                }
                let rest = skip_options(args, &[]);
                self.judge(rest.get(1..).unwrap_or_default(), input, depth + 1);
            }
            "xargs" => self.xargs(args, depth),
            "find" => self.find(args, depth),
            "eval" => {
                self.found
                    .high("runs a command built at run time (`eval`), which cannot be checked");
                let parts: Option<Vec<&str>> = args.iter().map(Word::text).collect();
                if let Some(parts) = parts {
                    self.nested_shell_here(&parts.join(" "), input);
                }
            }
            "source" | "." => self.source(name, args, input),
            "trap" => {
                let parsed = Args::parse(args, &[]);
                if parsed.has(&["-l", "-p"]) {
                    return true;
                }
                self.found.started_alongside();
                match parsed.operands.first() {
                    None => {}
                    Some(action) => match action.text() {
                        Some("-") | Some("") => {}
                        Some(code) => self.nested_shell_here(code, &Input::Nothing),
                        None => self.found.high(format!(
                            "runs a command built at run time (`{}`), which cannot be checked",
                            action.shown()
                        )),
                    },
                }
            }
            "cd" | "pushd" => {
                let target = args.iter().find(|a| !a.is_option());
                self.found.change_dir(target.and_then(Word::text));
            }
            "popd" => self.found.left_workspace = true,
            "export" | "declare" | "typeset" | "local" | "readonly" => {
                for word in args.iter().filter(|a| !a.is_option()) {
                    let text = word.text().unwrap_or(&word.raw);
                    let (variable, value) = match text.split_once('=') {
                        Some((n, v)) => (n, Some(v)),
                        None => (text, None),
                    };
                    self.variable(variable, value);
                }
            }
            "hash" => {
                if args.iter().any(|a| a.is("-p")) {
                    self.found
                        .high("changes which program a command name runs (`hash -p`)");
                }
            }
            _ => return false,
        }
        true
    }

    /// Tools that read, write or convert files.
    /// Returns whether `name` is one of them.
    fn file_tool(&mut self, name: &str, args: &[Word]) -> bool {
        match name {
            "date" => {
                if args
                    .iter()
                    .any(|a| a.is("-s") || a.text().is_some_and(|t| t.starts_with("--set")))
                {
                    self.found.high("changes the system clock (`date --set`)");
                }
            }
            "hostname" => {
                if args
                    .iter()
                    .any(|a| !a.is_option() || a.is("-F") || a.is("--file"))
                {
                    self.found
                        .high("changes the system outside the workspace (`hostname`)");
                }
            }
            "truncate" => {
                self.found
                    .high("deletes the contents of files (`truncate`)");
            }
            "mkdir" | "touch" | "tee" | "dos2unix" | "unix2dos" => {
                let with_value: &[&str] = match name {
                    "mkdir" => &["-m", "--mode", "--context"],
                    "touch" => &["-d", "-r", "-t", "--date", "--reference"],
                    _ => &[],
                };
                let parsed = Args::parse(args, with_value);
                let keeps = name != "tee" || parsed.has(&["-a", "--append"]);
                for target in &parsed.operands {
                    if keeps {
                        self.found.append_to(target.text(), &target.shown(), name);
                    } else {
                        self.found.write_to(target.text(), &target.shown(), name);
                    }
                }
            }
            "cp" | "mv" | "install" | "ln" => self.copy(name, args),
            "dd" => {
                for arg in args {
                    match arg.text() {
                        Some(t) => {
                            if let Some(out) = t.strip_prefix("of=") {
                                self.found.write_to(Some(out), out, "dd");
                            }
                        }
                        None => self.found.high(format!(
                            "passes `dd` a setting only known at run time (`{}`)",
                            show(&arg.raw)
                        )),
                    }
                }
            }
            "chmod" => self.chmod(args),
            "chown" | "chgrp" => self.chown(name, args),
            "sort" | "shuf" | "tree" | "iconv" => {
                let out_options: &[&str] = match name {
                    "tree" => &["-o"],
                    _ => &["-o", "--output"],
                };
                let parsed = Args::parse(args, out_options);
                for out in parsed.value_of(out_options) {
                    self.found.write_to(out.text(), &out.shown(), name);
                }
                if parsed.values.iter().any(|(o, _)| o == "--compress-program") {
                    self.found
                        .high("lets `sort` run another program (`--compress-program`)");
                }
            }
            "uniq" | "xxd" => {
                let with_value: &[&str] = if name == "xxd" {
                    &["-c", "-g", "-l", "-s", "-o", "-n", "-C"]
                } else {
                    &[
                        "-f",
                        "-s",
                        "-w",
                        "--skip-fields",
                        "--skip-chars",
                        "--check-chars",
                    ]
                };
                let parsed = Args::parse(args, with_value);
                if let Some(out) = parsed.operands.get(1) {
                    self.found.write_to(out.text(), &out.shown(), name);
                }
            }
            "split" | "csplit" => {
                let parsed = Args::parse(
                    args,
                    &[
                        "-a",
                        "-b",
                        "-C",
                        "-l",
                        "-n",
                        "-t",
                        "-f",
                        "--prefix",
                        "--suffix-length",
                    ],
                );
                let prefix = if name == "split" {
                    parsed.operands.get(1).cloned()
                } else {
                    parsed
                        .value_of(&["-f", "--prefix"])
                        .first()
                        .map(|w| (*w).clone())
                };
                let prefix = prefix.unwrap_or_else(|| Word::literal("."));
                self.found.write_to(prefix.text(), &prefix.shown(), name);
            }
            "mktemp" => {
                if !args.iter().any(|a| a.is("-u") || a.is("--dry-run")) {
                    self.found.medium("creates a temporary file (`mktemp`)");
                }
            }
            "sed" => self.sed(args),
            "awk" | "gawk" | "mawk" | "nawk" => self.awk(name, args),
            "tar" => self.tar(args),
            "unzip" => {
                let parsed = Args::parse(args, &["-d", "-x", "-P"]);
                if parsed.has(&["-l", "-t", "-v", "-Z", "-z"]) {
                    return true;
                }
                let dir = parsed
                    .value_of(&["-d"])
                    .first()
                    .map(|w| (*w).clone())
                    .unwrap_or_else(|| Word::literal("."));
                self.found.write_to(dir.text(), &dir.shown(), "unzip");
            }
            "zip" => {
                let parsed = Args::parse(args, &["-TT", "-b", "-n", "-t", "-tt", "-x", "-i"]);
                if args.iter().any(|a| {
                    a.text()
                        .is_some_and(|t| t.starts_with("-TT") || t == "--unzip-command")
                }) {
                    self.found.high("lets `zip` run another program (`-TT`)");
                }
                if parsed.has(&["-m", "--move"]) {
                    self.found.high("deletes files (`zip -m`)");
                }
                if let Some(archive) = parsed.operands.first() {
                    self.found.write_to(archive.text(), &archive.shown(), "zip");
                }
            }
            "gzip" | "gunzip" | "bzip2" | "bunzip2" | "xz" | "unxz" | "zstd" | "unzstd" | "lz4"
            | "compress" | "uncompress" => {
                let parsed = Args::parse(args, &["-S", "--suffix", "-o", "-T"]);
                if parsed.has(&[
                    "-c",
                    "--stdout",
                    "-l",
                    "--list",
                    "-t",
                    "--test",
                    "-h",
                    "--help",
                    "-V",
                    "--version",
                ]) {
                    return true;
                }
                for out in parsed.value_of(&["-o"]) {
                    self.found.write_to(out.text(), &out.shown(), name);
                }
                for file in &parsed.operands {
                    self.found.write_to(file.text(), &file.shown(), name);
                }
            }
            "patch" => {
                let parsed = Args::parse(
                    args,
                    &[
                        "-d",
                        "--directory",
                        "-o",
                        "--output",
                        "-i",
                        "--input",
                        "-p",
                        "-F",
                        "-B",
                        "-r",
                        "-z",
                        "-D",
                    ],
                );
                if parsed.has(&["--dry-run", "-C", "--check"]) {
                    return true;
                }
                for target in parsed
                    .value_of(&["-d", "--directory", "-o", "--output"])
                    .into_iter()
                    .chain(parsed.operands.first())
                {
                    self.found.write_to(target.text(), &target.shown(), "patch");
                }
                self.found
                    .medium("changes the files named in the patch (`patch`)");
            }
            "openssl" => {
                let sub = args.first().and_then(Word::text).unwrap_or_default();
                if matches!(sub, "s_client" | "s_server" | "s_time" | "ocsp") {
                    self.found
                        .high(format!("contacts the network (`openssl {sub}`)"));
                }
                for pair in args.windows(2) {
                    if let [option, file] = pair {
                        if option.is("-out") {
                            self.found.write_to(file.text(), &file.shown(), "openssl");
                        }
                    }
                }
            }
            _ => return false,
        }
        true
    }

    /// Build, test, version control and package tools.
    /// Returns whether `name` is one of them.
    fn developer_tool(&mut self, name: &str, args: &[Word], depth: usize) -> bool {
        match name {
            "make" | "cmake" | "ninja" | "meson" | "ant" | "gradle" | "mvn" => {
                if args
                    .iter()
                    .all(|a| a.is("--version") || a.is("-v") || a.is("--help"))
                    && !args.is_empty()
                {
                    return true;
                }
                self.found
                    .medium(format!("builds or runs code from the workspace (`{name}`)"));
                if name == "make" {
                    self.make(args);
                }
            }
            "gcc" | "g++" | "cc" | "c++" | "clang" | "clang++" | "rustc" | "javac" | "tsc" => {
                if args.iter().all(|a| a.is("--version") || a.is("-v")) && !args.is_empty() {
                    return true;
                }
                let parsed = Args::parse(
                    args,
                    &[
                        "-o",
                        "-I",
                        "-L",
                        "-l",
                        "-D",
                        "-U",
                        "-x",
                        "-d",
                        "--out-dir",
                        "--outDir",
                    ],
                );
                for out in parsed.value_of(&["-o", "-d", "--out-dir", "--outDir"]) {
                    self.found.write_to(out.text(), &out.shown(), name);
                }
                self.found
                    .medium(format!("compiles code in the workspace (`{name}`)"));
            }
            "java" => self.found.medium("runs a Java program (`java`)"),
            "pytest" | "py.test" | "tox" | "nox" | "jest" | "mocha" | "vitest" => {
                self.found
                    .medium(format!("runs the workspace's tests (`{name}`)"));
            }
            "black" | "isort" | "autopep8" | "yapf" | "rustfmt" => {
                if args
                    .iter()
                    .any(|a| a.is("--check") || a.is("--diff") || a.is("--version"))
                {
                    return true;
                }
                self.found
                    .medium(format!("reformats code files in the workspace (`{name}`)"));
            }
            "ruff" | "eslint" | "prettier" | "gofmt" => {
                let fixes = args
                    .iter()
                    .any(|a| a.is("format") || a.is("--fix") || a.is("--write") || a.is("-w"));
                if fixes || name == "eslint" {
                    self.found.medium(format!(
                        "checks or reformats code in the workspace (`{name}`)"
                    ));
                }
            }
            "git" => self.git(args, depth),
            "pip" | "pip3" => self.pip(name, args),
            "apt" | "apt-get" => {
                let sub = args.iter().find(|a| !a.is_option()).and_then(Word::text);
                let reads = matches!(
                    sub,
                    Some(
                        "list" | "show" | "search" | "policy" | "showpkg" | "depends" | "rdepends"
                    )
                ) && name == "apt";
                let only_options = sub.is_none() && !args.is_empty();
                if !(reads || only_options) {
                    self.found.high(format!(
                        "installs or removes software (`{name}{}`)",
                        sub.map(|s| format!(" {s}")).unwrap_or_default()
                    ));
                }
            }
            "apt-cache" => {}
            "dpkg" | "rpm" => {
                let reads = args.iter().all(|a| {
                    a.text().is_some_and(|t| {
                        !t.starts_with('-')
                            || matches!(
                                t,
                                "-l" | "-L"
                                    | "-s"
                                    | "-S"
                                    | "-q"
                                    | "-qa"
                                    | "-qi"
                                    | "-ql"
                                    | "--list"
                                    | "--listfiles"
                                    | "--status"
                                    | "--search"
                                    | "--query"
                                    | "--get-selections"
                                    | "--print-architecture"
                                    | "--version"
                            )
                    })
                });
                if !reads || args.is_empty() {
                    self.found
                        .high(format!("installs or removes software (`{name}`)"));
                }
            }
            "npm" | "yarn" | "pnpm" => self.node_packages(name, args),
            "npx" | "pnpx" | "bunx" => {
                self.found
                    .high(format!("downloads and runs a package (`{name}`)"));
            }
            "cargo" => self.cargo(args),
            "go" => {
                let sub = args.first().and_then(Word::text).unwrap_or_default();
                match sub {
                    "version" | "env" | "help" | "list" | "doc" => {}
                    "get" | "install" => self
                        .found
                        .high(format!("installs or removes software (`go {sub}`)")),
                    "build" | "test" | "run" | "vet" | "fmt" | "generate" | "mod" | "work"
                    | "clean" => self.found.medium(format!(
                        "builds or runs code from the workspace (`go {sub}`)"
                    )),
                    _ => self
                        .found
                        .high(format!("unknown command `go {}`", show(sub))),
                }
            }
            _ => return false,
        }
        true
    }

    /// Re-parses `code` as the command line of another shell (`sh -c`): a
    /// `cd` inside it does not move what follows.
    fn nested_shell(&mut self, code: &str, input: &Input) {
        let working_dir = self.found.working_dir();
        assess_with_input(code, self.found, self.nesting + 1, input);
        self.found.return_to(working_dir);
    }

    /// Re-parses `code` run by this very shell (`eval`, `trap`).
    fn nested_shell_here(&mut self, code: &str, input: &Input) {
        assess_with_input(code, self.found, self.nesting + 1, input);
    }

    /// Judges the options of `name` against the ones IronClaw knows
    /// (`options.rs`): one it does not know makes a reading command medium
    /// and a command that deletes or moves data high.
    fn options(&mut self, name: &str, args: &[Word]) {
        if listed(FREE_ARGUMENTS, name) {
            return;
        }
        let texts: Vec<Option<&str>> = args.iter().map(Word::text).collect();
        if let Some(table) = options_of(MOVING, name) {
            if let Some(option) = unknown_option(table, &texts, false) {
                self.found.high(format!(
                    "passes `{name}` an option the checker does not know (`{}`)",
                    show(&option)
                ));
            }
        } else if let Some(table) = options_of(READING, name) {
            if let Some(option) = unknown_option(table, &texts, false) {
                self.found.medium(format!(
                    "`{name} {}`: an option IronClaw does not know",
                    show(&option)
                ));
            }
        } else if listed(READS, name) {
            if let Some(option) = args.iter().find(|a| a.is_option()) {
                self.found.medium(format!(
                    "`{name} {}`: an option IronClaw does not know",
                    option.shown()
                ));
            }
        }
    }

    fn deletes(&mut self, name: &str, args: &[Word]) {
        let what = if name == "rmdir" { "folders" } else { "files" };
        self.found.high(format!("deletes {what} (`{name}`)"));
        let parsed = Args::parse(
            args,
            &["-n", "-s", "--iterations", "--size", "--random-source"],
        );
        for target in parsed.operands.iter().filter(|t| t.text().is_some()) {
            if self.found.is_outside(target.text()) {
                self.found.high(format!(
                    "deletes {what} outside the workspace (`{}`)",
                    target.shown()
                ));
            }
        }
    }

    fn env(&mut self, args: &[Word], input: &Input, depth: usize) {
        let mut rest = args;
        while let Some((first, tail)) = rest.split_first() {
            let Some(text) = first.text() else { break };
            if text == "--" {
                rest = tail;
                break;
            }
            if let Some(split) = text
                .strip_prefix("--split-string=")
                .or_else(|| text.strip_prefix("-S").filter(|s| !s.is_empty()))
            {
                let command = join_for_shell(split, tail);
                self.nested_shell(&command, input);
                return;
            }
            if text == "-S" || text == "--split-string" {
                if let Some((string, after)) = tail.split_first() {
                    match string.text() {
                        Some(s) => {
                            let command = join_for_shell(s, after);
                            self.nested_shell(&command, input);
                        }
                        None => self.found.high(format!(
                            "runs a command built at run time (`{}`), which cannot be checked",
                            string.shown()
                        )),
                    }
                }
                return;
            }
            if matches!(text, "-u" | "--unset" | "-C" | "--chdir") {
                if matches!(text, "-C" | "--chdir") {
                    self.chdir(tail.first());
                }
                rest = tail.get(1..).unwrap_or_default();
            } else if let Some(dir) = text.strip_prefix("--chdir=") {
                self.chdir(Some(&Word::literal(dir)));
                rest = tail;
            } else if text.starts_with('-') && text.len() > 1 {
                rest = tail;
            } else if let Some((variable, value)) = text.split_once('=') {
                if is_identifier(variable) {
                    self.variable(variable, Some(value));
                    rest = tail;
                } else {
                    break;
                }
            } else {
                break;
            }
        }
        self.judge(rest, input, depth + 1);
    }

    /// A command moves to `dir` for what follows.
    fn chdir(&mut self, dir: Option<&Word>) {
        self.found.change_dir(dir.and_then(Word::text));
    }

    fn privileged(&mut self, name: &str, args: &[Word], input: &Input, depth: usize) {
        self.found
            .high(format!("runs with administrator rights (`{name}`)"));
        let with_value: &[&str] = match name {
            "sudo" => &[
                "-u",
                "-g",
                "-C",
                "-D",
                "-h",
                "-p",
                "-r",
                "-t",
                "-T",
                "-U",
                "--user",
                "--group",
                "--close-from",
                "--chdir",
                "--host",
                "--prompt",
                "--role",
                "--type",
                "--command-timeout",
                "--other-user",
            ],
            "doas" => &["-u", "-C"],
            "runuser" => &["-u", "-g", "-G", "--user", "--group", "--supp-group"],
            _ => &["--user"],
        };
        let mut rest = skip_options(args, with_value);
        while let Some((first, tail)) = rest.split_first() {
            match first.text().and_then(|t| t.split_once('=')) {
                Some((variable, value)) if is_identifier(variable) => {
                    self.variable(variable, Some(value));
                    rest = tail;
                }
                _ => break,
            }
        }
        self.judge(rest, input, depth + 1);
    }

    fn su(&mut self, args: &[Word], input: &Input) {
        self.found.high("runs with administrator rights (`su`)");
        let parsed = Args::parse(
            args,
            &[
                "-c",
                "--command",
                "-s",
                "--shell",
                "-g",
                "--group",
                "-G",
                "--supp-group",
                "-w",
                "--whitelist-environment",
                "--session-command",
            ],
        );
        for command in parsed.value_of(&["-c", "--command", "--session-command"]) {
            match command.text() {
                Some(code) => {
                    let code = code.to_string();
                    self.nested_shell(&code, input);
                }
                None => self.found.high(format!(
                    "runs a command built at run time (`{}`), which cannot be checked",
                    command.shown()
                )),
            }
        }
    }

    /// `sh -c '…'`, `bash script.sh`, `… | sh`.
    fn shell(&mut self, name: &str, args: &[Word], input: &Input) {
        let mut command_mode = false;
        let mut rest = args;
        while let Some((first, tail)) = rest.split_first() {
            let Some(text) = first.text() else { break };
            if text == "--" || text == "-" {
                rest = tail;
                break;
            }
            if matches!(text, "-o" | "+o" | "-O" | "+O" | "--rcfile" | "--init-file") {
                rest = tail.get(1..).unwrap_or_default();
                continue;
            }
            if text.starts_with("--") {
                rest = tail;
                continue;
            }
            if (text.starts_with('-') || text.starts_with('+')) && text.len() > 1 {
                if text.starts_with('-') && text.contains('c') {
                    command_mode = true;
                }
                rest = tail;
                continue;
            }
            break;
        }
        match (command_mode, rest.first()) {
            (true, Some(code)) => match code.text() {
                Some(code) => {
                    let code = code.to_string();
                    self.nested_shell(&code, input);
                }
                None => self.found.high(format!(
                    "runs a command built at run time (`{}`), which cannot be checked",
                    code.shown()
                )),
            },
            (true, None) => {}
            (false, Some(script)) => self.script("shell script", name, script, input),
            (false, None) => self.program_from_input(Language::Shell, name, input),
        }
    }

    /// `python3 …`: version, `-c` code, `-m` module, a script or its input.
    fn python(&mut self, name: &str, args: &[Word], input: &Input) {
        let shows_version = !args.is_empty()
            && args
                .iter()
                .all(|a| matches!(a.text(), Some("-V" | "-VV" | "--version" | "-h" | "--help")));
        if shows_version {
            return;
        }
        let mut rest = args;
        while let Some((first, tail)) = rest.split_first() {
            let Some(text) = first.text() else { break };
            if text == "--" {
                rest = tail;
                break;
            }
            if text == "-" || !text.starts_with('-') {
                break;
            }
            if text == "--check-hash-based-pycs" {
                rest = tail.get(1..).unwrap_or_default();
                continue;
            }
            if text.starts_with("--") {
                rest = tail;
                continue;
            }
            let letters = &text[1..];
            let mut consumed = false;
            for (at, letter) in letters.char_indices() {
                let attached = &letters[at + letter.len_utf8()..];
                let value = || {
                    if attached.is_empty() {
                        tail.first().cloned()
                    } else {
                        Some(Word::literal(attached))
                    }
                };
                let after = if attached.is_empty() {
                    tail.get(1..).unwrap_or_default()
                } else {
                    tail
                };
                match letter {
                    'c' => {
                        self.found
                            .medium(format!("runs a Python one-liner (`{name} -c`)"));
                        match value().map(|w| (w.value.clone(), w)) {
                            Some((Some(code), _)) => {
                                super::python::assess(&code, self.found, self.nesting + 1);
                            }
                            Some((None, word)) => self.found.high(format!(
                                "runs Python code built at run time (`{}`), which cannot be checked",
                                word.shown()
                            )),
                            None => {}
                        }
                        return;
                    }
                    'm' => {
                        if let Some(module) = value() {
                            self.python_module(name, &module, after);
                        }
                        return;
                    }
                    'W' | 'X' => {
                        rest = after;
                        consumed = true;
                        break;
                    }
                    _ => {}
                }
            }
            if !consumed {
                rest = tail;
            }
        }
        match rest.first() {
            Some(script) if !script.is("-") => self.script("Python script", name, script, input),
            _ => self.program_from_input(Language::Python, name, input),
        }
    }

    fn python_module(&mut self, python: &str, module: &Word, args: &[Word]) {
        let Some(name) = module.text() else {
            self.found.high(format!(
                "runs a Python module chosen at run time (`{}`), which cannot be checked",
                module.shown()
            ));
            return;
        };
        match name {
            "pip" => self.pip("pip", args),
            "ensurepip" => self
                .found
                .high("installs or removes software (`python -m ensurepip`)"),
            "json.tool" | "this" | "calendar" | "platform" | "sysconfig" | "site" | "tabnanny"
            | "tokenize" => {}
            "http.server" | "SimpleHTTPServer" | "smtpd" | "ftplib" | "webbrowser"
            | "urllib.request" | "smtplib" | "telnetlib" | "xmlrpc.server" => self
                .found
                .high(format!("contacts the network (`{python} -m {name}`)")),
            "venv" | "virtualenv" => {
                let parsed = Args::parse(args, &["--prompt"]);
                for dir in &parsed.operands {
                    self.found.write_to(dir.text(), &dir.shown(), "venv");
                }
                self.found.medium(format!(
                    "creates a Python environment (`{python} -m {name}`)"
                ));
            }
            _ => self.found.medium(format!(
                "runs the Python module `{}` (`{python} -m`)",
                show(name)
            )),
        }
    }

    /// `perl -e`, `node -e`, `ruby -e`, `php -r`, `lua -e`, or a script.
    fn interpreter(&mut self, interpreter: &Interpreter, args: &[Word], input: &Input) {
        let Interpreter {
            program: name,
            language,
            ..
        } = *interpreter;
        let shows_version = !args.is_empty()
            && args
                .iter()
                .all(|a| matches!(a.text(), Some("-v" | "-V" | "--version" | "-h" | "--help")));
        if shows_version {
            return;
        }
        let mut one_liner = false;
        let mut in_place = false;
        // Where the operands start: the script, or the files of a one-liner.
        let mut at = 0;
        while let Some(word) = args.get(at) {
            let Some(text) = word.text() else { break };
            if text == "--" {
                at += 1;
                break;
            }
            if !text.starts_with('-') || text == "-" {
                break;
            }
            at += 1;
            if let Some(long) = text.strip_prefix("--") {
                let (option, inline) = match long.split_once('=') {
                    Some((o, _)) => (o, true),
                    None => (long, false),
                };
                if interpreter
                    .code_options
                    .contains(&format!("--{option}").as_str())
                {
                    one_liner = true;
                    if !inline {
                        at += 1;
                    }
                }
                continue;
            }
            let letters = &text[1..];
            for (index, letter) in letters.char_indices() {
                let rest_is_empty = letters.len() == index + letter.len_utf8();
                if interpreter.code_letters.contains(letter) {
                    one_liner = true;
                    if rest_is_empty {
                        at += 1;
                        break;
                    }
                    if interpreter.attached_code {
                        break;
                    }
                } else if letter == 'i' && interpreter.edits_in_place {
                    // `-i.bak`: the rest is a backup suffix.
                    in_place = true;
                    break;
                } else if interpreter.value_letters.contains(letter) {
                    if rest_is_empty {
                        at += 1;
                    }
                    break;
                }
            }
        }
        let operands = args.get(at..).unwrap_or_default();
        if in_place {
            let files = if one_liner {
                operands
            } else {
                operands.get(1..).unwrap_or_default()
            };
            for file in files {
                self.found.write_to(file.text(), &file.shown(), name);
            }
        }
        if one_liner {
            // The options hold the code; judge all of them rather than trust
            // the reading of every option above.
            let code: Option<Vec<&str>> =
                args[..at.min(args.len())].iter().map(Word::text).collect();
            self.one_liner(language, name, code.map(|c| c.join(" ")).as_deref());
            return;
        }
        match operands.first() {
            Some(script) if !script.is("-") => {
                self.script(&format!("{language} program"), name, script, input)
            }
            _ => self.program_from_input(Language::Other(language), name, input),
        }
    }

    /// Judges code in a language the checker cannot parse.
    fn one_liner(&mut self, language: &str, name: &str, code: Option<&str>) {
        match code {
            Some(code) if !RISKY_ONE_LINER_WORDS.split_whitespace().any(|w| code.contains(w)) => {
                self.found
                    .medium(format!("runs a {language} one-liner (`{name}`)"));
            }
            Some(_) => self.found.high(format!(
                "runs a {language} one-liner that may run commands, change files or use the network (`{name}`)"
            )),
            None => self.found.high(format!(
                "runs {language} code built at run time (`{name}`), which cannot be checked"
            )),
        }
    }

    /// `bash script.sh`, `python3 tool.py`, `perl x.pl`.
    fn script(&mut self, kind: &str, name: &str, script: &Word, input: &Input) {
        match script.text() {
            Some("/dev/stdin" | "/proc/self/fd/0") => {
                let language = match kind {
                    "shell script" => Language::Shell,
                    "Python script" => Language::Python,
                    _ => Language::Other("program"),
                };
                self.program_from_input(language, name, input);
            }
            Some(path) => {
                let language = match kind {
                    "shell script" => FileLanguage::Shell,
                    "Python script" => FileLanguage::Python,
                    _ => FileLanguage::Other("program"),
                };
                self.found.run_file(path, language, self.nesting + 1);
            }
            None => self.found.high(format!(
                "runs a {kind} whose name is only known at run time (`{}`)",
                script.shown()
            )),
        }
    }

    /// A shell or interpreter with no program on its command line runs what
    /// it reads.
    fn program_from_input(&mut self, language: Language, name: &str, input: &Input) {
        match input {
            Input::Pipe => self.found.high(format!(
                "runs a program it receives from another command (`| {name}`), which cannot be checked"
            )),
            Input::Text(Some(code)) => match language {
                Language::Shell => {
                    self.found
                        .medium(format!("runs shell commands given in the text (`{name}`)"));
                    self.nested_shell(code, &Input::Nothing);
                }
                Language::Python => {
                    self.found
                        .medium(format!("runs a Python program given in the text (`{name}`)"));
                    super::python::assess(code, self.found, self.nesting + 1);
                }
                Language::Other(language) => self.one_liner(language, name, Some(code)),
            },
            Input::Text(None) => self.found.high(format!(
                "runs a program built at run time (`{name}`), which cannot be checked"
            )),
            Input::File(Some(file)) => self
                .found
                .medium(format!("runs the program in `{}` (`{name}`)", show(file))),
            Input::File(None) => self.found.high(format!(
                "runs a program from a file only known at run time (`{name}`)"
            )),
            Input::Nothing => self
                .found
                .medium(format!("starts an interpreter (`{name}`)")),
        }
    }

    /// `source file`, `. file`.
    fn source(&mut self, name: &str, args: &[Word], input: &Input) {
        match args.first() {
            None => {}
            Some(file) => match file.text() {
                Some("/dev/stdin" | "/proc/self/fd/0" | "-") => {
                    self.program_from_input(Language::Shell, name, input)
                }
                Some(path) => {
                    // `source` runs the file in this very shell: a `cd` in
                    // it moves what follows.
                    self.found.source_file(path, self.nesting + 1);
                }
                None => self.found.high(format!(
                    "runs a shell script whose name is only known at run time (`{name} {}`)",
                    file.shown()
                )),
            },
        }
    }

    /// `cp`, `mv`, `install`, `ln`: judged by where they write, and for
    /// `mv` and `ln` also by what they take from.
    fn copy(&mut self, name: &str, args: &[Word]) {
        let parsed = Args::parse(
            args,
            &[
                "-t",
                "--target-directory",
                "-S",
                "--suffix",
                "-m",
                "--mode",
                "-o",
                "--owner",
                "-g",
                "--group",
            ],
        );
        let target_dirs = parsed.value_of(&["-t", "--target-directory"]);
        let (sources, targets): (Vec<&Word>, Vec<&Word>) = if !target_dirs.is_empty() {
            (parsed.operands.iter().collect(), target_dirs)
        } else if name == "install" && parsed.has(&["-d", "--directory"]) {
            (Vec::new(), parsed.operands.iter().collect())
        } else {
            match parsed.operands.split_last() {
                Some((last, rest)) if !rest.is_empty() => (rest.iter().collect(), vec![last]),
                Some((only, _)) if name == "ln" => (vec![only], Vec::new()),
                _ => (Vec::new(), Vec::new()),
            }
        };
        let here = Word::literal(".");
        let targets = if targets.is_empty() && name == "ln" && !sources.is_empty() {
            vec![&here]
        } else {
            targets
        };
        for target in targets {
            self.found.write_to(target.text(), &target.shown(), name);
            // Into a folder: each source lands under its own name there.
            let folder = target
                .text()
                .and_then(|t| self.found.workspace_path(t))
                .filter(|t| self.found.view.entry(t) == Entry::Folder);
            if let Some(folder) = folder {
                for source in sources.iter().filter_map(|s| s.text()) {
                    let base = source
                        .trim_end_matches('/')
                        .rsplit('/')
                        .next()
                        .unwrap_or_default();
                    if base.is_empty() || base == ".." || base == "." {
                        continue;
                    }
                    let landing = if folder.is_empty() {
                        base.to_string()
                    } else {
                        format!("{folder}/{base}")
                    };
                    self.found.write_to(Some(&landing), &show(&landing), name);
                }
            }
        }
        for source in sources {
            if !self.found.is_outside(source.text()) {
                continue;
            }
            match name {
                "mv" => self.found.high(format!(
                    "moves files away from outside the workspace (`{}`)",
                    source.shown()
                )),
                "ln" => self.found.high(format!(
                    "links to a place outside the workspace (`{}`), so later writes through the link land there",
                    source.shown()
                )),
                _ => {}
            }
        }
    }

    fn chmod(&mut self, args: &[Word]) {
        let mut mode = None;
        let mut files = Vec::new();
        let mut reference = false;
        for arg in args {
            let text = arg.text().unwrap_or_default();
            let is_flag = matches!(
                text,
                "-R" | "-v"
                    | "-c"
                    | "-f"
                    | "--recursive"
                    | "--verbose"
                    | "--changes"
                    | "--silent"
                    | "--quiet"
                    | "--preserve-root"
                    | "--no-preserve-root"
                    | "--"
            );
            if text.starts_with("--reference") {
                reference = true;
            } else if is_flag {
            } else if mode.is_none() && !reference {
                mode = Some(arg);
            } else {
                files.push(arg);
            }
        }
        match mode.map(|m| (m, m.text())) {
            Some((_, Some(mode))) if grants_setuid(mode) => self
                .found
                .high("lets a program run with its owner's rights (setuid)"),
            Some((word, None)) => self.found.high(format!(
                "changes permissions to a mode only known at run time (`{}`)",
                word.shown()
            )),
            _ => {}
        }
        self.ownership("permissions", "chmod", &files);
        self.recursive_change("permissions", "chmod", args);
    }

    /// `chmod -R`, `chown -R`: every file under a folder at once, which can
    /// lock the person (and later commands) out of their whole workspace.
    fn recursive_change(&mut self, what: &str, name: &str, args: &[Word]) {
        let recursive = args.iter().any(|a| {
            a.is("--recursive")
                || a.text()
                    .is_some_and(|t| t.starts_with('-') && !t.starts_with("--") && t.contains('R'))
        });
        if recursive {
            self.found.high(format!(
                "changes the {what} of every file in a folder at once (`{name} -R`)"
            ));
        }
    }

    fn chown(&mut self, name: &str, args: &[Word]) {
        let parsed = Args::parse(args, &["--from"]);
        let reference = parsed.values.iter().any(|(o, _)| o == "--reference");
        let files: Vec<&Word> = parsed
            .operands
            .iter()
            .skip(if reference { 0 } else { 1 })
            .collect();
        self.ownership("owners", name, &files);
        self.recursive_change("owners", name, args);
    }

    fn ownership(&mut self, what: &str, name: &str, files: &[&Word]) {
        for file in files {
            match file.text() {
                Some(path) if !self.found.is_outside(Some(path)) => self
                    .found
                    .medium(format!("changes file {what} in the workspace (`{name}`)")),
                Some(_) => self.found.high(format!(
                    "changes file {what} outside the workspace (`{}`)",
                    file.shown()
                )),
                None => self.found.high(format!(
                    "changes file {what} of a place only known at run time (`{}`)",
                    file.shown()
                )),
            }
        }
    }

    fn xargs(&mut self, args: &[Word], depth: usize) {
        let mut replace: Option<String> = None;
        let mut rest = args;
        while let Some((first, tail)) = rest.split_first() {
            let Some(text) = first.text() else { break };
            if text == "--" {
                rest = tail;
                break;
            }
            if !text.starts_with('-') || text == "-" {
                break;
            }
            rest = tail;
            if let Some(long) = text.strip_prefix("--") {
                if let Some(r) = long.strip_prefix("replace") {
                    replace = Some(r.strip_prefix('=').unwrap_or("{}").to_string());
                } else if !long.contains('=')
                    && matches!(
                        long,
                        "arg-file"
                            | "delimiter"
                            | "max-args"
                            | "max-procs"
                            | "max-chars"
                            | "eof"
                            | "max-lines"
                    )
                {
                    rest = tail.get(1..).unwrap_or_default();
                }
                continue;
            }
            let letters = &text[1..];
            for (at, letter) in letters.char_indices() {
                let attached = &letters[at + letter.len_utf8()..];
                match letter {
                    'I' | 'L' | 'n' | 'P' | 's' | 'd' | 'E' | 'a' => {
                        let value = if attached.is_empty() {
                            rest = tail.get(1..).unwrap_or_default();
                            tail.first().and_then(Word::text).unwrap_or_default()
                        } else {
                            attached
                        };
                        if letter == 'I' {
                            replace = Some(value.to_string());
                        }
                        break;
                    }
                    'i' => {
                        replace =
                            Some(if attached.is_empty() { "{}" } else { attached }.to_string());
                        break;
                    }
                    'e' | 'l' => break,
                    _ => {}
                }
            }
        }
        let mut command: Vec<Word> = rest
            .iter()
            .map(|w| match (&replace, w.text()) {
                (Some(r), Some(t)) if !r.is_empty() && t.contains(r.as_str()) => {
                    Word::runtime(&w.raw)
                }
                _ => w.clone(),
            })
            .collect();
        if command.is_empty() {
            return;
        }
        if replace.is_none() {
            command.push(Word::runtime("(input)"));
        }
        self.judge(&command, &Input::Nothing, depth + 1);
    }

    fn find(&mut self, args: &[Word], depth: usize) {
        const WITH_VALUE: &[&str] = &[
            "-name",
            "-iname",
            "-path",
            "-ipath",
            "-wholename",
            "-iwholename",
            "-regex",
            "-iregex",
            "-lname",
            "-ilname",
            "-type",
            "-xtype",
            "-newer",
            "-anewer",
            "-cnewer",
            "-mtime",
            "-mmin",
            "-atime",
            "-amin",
            "-ctime",
            "-cmin",
            "-size",
            "-user",
            "-group",
            "-uid",
            "-gid",
            "-perm",
            "-maxdepth",
            "-mindepth",
            "-links",
            "-inum",
            "-samefile",
            "-printf",
            "-fstype",
            "-context",
            "-regextype",
            "-used",
            "-files0-from",
            "-D",
            "-O",
        ];
        const FLAGS: &[&str] = &[
            "-print",
            "-print0",
            "-ls",
            "-prune",
            "-quit",
            "-true",
            "-false",
            "-empty",
            "-readable",
            "-writable",
            "-executable",
            "-nouser",
            "-nogroup",
            "-depth",
            "-d",
            "-mount",
            "-xdev",
            "-noleaf",
            "-follow",
            "-daystart",
            "-ignore_readdir_race",
            "-noignore_readdir_race",
            "-not",
            "-a",
            "-and",
            "-o",
            "-or",
            "!",
            "(",
            ")",
            ",",
            "-version",
            "--version",
            "-help",
            "--help",
            "-H",
            "-L",
            "-P",
            "-warn",
            "-nowarn",
        ];
        let mut at = 0;
        let mut in_expression = false;
        while let Some(arg) = args.get(at) {
            at += 1;
            let Some(text) = arg.text() else {
                self.found.high(format!(
                    "passes `find` a word only known at run time (`{}`), which could be an action",
                    arg.shown()
                ));
                continue;
            };
            if !in_expression && !text.starts_with('-') && !matches!(text, "!" | "(" | ")") {
                continue;
            }
            in_expression = true;
            match text {
                "-delete" => self.found.high("deletes files (`find -delete`)"),
                "-exec" | "-execdir" | "-ok" | "-okdir" => {
                    let mut command = Vec::new();
                    while let Some(word) = args.get(at) {
                        at += 1;
                        if word.is(";")
                            || (word.is("+")
                                && command.last().is_some_and(|w: &Word| w.raw == "{}"))
                        {
                            break;
                        }
                        command.push(match word.text() {
                            Some(t) if t.contains("{}") => Word::runtime(&word.raw),
                            _ => word.clone(),
                        });
                    }
                    self.judge(&command, &Input::Nothing, depth + 1);
                }
                "-fprint" | "-fprint0" | "-fls" | "-fprintf" => {
                    if let Some(file) = args.get(at) {
                        self.found.write_to(file.text(), &file.shown(), "find");
                    }
                    at += if text == "-fprintf" { 2 } else { 1 };
                }
                _ if WITH_VALUE.contains(&text) || text.starts_with("-newer") => at += 1,
                _ if FLAGS.contains(&text) || text.starts_with("-O") || text.starts_with("-D") => {}
                _ if text.starts_with('-') => self.found.high(format!(
                    "uses a `find` option the checker does not know (`{}`)",
                    show(text)
                )),
                _ => {}
            }
        }
    }

    fn sed(&mut self, args: &[Word]) {
        let mut scripts: Vec<Word> = Vec::new();
        let mut script_file = false;
        let mut in_place = false;
        let mut operands: Vec<&Word> = Vec::new();
        let mut words = args.iter();
        while let Some(word) = words.next() {
            let Some(text) = word.text() else {
                operands.push(word);
                continue;
            };
            if text == "--" {
                operands.extend(words.by_ref());
                break;
            }
            if let Some(long) = text.strip_prefix("--") {
                let (option, value) = match long.split_once('=') {
                    Some((o, v)) => (o, Some(Word::literal(v))),
                    None => (long, None),
                };
                match option {
                    "in-place" => in_place = true,
                    "expression" => scripts.extend(value.or_else(|| words.next().cloned())),
                    "file" => {
                        script_file = true;
                        if value.is_none() {
                            words.next();
                        }
                    }
                    "line-length" if value.is_none() => {
                        words.next();
                    }
                    _ => {}
                }
                continue;
            }
            let Some(letters) = text.strip_prefix('-').filter(|l| !l.is_empty()) else {
                operands.push(word);
                continue;
            };
            for (at, letter) in letters.char_indices() {
                let attached = &letters[at + letter.len_utf8()..];
                match letter {
                    'i' => {
                        in_place = true;
                        break;
                    }
                    'e' | 'f' | 'l' => {
                        let value = if attached.is_empty() {
                            words.next().cloned()
                        } else {
                            Some(Word::literal(attached))
                        };
                        match letter {
                            'e' => scripts.extend(value),
                            'f' => script_file = true,
                            _ => {}
                        }
                        break;
                    }
                    _ => {}
                }
            }
        }
        if scripts.is_empty() && !script_file && !operands.is_empty() {
            scripts.push(operands.remove(0).clone());
        }
        if script_file {
            self.found.medium("runs a `sed` script from a file");
        }
        for script in &scripts {
            match script.text() {
                None => self.found.high(format!(
                    "uses a `sed` script only known at run time (`{}`)",
                    script.shown()
                )),
                Some(text) => {
                    let judged = judge_sed_script(text);
                    if judged.runs_commands {
                        self.found.high("makes `sed` run commands (`e`)");
                    }
                    if judged.not_understood {
                        self.found.high(format!(
                            "uses a `sed` script the checker cannot read (`{}`)",
                            show(text)
                        ));
                    }
                    for file in judged.writes {
                        self.found.write_to(Some(&file), &show(&file), "sed");
                    }
                }
            }
        }
        if in_place {
            for file in operands {
                self.found.write_to(file.text(), &file.shown(), "sed -i");
            }
        }
    }

    fn awk(&mut self, name: &str, args: &[Word]) {
        let parsed = Args::parse(
            args,
            &[
                "-F",
                "-v",
                "-f",
                "-i",
                "-l",
                "-E",
                "--file",
                "--field-separator",
                "--assign",
                "--include",
                "--load",
                "--exec",
            ],
        );
        if !parsed
            .value_of(&[
                "-f",
                "--file",
                "-E",
                "--exec",
                "-i",
                "--include",
                "-l",
                "--load",
            ])
            .is_empty()
        {
            self.found
                .medium(format!("runs an awk program from a file (`{name}`)"));
            return;
        }
        let Some(program) = parsed.operands.first() else {
            return;
        };
        let Some(text) = program.text() else {
            self.found.high(format!(
                "runs an awk program built at run time (`{}`), which cannot be checked",
                program.shown()
            ));
            return;
        };
        let judged = judge_awk_program(text);
        if judged.runs_commands {
            self.found
                .high(format!("makes `{name}` run commands (`system` or `|`)"));
        }
        for target in judged.writes {
            self.found.write_to(
                target.as_deref(),
                target.as_deref().unwrap_or("a file"),
                name,
            );
        }
    }

    fn tar(&mut self, args: &[Word]) {
        // The old form `tar xzf a.tgz` is the new form `tar -xzf a.tgz`.
        let mut words: Vec<Word> = args.to_vec();
        if let Some(first) = words.first_mut() {
            if let Some(text) = first.text().filter(|t| !t.starts_with('-')) {
                *first = Word::literal(&format!("-{text}"));
            }
        }
        self.options("tar", &words);
        let parsed = Args::parse(
            &words,
            &[
                "-f",
                "--file",
                "-C",
                "--directory",
                "-I",
                "--use-compress-program",
                "-T",
                "--files-from",
                "-X",
                "--exclude-from",
                "--to-command",
                "-b",
                "-H",
                "--format",
                "-g",
                "-K",
                "-L",
                "-N",
                "-V",
                "--exclude",
                "--transform",
                "--owner",
                "--group",
                "--mode",
                "--checkpoint-action",
                "--info-script",
                "--new-volume-script",
                "-F",
                "--rsh-command",
            ],
        );
        let runs = [
            "-I",
            "--use-compress-program",
            "--to-command",
            "--checkpoint-action",
            "--info-script",
            "--new-volume-script",
            "-F",
            "--rsh-command",
        ];
        if parsed.has(&runs) {
            self.found.high("lets `tar` run another program");
        }
        if parsed.has(&["-t", "--list"]) {
            return;
        }
        let archive = parsed
            .value_of(&["-f", "--file"])
            .first()
            .map(|w| (*w).clone());
        if parsed.has(&["-x", "--extract", "--get"]) {
            if parsed.has(&["-P", "--absolute-names"]) {
                self.found
                    .high("unpacks files to any place the archive names (`tar -P`)");
            }
            let dir = parsed
                .value_of(&["-C", "--directory"])
                .last()
                .map(|w| (*w).clone())
                .unwrap_or_else(|| Word::literal("."));
            self.found.write_to(dir.text(), &dir.shown(), "tar");
        } else if parsed.has(&["-c", "--create", "-r", "--append", "-u", "--update"]) {
            match archive {
                Some(archive) if !archive.is("-") => {
                    self.found.write_to(archive.text(), &archive.shown(), "tar")
                }
                _ => {}
            }
        } else {
            self.found.medium("works on an archive (`tar`)");
        }
    }

    fn git(&mut self, args: &[Word], depth: usize) {
        let mut elsewhere: Option<String> = None;
        let mut at = 0;
        while let Some(arg) = args.get(at) {
            let Some(text) = arg.text() else {
                self.found.high(format!(
                    "runs a git command only known at run time (`{}`)",
                    arg.shown()
                ));
                return;
            };
            if !text.starts_with('-') {
                break;
            }
            at += 1;
            let (option, inline) = match text.split_once('=') {
                Some((o, v)) if o.starts_with("--") => (o, Some(v.to_string())),
                _ => (text, None),
            };
            let takes_value = matches!(
                option,
                "-C" | "-c"
                    | "--git-dir"
                    | "--work-tree"
                    | "--namespace"
                    | "--config-env"
                    | "--super-prefix"
            );
            let value = match inline {
                Some(v) => Some(Word::literal(&v)),
                None if takes_value => {
                    at += 1;
                    args.get(at - 1).cloned()
                }
                None => None,
            };
            match option {
                "-C" | "--git-dir" | "--work-tree" => {
                    let value = value.unwrap_or_else(|| Word::runtime(""));
                    if self.found.is_outside(value.text()) {
                        elsewhere = Some(value.shown());
                    }
                }
                "-c" | "--config-env" => {
                    let setting = value.as_ref().and_then(Word::text).unwrap_or_default();
                    let key = setting.split('=').next().unwrap_or_default();
                    self.git_setting(key);
                }
                "--exec-path" if value.is_some() => self
                    .found
                    .high("lets git run programs from another folder (`--exec-path`)"),
                "--version" | "-v" | "--help" | "-h" | "--exec-path" | "--html-path"
                | "--man-path" | "--info-path" => return,
                _ => {}
            }
        }
        let globals: Vec<Option<&str>> =
            args[..at.min(args.len())].iter().map(Word::text).collect();
        if let Some(option) = unknown_option(&GIT_GLOBAL, &globals, false) {
            self.found.high(format!(
                "passes `git` an option the checker does not know (`{}`)",
                show(&option)
            ));
        }
        let Some(sub) = args.get(at) else { return };
        let Some(sub) = sub.text() else { return };
        let rest = &args[at + 1..];
        if let Some(table) = options_of(GIT, sub) {
            let texts: Vec<Option<&str>> = rest.iter().map(Word::text).collect();
            if let Some(option) = unknown_option(table, &texts, true) {
                let shown = format!("`git {sub} {}`", show(&option));
                if listed(GIT_READS, sub) {
                    self.found
                        .medium(format!("{shown}: an option IronClaw does not know"));
                } else {
                    self.found.high(format!(
                        "{shown}: an option IronClaw does not know, on a git command that changes files or history"
                    ));
                }
            }
        }
        for word in rest {
            let text = word.text().unwrap_or_default();
            if ["--upload-pack", "--receive-pack", "--exec"]
                .iter()
                .any(|o| text == *o || text.starts_with(&format!("{o}=")))
                || (matches!(sub, "clone" | "fetch" | "pull" | "ls-remote" | "archive")
                    && text == "-u")
            {
                self.found.high(format!(
                    "lets git run another program (`{}`)",
                    show(text.split('=').next().unwrap_or(text))
                ));
            }
        }
        match (self.git_subcommand(sub, rest, depth), elsewhere) {
            (Some(_), Some(place)) => self.found.high(format!(
                "changes a git repository outside the workspace (`{place}`)"
            )),
            (Some(change), None) => self.found.medium(change),
            (None, _) => {}
        }
    }

    /// Judges setting the git option `key`.
    fn git_setting(&mut self, key: &str) {
        let lower = key.to_ascii_lowercase();
        let safe = SAFE_GIT_SETTINGS.split_whitespace().any(|s| {
            if s.ends_with('.') {
                lower.starts_with(s)
            } else {
                lower == *s
            }
        });
        if !safe {
            self.found.high(format!(
                "sets the git option `{}`, which can make git run a program",
                show(key)
            ));
        }
    }

    /// Judges `git <sub> <rest>`; returns the medium reason when it changes
    /// the repository or the workspace (high findings are added directly).
    fn git_subcommand(&mut self, sub: &str, rest: &[Word], depth: usize) -> Option<String> {
        let parsed = Args::parse(rest, &[]);
        let has = |options: &[&str]| parsed.has(options);
        let first = parsed.operands.first().and_then(Word::text);
        let changes = || Some(format!("changes the git repository (`git {sub}`)"));
        match sub {
            "status" | "log" | "diff" | "show" | "rev-parse" | "rev-list" | "ls-files"
            | "ls-tree" | "cat-file" | "blame" | "annotate" | "shortlog" | "describe"
            | "whatchanged" | "help" | "version" | "count-objects" | "fsck" | "show-ref"
            | "for-each-ref" | "name-rev" | "merge-base" | "check-ignore" | "check-attr"
            | "var" | "show-branch" | "cherry" | "range-diff" | "diff-tree" | "diff-files"
            | "diff-index" | "verify-commit" | "verify-tag" | "grep" | "format-patch" => {
                if sub == "grep" && has(&["-O", "--open-files-in-pager"]) {
                    self.found
                        .high("lets git run another program (`--open-files-in-pager`)");
                }
                for out in parsed.value_of(&["--output", "--output-directory"]) {
                    self.found.write_to(out.text(), &out.shown(), "git");
                }
                if sub == "format-patch" {
                    return changes();
                }
                None
            }
            "branch" | "tag" => {
                if has(&["-d", "-D", "--delete"]) {
                    self.found
                        .high(format!("deletes a git {sub} (`git {sub} -d`)"));
                    return None;
                }
                let lists = sub == "branch" && has(&["-a", "--all"])
                    || has(&[
                        "-l",
                        "--list",
                        "-r",
                        "--remotes",
                        "--contains",
                        "--merged",
                        "--no-merged",
                        "--show-current",
                        "-v",
                        "-vv",
                        "--verbose",
                        "--points-at",
                        "--format",
                        "-n",
                    ]);
                let alters = has(&[
                    "-m",
                    "-M",
                    "-c",
                    "-C",
                    "--move",
                    "--copy",
                    "-u",
                    "-f",
                    "--force",
                    "--set-upstream-to",
                    "--unset-upstream",
                ]) || sub == "tag" && has(&["-a", "-s", "--annotate", "--sign"]);
                let only_lists = parsed.operands.is_empty() || lists;
                if only_lists && !alters {
                    None
                } else {
                    changes()
                }
            }
            "remote" => match first {
                None | Some("get-url") => None,
                Some("show" | "update" | "prune") => {
                    self.found.high(format!(
                        "contacts the network (`git remote {}`)",
                        first.unwrap_or_default()
                    ));
                    None
                }
                _ => Some("changes the repository's remotes (`git remote`)".to_string()),
            },
            "stash" => match first {
                Some("list" | "show") => None,
                Some("drop" | "clear") => {
                    self.found.high("deletes saved changes (`git stash drop`)");
                    None
                }
                _ => Some("changes files in the workspace (`git stash`)".to_string()),
            },
            "config" => self.git_config(rest),
            "add" | "commit" | "merge" | "cherry-pick" | "revert" | "init" | "mv" | "apply"
            | "am" | "notes" | "sparse-checkout" | "update-index" | "gc" | "repack"
            | "pack-refs" | "prune" | "maintenance" | "commit-tree" | "write-tree"
            | "read-tree" | "symbolic-ref" | "bundle" => changes(),
            "rm" => {
                if has(&["--cached"]) {
                    changes()
                } else {
                    self.found.high("deletes files (`git rm`)");
                    None
                }
            }
            "clean" => {
                if !has(&["-n", "--dry-run"]) {
                    self.found.high("deletes files (`git clean`)");
                }
                None
            }
            "reset" => {
                if has(&["--hard", "--merge", "--keep"]) {
                    self.found
                        .high("throws away uncommitted changes (`git reset --hard`)");
                    None
                } else {
                    changes()
                }
            }
            "checkout" | "switch" => {
                let discards = has(&[
                    "-f",
                    "--force",
                    "--discard-changes",
                    "--ours",
                    "--theirs",
                    "-p",
                    "--patch",
                ]) || rest.iter().any(|w| w.is("--") || w.is("."));
                if discards {
                    self.found
                        .high(format!("throws away uncommitted changes (`git {sub}`)"));
                    None
                } else {
                    Some(format!("switches branches in the workspace (`git {sub}`)"))
                }
            }
            "restore" => {
                if has(&["-S", "--staged"]) && !has(&["-W", "--worktree"]) {
                    changes()
                } else {
                    self.found
                        .high("throws away uncommitted changes (`git restore`)");
                    None
                }
            }
            "rebase" => {
                if has(&["-x", "--exec"]) {
                    self.found
                        .high("lets git run another program (`git rebase --exec`)");
                }
                changes()
            }
            "bisect" => {
                if first == Some("run") {
                    let at = rest.iter().position(|w| w.is("run")).unwrap_or(0);
                    self.judge(&rest[at + 1..], &Input::Nothing, depth + 1);
                }
                changes()
            }
            "worktree" => match first {
                Some("list") | None => None,
                Some("remove" | "prune") => {
                    self.found.high("deletes files (`git worktree remove`)");
                    None
                }
                _ => {
                    if let Some(path) = parsed.operands.get(1) {
                        self.found
                            .write_to(path.text(), &path.shown(), "git worktree");
                    }
                    changes()
                }
            },
            "submodule" => match first {
                None | Some("status" | "summary" | "foreach") if first != Some("foreach") => None,
                Some("init" | "deinit" | "absorbgitdirs" | "set-branch") => changes(),
                _ => {
                    self.found
                        .high("contacts the network or runs commands (`git submodule`)");
                    None
                }
            },
            "reflog" => match first {
                Some("expire" | "delete") => {
                    self.found.high("deletes git history (`git reflog expire`)");
                    None
                }
                _ => None,
            },
            "clone" | "fetch" | "pull" | "push" | "ls-remote" | "send-email" | "request-pull"
            | "svn" | "p4" | "daemon" | "instaweb" | "http-fetch" | "http-push" => {
                self.found
                    .high(format!("contacts the network (`git {sub}`)"));
                None
            }
            "archive" => {
                if parsed.values.iter().any(|(o, _)| o == "--remote") || has(&["--remote"]) {
                    self.found
                        .high("contacts the network (`git archive --remote`)");
                }
                for out in parsed.value_of(&["--output"]) {
                    self.found.write_to(out.text(), &out.shown(), "git archive");
                }
                None
            }
            "filter-branch" | "filter-repo" | "update-ref" | "replace" => {
                self.found
                    .high(format!("rewrites git history (`git {sub}`)"));
                None
            }
            _ => {
                self.found
                    .high(format!("unknown command `git {}`", show(sub)));
                None
            }
        }
    }

    fn git_config(&mut self, rest: &[Word]) -> Option<String> {
        let parsed = Args::parse(rest, &["-f", "--file", "--blob", "--type", "--default"]);
        let reads = parsed.has(&[
            "--get",
            "--get-all",
            "--get-regexp",
            "--get-urlmatch",
            "--get-color",
            "--get-colorbool",
            "-l",
            "--list",
            "--show-origin",
            "--show-scope",
            "-e",
            "--edit",
        ]) && !parsed.has(&["-e", "--edit"]);
        let operands: Vec<&str> = parsed.operands.iter().filter_map(Word::text).collect();
        let (sub, keys): (Option<&str>, &[&str]) = match operands.split_first() {
            Some((first, rest)) if matches!(*first, "get" | "list") => (Some(first), rest),
            Some((first, rest))
                if matches!(
                    *first,
                    "set" | "unset" | "rename-section" | "remove-section" | "edit"
                ) =>
            {
                (Some(first), rest)
            }
            _ => (None, &operands),
        };
        if parsed.has(&["-e", "--edit"]) || sub == Some("edit") {
            self.found
                .high("opens git settings in an editor (`git config --edit`)");
            return None;
        }
        if reads
            || matches!(sub, Some("get" | "list"))
            || keys.len() < 2
                && sub.is_none()
                && !parsed.has(&[
                    "--unset",
                    "--unset-all",
                    "--add",
                    "--replace-all",
                    "--remove-section",
                    "--rename-section",
                ])
        {
            return None;
        }
        if let Some(key) = keys.first() {
            self.git_setting(key);
        }
        if parsed.has(&["--global", "--system"]) {
            self.found
                .high("changes git settings outside the workspace (`git config --global`)");
            return None;
        }
        for file in parsed.value_of(&["-f", "--file"]) {
            self.found
                .write_to(file.text(), &file.shown(), "git config");
        }
        Some("changes the repository's git settings (`git config`)".to_string())
    }

    fn pip(&mut self, name: &str, args: &[Word]) {
        let sub = args.iter().find(|a| !a.is_option()).and_then(Word::text);
        match sub {
            None if args.is_empty() || args.iter().all(|a| a.is_option()) => {}
            Some("list" | "show" | "freeze" | "check" | "help" | "inspect" | "debug" | "hash") => {}
            Some("config" | "cache") => {
                self.found
                    .medium(format!("changes pip's settings or cache (`{name}`)"));
            }
            Some(sub @ ("install" | "uninstall" | "download" | "wheel" | "search" | "index")) => {
                self.found
                    .high(format!("installs or removes software (`{name} {sub}`)"));
            }
            _ => self.found.high(format!(
                "unknown command `{name} {}`",
                show(sub.unwrap_or_default())
            )),
        }
    }

    fn node_packages(&mut self, name: &str, args: &[Word]) {
        let sub = args.iter().find(|a| !a.is_option()).and_then(Word::text);
        match sub {
            None if name == "yarn" && args.is_empty() => {
                self.found.high("installs or removes software (`yarn`)");
            }
            None => {}
            Some(
                "ls" | "list" | "ll" | "la" | "help" | "root" | "bin" | "prefix" | "why"
                | "explain" | "config" | "get" | "version" | "-v",
            ) => {}
            Some(
                "run" | "run-script" | "test" | "t" | "tst" | "start" | "stop" | "restart"
                | "build" | "lint" | "dev",
            ) => {
                self.found.medium(format!(
                    "runs a script from the workspace's package.json (`{name} {}`)",
                    sub.unwrap_or_default()
                ));
                let script = match sub {
                    Some("run" | "run-script") => args
                        .iter()
                        .filter(|a| !a.is_option())
                        .nth(1)
                        .and_then(Word::text),
                    Some("t" | "tst") => Some("test"),
                    other => other,
                };
                self.package_script(script);
            }
            Some(sub) => {
                self.found.high(format!(
                    "installs or removes software (`{name} {}`)",
                    show(sub)
                ));
            }
        }
    }

    /// `make`: the recipes of the makefile it reads are shell commands.
    fn make(&mut self, args: &[Word]) {
        let parsed = Args::parse(args, &["-f", "--file", "--makefile", "-C", "--directory"]);
        if !parsed.value_of(&["-C", "--directory"]).is_empty() {
            self.found
                .high("runs a makefile from another folder (`make -C`), which cannot be checked");
            return;
        }
        let named = parsed.value_of(&["-f", "--file", "--makefile"]);
        let file = match named.first() {
            Some(word) => match word.text() {
                Some(file) => file.to_string(),
                None => {
                    self.found.high(format!(
                        "runs a makefile whose name is only known at run time (`{}`)",
                        word.shown()
                    ));
                    return;
                }
            },
            None => ["GNUmakefile", "makefile", "Makefile"]
                .into_iter()
                .find(|f| !matches!(self.found.view.entry(f), Entry::Missing))
                .unwrap_or("Makefile")
                .to_string(),
        };
        let Some(text) = self.workspace_text(&file, "makefile") else {
            return;
        };
        let mut recipes = String::new();
        for line in text.lines() {
            if let Some(recipe) = line.strip_prefix('\t') {
                let recipe = recipe.trim_start_matches(['@', '-', '+', ' ']);
                recipes.push_str(&recipe.replace("$$", "$"));
                recipes.push('\n');
            } else if line.contains("$(shell") || line.contains("${shell") {
                self.found.high(format!(
                    "runs {}, which runs commands while it is read (`$(shell …)`)",
                    show(&file)
                ));
            }
        }
        self.judged_text(&file, &recipes);
    }

    /// `npm run x`: the script of `x` in package.json, and its `pre`/`post`
    /// scripts, are shell commands.
    fn package_script(&mut self, script: Option<&str>) {
        let Some(text) = self.workspace_text("package.json", "package.json") else {
            return;
        };
        let scripts = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("scripts").cloned());
        let Some(script) = script else {
            self.found
                .high("runs a package.json script chosen at run time, which cannot be checked");
            return;
        };
        let mut commands = String::new();
        for key in [
            format!("pre{script}"),
            script.to_string(),
            format!("post{script}"),
        ] {
            if let Some(command) = scripts.as_ref().and_then(|s| s.get(&key)) {
                match command.as_str() {
                    Some(command) => {
                        commands.push_str(command);
                        commands.push('\n');
                    }
                    None => self.found.high(
                        "has a package.json script that is not text, which cannot be checked",
                    ),
                }
            }
        }
        self.judged_text("package.json", &commands);
    }

    /// The text of a workspace file a runner reads (a makefile,
    /// package.json), hashed as judged; `None` (and high) when it cannot be
    /// read.
    fn workspace_text(&mut self, path: &str, what: &str) -> Option<String> {
        let Some(inside) = self.found.workspace_path(path) else {
            self.found.high(format!(
                "reads its {what} from outside the workspace (`{}`), which cannot be checked",
                show(path)
            ));
            return None;
        };
        if self.found.written.contains(&inside) {
            self.found.high(format!(
                "runs {}, which this same call writes first, so what runs cannot be checked",
                show(&inside)
            ));
            return None;
        }
        let bytes = match self.found.view.entry(&inside) {
            Entry::File { .. } => self.found.view.read(&inside),
            _ => None,
        };
        let Some(bytes) = bytes else {
            self.found.high(format!(
                "runs commands from {}, which cannot be read, so they cannot be checked",
                show(&inside)
            ));
            return None;
        };
        self.found
            .judged
            .insert(inside.clone(), super::sha256_hex(&bytes));
        match String::from_utf8(bytes) {
            Ok(text) => Some(text),
            Err(_) => {
                self.found.high(format!(
                    "runs commands from {}, which is not text, so they cannot be checked",
                    show(&inside)
                ));
                None
            }
        }
    }

    /// Judges shell `commands` taken from the workspace file `file`, with
    /// reasons naming it.
    fn judged_text(&mut self, file: &str, commands: &str) {
        let outer = std::mem::take(&mut self.found.findings);
        let working_dir = self.found.working_dir();
        assess_with_input(commands, self.found, self.nesting + 1, &Input::Nothing);
        self.found.return_to(working_dir);
        let inner = std::mem::replace(&mut self.found.findings, outer);
        for (level, reason) in inner {
            if level >= RiskLevel::Medium {
                self.found.add(
                    level,
                    format!("runs commands from {}, which {reason}", show(file)),
                );
            }
        }
    }

    fn cargo(&mut self, args: &[Word]) {
        let sub = args.iter().find(|a| !a.is_option()).and_then(Word::text);
        match sub {
            None => {}
            Some(
                "version" | "help" | "metadata" | "tree" | "locate-project" | "pkgid"
                | "verify-project" | "read-manifest",
            ) => {}
            Some(
                sub @ ("install" | "uninstall" | "publish" | "login" | "logout" | "owner" | "yank"
                | "search"),
            ) => {
                self.found.high(format!(
                    "installs, removes or publishes software (`cargo {sub}`)"
                ));
            }
            Some("clean") => self.found.high("deletes files (`cargo clean`)"),
            Some(
                sub @ ("build" | "b" | "check" | "c" | "test" | "t" | "run" | "r" | "bench" | "doc"
                | "d" | "fmt" | "clippy" | "fix" | "new" | "init" | "add" | "remove"
                | "update" | "generate-lockfile" | "fetch" | "vendor" | "package" | "rustc"
                | "rustdoc"),
            ) => {
                self.found.medium(format!(
                    "builds or runs code from the workspace (`cargo {sub}`)"
                ));
            }
            Some(sub) => self
                .found
                .high(format!("unknown command `cargo {}`", show(sub))),
        }
    }
}

/// Whether every file `name` writes is one the classifier names (through
/// [`Assessment::write_to`]), so that text a call spelled out for a file
/// before it is still there after it. Any other command may rewrite files
/// unseen (a build, an interpreter, an archive unpacked over the
/// workspace; `cp -r dir/. .` writes files under names the command line
/// never spells).
fn writes_only_what_it_names(name: &str) -> bool {
    listed(READS, name)
        || listed(
            "cd pushd popd mkdir touch chmod tee export declare typeset local readonly",
            name,
        )
}

/// Which program a command word names.
enum Program {
    /// A program looked up by name, or a standard one by full path.
    Named(String),
    /// A program inside the workspace (`./build.sh`).
    Workspace(String),
    /// A program anywhere else (`/tmp/x`, `../../bin/x`).
    Elsewhere(String),
}

/// What a shell or interpreter runs when it reads its program.
#[derive(Debug, Clone, Copy)]
enum Language<'a> {
    Shell,
    Python,
    Other(&'a str),
}

/// `python`, `python3`, `python3.12`, `pypy3`.
fn is_python(name: &str) -> bool {
    let version = name
        .strip_prefix("python")
        .or_else(|| name.strip_prefix("pypy"));
    version.is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Skips a wrapper's own options: `with_value` take the next word, any
/// other word starting with `-` is a flag (or carries its value attached,
/// `--signal=KILL`). Returns the words of the wrapped command.
fn skip_options<'w>(args: &'w [Word], with_value: &[&str]) -> &'w [Word] {
    let mut rest = args;
    while let Some((first, tail)) = rest.split_first() {
        let Some(text) = first.text() else { break };
        if text == "--" {
            return tail;
        }
        if !text.starts_with('-') || text == "-" {
            break;
        }
        let takes_value = with_value.contains(&text);
        rest = if takes_value {
            tail.get(1..).unwrap_or_default()
        } else {
            tail
        };
    }
    rest
}

/// The words after the first `count` operands (`chroot /new cmd …`).
fn after_operands(args: &[Word], count: usize) -> &[Word] {
    let mut seen = 0;
    for (at, word) in args.iter().enumerate() {
        if !word.is_option() {
            seen += 1;
            if seen == count {
                return args.get(at + 1..).unwrap_or_default();
            }
        }
    }
    &[]
}

/// `env -S 'cmd args' more`: the split string and the words after it, as
/// one command line.
fn join_for_shell(split: &str, tail: &[Word]) -> String {
    let mut command = split.to_string();
    for word in tail {
        command.push(' ');
        match word.text() {
            Some(text) => command.push_str(&super::shell_quote(text)),
            None => command.push_str(&word.raw),
        }
    }
    command
}

/// Whether a `chmod` mode sets the setuid or setgid bit.
fn grants_setuid(mode: &str) -> bool {
    if mode.chars().all(|c| c.is_ascii_digit()) {
        return mode.len() >= 4
            && mode
                .chars()
                .rev()
                .nth(3)
                .and_then(|c| c.to_digit(8))
                .is_some_and(|d| d & 0o6 != 0);
    }
    mode.split(',').any(|clause| {
        clause.contains(['+', '='])
            && clause
                .rsplit(['+', '='])
                .next()
                .is_some_and(|p| p.contains('s'))
    })
}

/// Removes the backslashes of an unquoted word: `r\m` is `rm`, and a
/// backslash before a newline joins lines.
fn unescape_unquoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('\n') | None => {}
                Some(next) => out.push(next),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Inside double quotes a backslash only escapes `$`, `` ` ``, `"`, `\` and
/// a newline.
fn unescape_double_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                Some('\n') => {
                    chars.next();
                }
                Some(&next @ ('$' | '`' | '"' | '\\')) => {
                    chars.next();
                    out.push(next);
                }
                _ => out.push(c),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Decodes `$'…'`. Escapes the checker does not know give `None`: the word
/// is then treated as only known at run time.
fn decode_ansi_c(text: &str) -> Option<String> {
    let inner = text.strip_prefix("$'")?.strip_suffix('\'')?;
    let mut out = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let escaped = chars.next()?;
        let simple = match escaped {
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'e' | 'E' => Some('\u{1b}'),
            'f' => Some('\u{c}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\u{b}'),
            '\\' | '\'' | '"' | '?' => Some(escaped),
            _ => None,
        };
        if let Some(simple) = simple {
            out.push(simple);
            continue;
        }
        let (radix, max_digits) = match escaped {
            'x' => (16, 2),
            'u' => (16, 4),
            'U' => (16, 8),
            '0'..='7' => (8, 3),
            _ => return None,
        };
        let mut digits = String::new();
        if radix == 8 {
            digits.push(escaped);
        }
        while digits.len() < max_digits {
            match chars.peek() {
                Some(d) if d.is_digit(radix) => {
                    digits.push(*d);
                    chars.next();
                }
                _ => break,
            }
        }
        let code = u32::from_str_radix(&digits, radix).ok()?;
        out.push(char::from_u32(code)?);
    }
    Some(out)
}

/// Resolves `.` and `..` in an absolute path, lexically.
fn normalise_absolute(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

/// What a `sed` script does besides editing text.
#[derive(Debug, Default)]
struct SedScript {
    /// The `e` command or the `e` flag of `s`: runs a command.
    runs_commands: bool,
    /// Files named by `w` and `W` and the `w` flag of `s`.
    writes: Vec<String>,
    /// The script uses something the reader below does not know.
    not_understood: bool,
}

/// Reads a `sed` script just far enough to find `e` and `w`.
fn judge_sed_script(script: &str) -> SedScript {
    let mut judged = SedScript::default();
    let chars: Vec<char> = script.chars().collect();
    let mut at = 0;
    // Reads up to an unescaped `delimiter`; returns the index after it.
    let skip_delimited = |mut at: usize, delimiter: char| -> Option<usize> {
        while let Some(&c) = chars.get(at) {
            if c == '\\' {
                at += 2;
            } else if c == delimiter {
                return Some(at + 1);
            } else {
                at += 1;
            }
        }
        None
    };
    let rest_of_line = |at: usize| -> (String, usize) {
        let end = chars[at..]
            .iter()
            .position(|c| *c == '\n')
            .map_or(chars.len(), |p| at + p);
        (
            chars[at..end].iter().collect::<String>().trim().to_string(),
            end,
        )
    };
    while at < chars.len() {
        let c = chars[at];
        // Addresses and separators.
        if c.is_whitespace()
            || matches!(c, ';' | '{' | '}' | ',' | '!' | '$' | '+' | '~')
            || c.is_ascii_digit()
        {
            at += 1;
            continue;
        }
        if c == '/' || c == '\\' {
            let (delimiter, start) = if c == '\\' {
                match chars.get(at + 1) {
                    Some(d) => (*d, at + 2),
                    None => break,
                }
            } else {
                ('/', at + 1)
            };
            match skip_delimited(start, delimiter) {
                Some(next) => at = next,
                None => {
                    judged.not_understood = true;
                    break;
                }
            }
            // Address flags `I` and `M`.
            while matches!(chars.get(at), Some('I' | 'M')) {
                at += 1;
            }
            continue;
        }
        at += 1;
        match c {
            '#' | ':' | 'b' | 't' | 'T' | 'v' | 'r' | 'R' | 'a' | 'i' | 'c' => {
                at = rest_of_line(at).1;
            }
            'w' | 'W' => {
                let (file, end) = rest_of_line(at);
                judged.writes.push(file);
                at = end;
            }
            'e' => {
                judged.runs_commands = true;
                at = rest_of_line(at).1;
            }
            's' | 'y' => {
                let Some(&delimiter) = chars.get(at) else {
                    judged.not_understood = true;
                    break;
                };
                let after_pattern = skip_delimited(at + 1, delimiter);
                let Some(end) = after_pattern.and_then(|p| skip_delimited(p, delimiter)) else {
                    judged.not_understood = true;
                    break;
                };
                at = end;
                if c == 's' {
                    while let Some(&flag) = chars.get(at) {
                        match flag {
                            'g' | 'p' | 'i' | 'I' | 'm' | 'M' => at += 1,
                            d if d.is_ascii_digit() => at += 1,
                            'e' => {
                                judged.runs_commands = true;
                                at += 1;
                            }
                            'w' => {
                                let (file, end) = rest_of_line(at + 1);
                                judged.writes.push(file);
                                at = end;
                            }
                            _ => break,
                        }
                    }
                }
            }
            'd' | 'D' | 'g' | 'G' | 'h' | 'H' | 'l' | 'n' | 'N' | 'p' | 'P' | 'q' | 'Q' | 'x'
            | 'z' | '=' | 'F' | 'L' => {}
            _ => {
                judged.not_understood = true;
                break;
            }
        }
    }
    judged
}

/// What an awk program does besides printing.
#[derive(Debug, Default)]
struct AwkProgram {
    /// `system(…)`, `print | "cmd"`, `"cmd" | getline`.
    runs_commands: bool,
    /// Targets of `print > "file"`; `None` when not a plain string.
    writes: Vec<Option<String>>,
}

/// Reads an awk program just far enough to find commands and output files.
fn judge_awk_program(program: &str) -> AwkProgram {
    let mut judged = AwkProgram::default();
    let chars: Vec<char> = program.chars().collect();
    let mut at = 0;
    let mut printing = false;
    // Whether a `/` here starts a regular expression rather than dividing.
    let mut regex_may_start = true;
    while at < chars.len() {
        let c = chars[at];
        match c {
            '"' => {
                at += 1;
                while at < chars.len() && chars[at] != '"' {
                    at += if chars[at] == '\\' { 2 } else { 1 };
                }
                at += 1;
                regex_may_start = false;
                continue;
            }
            '/' if regex_may_start => {
                at += 1;
                while at < chars.len() && chars[at] != '/' {
                    at += if chars[at] == '\\' { 2 } else { 1 };
                }
                at += 1;
                regex_may_start = false;
                continue;
            }
            '|' => {
                if chars.get(at + 1) == Some(&'|') {
                    at += 2;
                } else {
                    judged.runs_commands = true;
                    at += 1;
                }
                regex_may_start = true;
                continue;
            }
            '>' if printing => {
                at += 1;
                if chars.get(at) == Some(&'>') {
                    at += 1;
                }
                while chars.get(at).is_some_and(|c| *c == ' ') {
                    at += 1;
                }
                if chars.get(at) == Some(&'"') {
                    let start = at + 1;
                    let mut end = start;
                    while end < chars.len() && chars[end] != '"' {
                        end += 1;
                    }
                    judged
                        .writes
                        .push(Some(chars[start..end.min(chars.len())].iter().collect()));
                    at = end + 1;
                } else {
                    judged.writes.push(None);
                }
                regex_may_start = true;
                continue;
            }
            ';' | '{' | '}' | '\n' => printing = false,
            _ => {}
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = at;
            while at < chars.len() && (chars[at].is_ascii_alphanumeric() || chars[at] == '_') {
                at += 1;
            }
            let word: String = chars[start..at].iter().collect();
            match word.as_str() {
                "system" => judged.runs_commands = true,
                "print" | "printf" => printing = true,
                _ => {}
            }
            regex_may_start = false;
            continue;
        }
        if !c.is_whitespace() {
            regex_may_start = !(c.is_ascii_digit() || c == ')' || c == ']' || c == '$');
        }
        at += 1;
    }
    judged
}

/// The names of the functions a command line defines.
fn defined_functions(root: Node, src: &str) -> HashSet<String> {
    let mut names = HashSet::new();
    let mut stack = vec![root];
    while let Some(node) = stack.pop() {
        if node.kind() == "function_definition" {
            if let Some(name) = node
                .child_by_field_name("name")
                .and_then(|n| src.get(n.byte_range()))
            {
                names.insert(name.to_string());
            }
        }
        let mut cursor = node.walk();
        stack.extend(node.named_children(&mut cursor));
    }
    names
}

/// A piece of the command line as shown in a reason: on one line, cut to
/// [`MAX_SHOWN_CHARS`].
pub(super) fn show(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= MAX_SHOWN_CHARS {
        one_line
    } else {
        let cut: String = one_line.chars().take(MAX_SHOWN_CHARS).collect();
        format!("{cut}…")
    }
}
