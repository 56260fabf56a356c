//! Python risk: the tree-sitter-python walk that follows imports and their
//! aliases, judges calls of `os`, `subprocess`, `shutil`, `pathlib` and the
//! network and code-loading modules, file writes, and reaches into Python's
//! internals (`eval`, `getattr`, `__subclasses__` …).
//!
//! Names are resolved without running anything: `import os as o` makes
//! `o.system` mean `os.system`, `s = os.system` makes `s(…)` mean it too,
//! and a variable assigned a string exactly once stands for that string.
//! Whatever cannot be resolved that way and could hide a dangerous call
//! (passing `os` around, `getattr` with a computed name) is high risk.
//!
//! `os` is judged by call, not by import: `import os` is everywhere in
//! harmless scripts (`os.path.join`, `os.listdir`, `os.environ.get`), and
//! flagging the import would make the `risky` approval mode ask for every
//! one of them. The dangerous calls (`os.system`, `os.remove`, `os.kill` …)
//! are high wherever they appear, under any alias.

use std::collections::HashMap;

use tree_sitter::Node;

use super::shell::show;
use super::{
    fielded_children, listed, parse_for_check, shell_quote, Assessment, Grammar, Write,
    MAX_SYNTAX_DEPTH,
};

/// How many rounds of `a = b` alias resolution are followed; each round
/// resolves one more link of a chain like `a = os; b = a; c = b.system`.
const MAX_ALIAS_ROUNDS: usize = 4;

/// Modules (and their submodules) that reach the network.
const NETWORK_MODULES: &str = "\
    aiohttp asyncio.open_connection asyncio.open_unix_connection asyncio.start_server \
    asyncio.start_unix_server asyncssh boto3 botocore dns fabric fastapi flask ftplib \
    ftputil grpc http.client http.server httplib2 httpx imaplib mechanize nntplib \
    paramiko poplib pycurl pysftp requests scrapy selenium smtpd smtplib socket \
    socketserver ssl telnetlib tornado twisted urllib.request urllib.robotparser urllib2 \
    urllib3 uvicorn webbrowser websocket websockets xmlrpc zmq
";

/// Submodules of flagged packages that are pure computation.
const HARMLESS_SUBMODULES: &str = "\
    http.HTTPMethod http.HTTPStatus http.cookies importlib.metadata importlib.resources \
    urllib.error urllib.parse
";

/// Modules that load or run code chosen at run time.
const CODE_LOADING_MODULES: &str = "\
    code codeop imp importlib marshal runpy zipimport
";

/// Modules whose calls are judged one by one; importing everything from one
/// of them (`from os import *`) hides which calls are made.
const JUDGED_MODULES: &str = "\
    builtins ctypes importlib os posix pty shutil signal socket subprocess sys
";

/// `os` functions that only read or describe.
const OS_READS: &str = "\
    access close confstr cpu_count device_encoding dup dup2 fsdecode fsencode fspath \
    fstat fsync get_blocking get_exec_path get_terminal_size getcwd getcwdb getegid \
    getenv getenvb geteuid getgid getgroups getloadavg getlogin getpgid getpgrp getpid \
    getppid getrandom getsid getuid isatty listdir lstat nice pipe process_cpu_count \
    read scandir sched_getaffinity sched_yield stat strerror sysconf times umask uname \
    urandom wait waitpid walk write _exit abort environ.get environ.copy environ.items \
    environ.keys environ.values environ.setdefault environ.update environ.pop putenv \
    unsetenv fwalk readlink
";

/// Calls that run a command, and how they take it.
const COMMAND_RUNNERS: &[(&str, CommandForm)] = &[
    ("os.system", CommandForm::Shell),
    ("os.popen", CommandForm::Shell),
    ("subprocess.getoutput", CommandForm::Shell),
    ("subprocess.getstatusoutput", CommandForm::Shell),
    ("asyncio.create_subprocess_shell", CommandForm::Shell),
    ("subprocess.run", CommandForm::Args),
    ("subprocess.call", CommandForm::Args),
    ("subprocess.check_call", CommandForm::Args),
    ("subprocess.check_output", CommandForm::Args),
    ("subprocess.Popen", CommandForm::Args),
    ("asyncio.create_subprocess_exec", CommandForm::Spread),
];

/// Attributes that lead from ordinary objects to Python's internals: the
/// usual way out of any restriction (`().__class__.__bases__[0]
/// .__subclasses__()`).
const INTERNALS: &str = "\
    __base__ __bases__ __builtins__ __closure__ __code__ __dict__ __func__ \
    __getattribute__ __globals__ __import__ __loader__ __mro__ __reduce__ __reduce_ex__ \
    __self__ __subclasses__ ag_frame co_code cr_frame f_back f_builtins f_globals \
    f_locals gi_code gi_frame tb_frame
";

/// Builtins that have a rule; a bare name resolves to itself unless an
/// import rebinds it.
const RULED_BUILTINS: &str = "\
    __import__ breakpoint compile delattr eval exec getattr globals open setattr vars
";

/// Methods that write the file named by their first argument, in common
/// libraries (pandas, numpy, matplotlib, Pillow, openpyxl, OpenCV, plotly).
const SAVING_METHODS: &str = "\
    imsave imwrite save savefig savetxt savez savez_compressed to_csv to_excel \
    to_feather to_file to_hdf to_json to_parquet to_pickle to_stata tofile write_html \
    write_image
";

/// How a command-running call takes its command.
#[derive(Debug, Clone, Copy)]
enum CommandForm {
    /// One string for `/bin/sh -c`.
    Shell,
    /// A list of words, or one string when `shell=True`.
    Args,
    /// The words as separate arguments (`create_subprocess_exec("ls", "-l")`).
    Spread,
}

/// How Python code that cannot be checked is described.
const PYTHON: Grammar = Grammar {
    language: || tree_sitter_python::LANGUAGE.into(),
    name: "Python",
    hidden: "code",
    invalid: "is not valid Python",
};

pub(super) fn assess(code: &str, found: &mut Assessment<'_>, nesting: usize) {
    let Some(tree) = parse_for_check(code, &PYTHON, found, nesting) else {
        return;
    };
    let root = tree.root_node();
    let mut walker = Walker {
        src: code,
        found,
        nesting,
        names: HashMap::new(),
        constants: HashMap::new(),
    };
    walker.learn_names(root);
    walker.node(root, 0);
}

/// The walk over one parsed program.
struct Walker<'a, 't, 'v> {
    src: &'a str,
    found: &'a mut Assessment<'v>,
    /// How many times this code was already unwrapped from a string.
    nesting: usize,
    /// What imported and aliased names stand for: `o` → `os`,
    /// `s` → `os.system`.
    names: HashMap<String, String>,
    /// Variables bound exactly once, by `name = <value>`: the value.
    constants: HashMap<String, Node<'t>>,
}

impl<'t> Walker<'_, 't, '_> {
    fn text(&self, node: Node) -> &str {
        self.src.get(node.byte_range()).unwrap_or_default()
    }

    /// Learns imports, aliases and constants before the walk, so that use
    /// before definition (in a function defined above) is still resolved.
    fn learn_names(&mut self, root: Node<'t>) {
        let mut bindings: HashMap<String, usize> = HashMap::new();
        let mut assigned: Vec<(String, Node<'t>)> = Vec::new();
        let mut stack = vec![root];
        while let Some(node) = stack.pop() {
            match node.kind() {
                "import_statement" => {
                    for (field, child) in fielded_children(node) {
                        if field != Some("name") {
                            continue;
                        }
                        let (module, alias) = self.import_parts(child);
                        let bound = match alias {
                            Some(alias) => (alias, module),
                            None => {
                                let top = module.split('.').next().unwrap_or_default().to_string();
                                (top.clone(), top)
                            }
                        };
                        *bindings.entry(bound.0.clone()).or_default() += 1;
                        self.names.insert(bound.0, bound.1);
                    }
                }
                "import_from_statement" => {
                    let module = node
                        .child_by_field_name("module_name")
                        .map(|m| self.text(m).to_string())
                        .unwrap_or_default();
                    for (field, child) in fielded_children(node) {
                        if field != Some("name") {
                            continue;
                        }
                        let (name, alias) = self.import_parts(child);
                        let local = alias.unwrap_or_else(|| name.clone());
                        *bindings.entry(local.clone()).or_default() += 1;
                        if !module.starts_with('.') {
                            self.names.insert(local, format!("{module}.{name}"));
                        }
                    }
                }
                "assignment" => {
                    if let Some(left) = node.child_by_field_name("left") {
                        if left.kind() == "identifier" {
                            let name = self.text(left).to_string();
                            *bindings.entry(name.clone()).or_default() += 1;
                            if let Some(right) = node.child_by_field_name("right") {
                                assigned.push((name, right));
                            }
                        } else {
                            self.count_bound(left, &mut bindings);
                        }
                    }
                }
                "augmented_assignment" | "for_statement" | "for_in_clause" => {
                    if let Some(left) = node.child_by_field_name("left") {
                        self.count_bound(left, &mut bindings);
                    }
                }
                "named_expression" | "function_definition" | "class_definition" => {
                    if let Some(name) = node.child_by_field_name("name") {
                        self.count_bound(name, &mut bindings);
                    }
                }
                "parameters" | "lambda_parameters" | "as_pattern_target" | "global_statement"
                | "nonlocal_statement" => self.count_bound(node, &mut bindings),
                "except_clause" => {
                    // `except E as name` binds `name`.
                    let mut cursor = node.walk();
                    let children: Vec<Node> = node.named_children(&mut cursor).collect();
                    if let Some(last) = children.iter().find(|c| c.kind() == "as_pattern") {
                        if let Some(alias) = last.child_by_field_name("alias") {
                            self.count_bound(alias, &mut bindings);
                        }
                    }
                }
                _ => {}
            }
            let mut cursor = node.walk();
            stack.extend(node.named_children(&mut cursor));
        }
        for (name, value) in &assigned {
            if bindings.get(name) == Some(&1) {
                self.constants.insert(name.clone(), *value);
            }
        }
        // `o = os`, `s = os.system`, `m = __import__('os')`.
        for _ in 0..MAX_ALIAS_ROUNDS {
            let mut learned = false;
            for (name, value) in &assigned {
                if self.names.contains_key(name) {
                    continue;
                }
                if let Some(target) = self.qualified(*value, 0) {
                    if is_known_name(&target) {
                        self.names.insert(name.clone(), target);
                        learned = true;
                    }
                }
            }
            if !learned {
                break;
            }
        }
    }

    /// Counts every identifier under `node` as one more binding.
    fn count_bound(&self, node: Node, bindings: &mut HashMap<String, usize>) {
        let mut stack = vec![node];
        while let Some(n) = stack.pop() {
            if n.kind() == "identifier" {
                *bindings.entry(self.text(n).to_string()).or_default() += 1;
            }
            let mut cursor = n.walk();
            stack.extend(n.named_children(&mut cursor));
        }
    }

    /// `os.path as p` → (`os.path`, `Some("p")`); `sys` → (`sys`, `None`).
    fn import_parts(&self, node: Node) -> (String, Option<String>) {
        if node.kind() == "aliased_import" {
            let name = node
                .child_by_field_name("name")
                .map(|n| self.text(n).to_string())
                .unwrap_or_default();
            let alias = node
                .child_by_field_name("alias")
                .map(|a| self.text(a).to_string());
            (name, alias)
        } else {
            (self.text(node).to_string(), None)
        }
    }

    /// What an expression names, as a dotted path from a module or builtin:
    /// `o.system` → `os.system`, `__import__('os')` → `os`.
    fn qualified(&self, node: Node, depth: usize) -> Option<String> {
        if depth > MAX_SYNTAX_DEPTH {
            return None;
        }
        match node.kind() {
            "identifier" => {
                let name = self.text(node);
                self.names
                    .get(name)
                    .cloned()
                    .or_else(|| listed(RULED_BUILTINS, name).then(|| name.to_string()))
            }
            "attribute" => {
                let object = self.qualified(node.child_by_field_name("object")?, depth + 1)?;
                let attribute = self.text(node.child_by_field_name("attribute")?);
                Some(format!("{object}.{attribute}"))
            }
            "parenthesized_expression" => self.qualified(node.named_child(0)?, depth + 1),
            "call" => {
                let function =
                    normalise(&self.qualified(node.child_by_field_name("function")?, depth + 1)?);
                let arguments = node.child_by_field_name("arguments")?;
                match function.as_str() {
                    "__import__" | "importlib.import_module" => {
                        self.string_value(positional(arguments, 0)?, depth + 1)
                    }
                    "getattr" => {
                        let object = self.qualified(positional(arguments, 0)?, depth + 1)?;
                        let name = self.string_value(positional(arguments, 1)?, depth + 1)?;
                        Some(format!("{object}.{name}"))
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// The value of a string expression when it is fixed in the code.
    fn string_value(&self, node: Node, depth: usize) -> Option<String> {
        if depth > MAX_SYNTAX_DEPTH {
            return None;
        }
        match node.kind() {
            "string" => {
                let mut raw = false;
                let mut value = String::new();
                let mut cursor = node.walk();
                for child in node.children(&mut cursor) {
                    match child.kind() {
                        "string_start" => raw = self.text(child).to_ascii_lowercase().contains('r'),
                        "string_content" if raw => value.push_str(self.text(child)),
                        "string_content" => value.push_str(&unescape_python(self.text(child))),
                        "string_end" => {}
                        _ => return None,
                    }
                }
                Some(value)
            }
            "concatenated_string" => {
                let mut value = String::new();
                let mut cursor = node.walk();
                for child in node.named_children(&mut cursor) {
                    value.push_str(&self.string_value(child, depth + 1)?);
                }
                Some(value)
            }
            "binary_operator" => {
                let operator = node.child_by_field_name("operator")?;
                if self.text(operator) != "+" {
                    return None;
                }
                let left = self.string_value(node.child_by_field_name("left")?, depth + 1)?;
                let right = self.string_value(node.child_by_field_name("right")?, depth + 1)?;
                Some(left + &right)
            }
            "parenthesized_expression" => self.string_value(node.named_child(0)?, depth + 1),
            "identifier" => {
                let value = *self.constants.get(self.text(node))?;
                self.string_value(value, depth + 1)
            }
            _ => None,
        }
    }

    /// The path an expression names when it is fixed in the code: a string,
    /// `Path('a') / 'b'`, `os.path.join('a', 'b')`, or a variable bound once
    /// to one of those.
    fn path_value(&self, node: Node, depth: usize) -> Option<String> {
        if depth > MAX_SYNTAX_DEPTH {
            return None;
        }
        if let Some(text) = self.string_value(node, depth + 1) {
            return Some(text);
        }
        match node.kind() {
            "identifier" => {
                let value = *self.constants.get(self.text(node))?;
                self.path_value(value, depth + 1)
            }
            "parenthesized_expression" => self.path_value(node.named_child(0)?, depth + 1),
            "binary_operator" => {
                let operator = node.child_by_field_name("operator")?;
                if self.text(operator) != "/" {
                    return None;
                }
                let left = self.path_value(node.child_by_field_name("left")?, depth + 1)?;
                let right = self.path_value(node.child_by_field_name("right")?, depth + 1)?;
                Some(join_paths(&left, &right))
            }
            "call" => {
                let function = node.child_by_field_name("function")?;
                let arguments = node.child_by_field_name("arguments")?;
                let name = self
                    .qualified(function, depth + 1)
                    .map(|q| normalise(&q))
                    .unwrap_or_else(|| self.text(function).to_string());
                match name.as_str() {
                    "pathlib.Path" | "pathlib.PurePath" | "pathlib.PosixPath" | "Path"
                    | "PurePath" | "PosixPath" | "os.path.join" => {
                        let mut cursor = arguments.walk();
                        let mut path = String::new();
                        for argument in arguments.named_children(&mut cursor) {
                            if argument.kind() == "keyword_argument" {
                                return None;
                            }
                            path = join_paths(&path, &self.path_value(argument, depth + 1)?);
                        }
                        Some(if path.is_empty() {
                            ".".to_string()
                        } else {
                            path
                        })
                    }
                    "pathlib.Path.cwd" | "Path.cwd" => Some(".".to_string()),
                    "pathlib.Path.home" | "Path.home" | "os.path.expanduser" => {
                        Some("~".to_string())
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Whether an expression is a `pathlib` path built in the code:
    /// `Path(…)`, `Path(…) / 'x'`, or a variable bound once to one.
    fn is_path_object(&self, node: Node, depth: usize) -> bool {
        if depth > MAX_SYNTAX_DEPTH {
            return false;
        }
        match node.kind() {
            "identifier" => self
                .constants
                .get(self.text(node))
                .is_some_and(|value| self.is_path_object(*value, depth + 1)),
            "parenthesized_expression" => node
                .named_child(0)
                .is_some_and(|inner| self.is_path_object(inner, depth + 1)),
            "binary_operator" => node
                .child_by_field_name("left")
                .is_some_and(|left| self.is_path_object(left, depth + 1)),
            "call" => node
                .child_by_field_name("function")
                .is_some_and(|function| {
                    let name = self
                        .qualified(function, depth + 1)
                        .map(|q| normalise(&q))
                        .unwrap_or_else(|| self.text(function).to_string());
                    matches!(
                        name.as_str(),
                        "pathlib.Path"
                            | "pathlib.PurePath"
                            | "pathlib.PosixPath"
                            | "Path"
                            | "PurePath"
                            | "PosixPath"
                            | "pathlib.Path.cwd"
                            | "Path.cwd"
                            | "pathlib.Path.home"
                            | "Path.home"
                    )
                }),
            _ => false,
        }
    }

    /// Walks any node.
    fn node(&mut self, node: Node, depth: usize) {
        if depth > MAX_SYNTAX_DEPTH {
            self.found
                .high("is nested too deeply to check, which only hiding something needs");
            return;
        }
        match node.kind() {
            "import_statement" => {
                for (field, child) in fielded_children(node) {
                    if field == Some("name") {
                        let (module, _) = self.import_parts(child);
                        self.import(&module);
                    }
                }
                return;
            }
            "import_from_statement" => {
                let module = node
                    .child_by_field_name("module_name")
                    .map(|m| self.text(m).to_string())
                    .unwrap_or_default();
                if module.starts_with('.') {
                    return;
                }
                // `from http import HTTPStatus` is judged by what it takes,
                // not by the package it takes it from.
                let mut cursor = node.walk();
                let wildcard = node
                    .children(&mut cursor)
                    .any(|c| c.kind() == "wildcard_import");
                if wildcard {
                    self.import(&module);
                    if listed(JUDGED_MODULES, top_module(&module)) {
                        self.found.high(format!(
                            "imports everything from `{}`, so its calls cannot be checked",
                            show(&module)
                        ));
                    }
                }
                for (field, child) in fielded_children(node) {
                    if field == Some("name") {
                        let (name, _) = self.import_parts(child);
                        self.import(&format!("{module}.{name}"));
                    }
                }
                return;
            }
            "future_import_statement" => return,
            "call" => self.call(node),
            "attribute" => self.attribute(node),
            "identifier" => self.identifier(node),
            _ => {}
        }
        let mut cursor = node.walk();
        let children: Vec<Node> = node.named_children(&mut cursor).collect();
        for child in children {
            self.node(child, depth + 1);
        }
    }

    /// Judges importing `module` (a module, or `module.name` for
    /// `from module import name`).
    fn import(&mut self, module: &str) {
        // A module the agent wrote is code like any other: judge it.
        self.found.import_module(module, self.nesting + 1);
        if HARMLESS_SUBMODULES
            .split_whitespace()
            .any(|m| is_within(module, m))
        {
            return;
        }
        // A bare `import urllib` or `import http` is only useful to reach
        // their network submodules later.
        let network = NETWORK_MODULES
            .split_whitespace()
            .find(|m| is_within(module, m))
            .or_else(|| matches!(module, "urllib" | "http").then_some(module));
        if let Some(network) = network {
            self.found
                .high(format!("can use the network (`{network}`)"));
        } else if is_within(module, "ctypes") || is_within(module, "cffi") {
            self.found.high(format!(
                "can call system libraries directly, around every check (`{}`)",
                show(module)
            ));
        } else if CODE_LOADING_MODULES
            .split_whitespace()
            .any(|m| is_within(module, m))
        {
            self.found.high(format!(
                "loads or runs code chosen at run time (`{}`), which cannot be checked",
                show(module)
            ));
        } else if is_within(module, "pty") || is_within(module, "_posixsubprocess") {
            self.found
                .high(format!("starts other programs (`{}`)", show(module)));
        } else if is_within(module, "multiprocessing") {
            self.found
                .medium("starts extra Python processes (`multiprocessing`)");
        } else if is_within(module, "signal") {
            self.found
                .medium("handles or sends process signals (`signal`)");
        }
    }

    /// `x.attr`: internals, and dangerous functions taken without a call.
    fn attribute(&mut self, node: Node) {
        if let Some(name) = node.child_by_field_name("attribute") {
            let name = self.text(name);
            if listed(INTERNALS, name) {
                self.found.high(format!(
                    "reaches into Python's internals (`{name}`), a known way to hide what code does"
                ));
            }
        }
        if self.is_inner_part(node) {
            return;
        }
        if let Some(name) = self.qualified(node, 0) {
            let name = normalise(&name);
            self.module_use(&name);
            if !self.is_called(node) && !self.is_alias_value(node) {
                self.reference(&name);
            }
        }
    }

    fn identifier(&mut self, node: Node) {
        let name = self.text(node);
        if matches!(name, "__builtins__" | "__loader__") {
            self.found.high(format!(
                "reaches into Python's internals (`{name}`), a known way to hide what code does"
            ));
            return;
        }
        if self.is_inner_part(node) || self.is_called(node) || self.is_alias_value(node) {
            return;
        }
        let Some(parent) = node.parent() else { return };
        // `x.name`: `name` is an attribute, not a variable.
        if parent.kind() == "attribute" && parent.child_by_field_name("attribute") == Some(node) {
            return;
        }
        // Names being bound or naming keywords are not uses.
        let binds = match parent.kind() {
            "keyword_argument"
            | "default_parameter"
            | "typed_default_parameter"
            | "named_expression"
            | "function_definition"
            | "class_definition" => parent.child_by_field_name("name") == Some(node),
            "assignment" | "augmented_assignment" | "for_statement" | "for_in_clause" => {
                parent.child_by_field_name("left") == Some(node)
            }
            "parameters" | "lambda_parameters" | "global_statement" | "nonlocal_statement"
            | "as_pattern_target" | "pattern_list" | "tuple_pattern" | "list_pattern" => true,
            _ => false,
        };
        if binds {
            return;
        }
        if let Some(target) = self.qualified(node, 0) {
            let target = normalise(&target);
            if !self.names.contains_key(name) && !listed(RULED_BUILTINS, name) {
                return;
            }
            if listed(JUDGED_MODULES, target.as_str()) {
                self.found.high(format!(
                    "passes the module `{target}` around, so what is done with it cannot be checked"
                ));
            } else {
                self.module_use(&target);
                self.reference(&target);
            }
        }
    }

    /// Judges the module a resolved name belongs to (`urllib.request.urlopen`
    /// after a bare `import urllib`).
    fn module_use(&mut self, name: &str) {
        if HARMLESS_SUBMODULES
            .split_whitespace()
            .any(|m| is_within(name, m))
        {
            return;
        }
        if let Some(module) = NETWORK_MODULES
            .split_whitespace()
            .find(|m| is_within(name, m))
        {
            self.found.high(format!("can use the network (`{module}`)"));
        }
        if matches!(
            name,
            "sys.modules" | "sys._getframe" | "sys.settrace" | "sys.setprofile"
        ) || name.starts_with("sys.modules.")
        {
            self.found.high(format!(
                "reaches into Python's internals (`{name}`), a known way to hide what code does"
            ));
        }
    }

    /// A dangerous function used as a value (`f = os.system` is followed as
    /// an alias; `map(os.remove, files)` cannot be).
    fn reference(&mut self, name: &str) {
        if is_dangerous_function(name) {
            self.found.high(format!(
                "uses `{}` without calling it directly, so its use cannot be checked",
                show(name)
            ));
        }
    }

    /// Whether `node` is the object of an enclosing attribute (`os` in
    /// `os.path`): the enclosing one is judged instead.
    fn is_inner_part(&self, node: Node) -> bool {
        node.parent().is_some_and(|p| {
            p.kind() == "attribute" && p.child_by_field_name("object") == Some(node)
        })
    }

    fn is_called(&self, node: Node) -> bool {
        node.parent()
            .is_some_and(|p| p.kind() == "call" && p.child_by_field_name("function") == Some(node))
    }

    /// `o = os`: followed as an alias, so not a use.
    fn is_alias_value(&self, node: Node) -> bool {
        node.parent().is_some_and(|p| {
            p.kind() == "assignment"
                && p.child_by_field_name("right") == Some(node)
                && p.child_by_field_name("left").is_some_and(|l| {
                    l.kind() == "identifier" && self.names.contains_key(self.text(l))
                })
        })
    }

    fn call(&mut self, node: Node) {
        let Some(function) = node.child_by_field_name("function") else {
            return;
        };
        let arguments = node.child_by_field_name("arguments");
        let name = self.qualified(function, 0).map(|n| normalise(&n));
        let judged = match &name {
            Some(name) => self.known_call(name, arguments),
            None => false,
        };
        if judged {
            return;
        }
        if function.kind() == "attribute" {
            let method = function
                .child_by_field_name("attribute")
                .map(|a| self.text(a).to_string())
                .unwrap_or_default();
            let object = function.child_by_field_name("object");
            self.method_call(&method, object, arguments);
        }
    }

    /// Judges a call of a resolved function; returns whether it had a rule.
    fn known_call(&mut self, name: &str, arguments: Option<Node>) -> bool {
        let shown = show(name);
        if let Some((_, form)) = COMMAND_RUNNERS.iter().find(|(n, _)| *n == name) {
            self.run_command(name, *form, arguments);
            return true;
        }
        if is_deserialiser(name) {
            self.found.high(format!(
                "loads pickled or marshalled data, which can run any code (`{shown}`)"
            ));
            return true;
        }
        match name {
            "eval" | "exec" => self.found.high(format!(
                "runs code built at run time (`{name}`), which cannot be checked"
            )),
            "compile" | "types.FunctionType" | "types.CodeType" | "types.LambdaType" => {
                self.found.high(format!(
                    "builds code at run time (`{name}`), which cannot be checked"
                ))
            }
            "__import__"
            | "importlib.import_module"
            | "importlib.reload"
            | "importlib.util.spec_from_file_location" => self.found.high(format!(
                "loads a module chosen at run time (`{name}`), which cannot be checked"
            )),
            "getattr" => self.getattr(arguments),
            "setattr" | "delattr" | "globals" | "vars" | "gc.get_objects" | "gc.get_referrers"
            | "gc.get_referents" => self.found.high(format!(
                "reaches into Python's internals (`{name}`), a known way to hide what code does"
            )),
            "open" | "io.open" | "codecs.open" => self.open(arguments, "file", "r"),
            "gzip.open" | "bz2.open" | "lzma.open" | "tarfile.open" | "zipfile.ZipFile"
            | "dbm.open" => {
                let default = if name == "dbm.open" { "c" } else { "r" };
                self.open(arguments, "filename", default)
            }
            "os.open" => {
                let flags = arguments
                    .and_then(|a| self.argument(a, 1, "flags"))
                    .map(|f| self.text(f).to_string())
                    .unwrap_or_default();
                if ["WRONLY", "RDWR", "CREAT", "APPEND", "TRUNC"]
                    .iter()
                    .any(|f| flags.contains(f))
                    || flags.is_empty()
                {
                    self.write_argument(arguments, 0, "path", "os.open");
                }
            }
            "sqlite3.connect" => {
                let memory = arguments
                    .and_then(|a| self.argument(a, 0, "database"))
                    .and_then(|d| self.string_value(d, 0))
                    .is_some_and(|d| d == ":memory:");
                if !memory {
                    self.write_argument(arguments, 0, "database", "sqlite3");
                }
            }
            "logging.FileHandler"
            | "logging.handlers.RotatingFileHandler"
            | "logging.handlers.TimedRotatingFileHandler"
            | "logging.handlers.WatchedFileHandler" => {
                self.write_argument(arguments, 0, "filename", "logging")
            }
            "logging.basicConfig" => {
                if arguments
                    .and_then(|a| self.keyword(a, "filename"))
                    .is_some()
                {
                    self.write_argument(arguments, usize::MAX, "filename", "logging");
                }
            }
            "tempfile.mkstemp"
            | "tempfile.mkdtemp"
            | "tempfile.NamedTemporaryFile"
            | "tempfile.TemporaryFile"
            | "tempfile.TemporaryDirectory"
            | "tempfile.SpooledTemporaryFile" => self
                .found
                .medium(format!("creates temporary files (`{shown}`)")),
            "signal.pthread_kill" | "signal.pidfd_send_signal" => self
                .found
                .high(format!("stops or signals other programs (`{shown}`)")),
            "pathlib.Path" | "pathlib.PurePath" | "pathlib.PosixPath" | "breakpoint" => {}
            _ if name.starts_with("os.") || name.starts_with("posix.") => {
                self.os_call(name, arguments)
            }
            _ if name.starts_with("shutil.") => self.shutil_call(name, arguments),
            _ if name.starts_with("subprocess.") || name.starts_with("pty.") => self
                .found
                .high(format!("starts other programs (`{shown}`)")),
            _ => {
                self.module_use(name);
                return false;
            }
        }
        true
    }

    fn os_call(&mut self, name: &str, arguments: Option<Node>) {
        let function = name.trim_start_matches("os.").trim_start_matches("posix.");
        let shown = show(name);
        if function.starts_with("path.") || listed(OS_READS, function) {
            return;
        }
        match function {
            "mkdir" | "makedirs" | "utime" | "mkfifo" => {
                self.write_argument_as(arguments, 0, "path", &shown, Write::Keep)
            }
            "chdir" => {
                let dir = arguments
                    .and_then(|a| self.argument(a, 0, "path"))
                    .and_then(|p| self.path_value(p, 0));
                self.found.change_dir(dir.as_deref());
            }
            "link" | "symlink" => {
                self.write_argument(arguments, 1, "dst", &shown);
                let source = arguments
                    .and_then(|a| self.argument(a, 0, "src"))
                    .map(|s| (self.path_value(s, 0), self.text(s).to_string()));
                if let Some((path, text)) = source {
                    if self.found.is_outside(path.as_deref()) {
                        self.found.high(format!(
                            "links to a place outside the workspace (`{}`), so later writes through the link land there",
                            show(path.as_deref().unwrap_or(&text))
                        ));
                    }
                }
            }
            "remove" | "unlink" | "rmdir" | "removedirs" => {
                self.found.high(format!("deletes files (`{shown}`)"))
            }
            "truncate" | "ftruncate" => self
                .found
                .high(format!("deletes the contents of files (`{shown}`)")),
            "kill" | "killpg" => self
                .found
                .high(format!("stops or signals other programs (`{shown}`)")),
            "chmod" | "lchmod" | "fchmod" | "chown" | "lchown" | "fchown" | "chflags"
            | "lchflags" => self
                .found
                .high(format!("changes file permissions or owners (`{shown}`)")),
            "rename" | "renames" | "replace" => self
                .found
                .high(format!("moves or renames files (`{shown}`)")),
            "setsid" | "setpgid" | "daemon" => self.found.high(format!(
                "detaches from the command so that it can outlive it (`{shown}`)"
            )),
            "fork" | "forkpty" | "startfile" | "posix_spawn" | "posix_spawnp" => self
                .found
                .high(format!("starts other programs (`{shown}`)")),
            _ if function.starts_with("exec") || function.starts_with("spawn") => self
                .found
                .high(format!("starts other programs (`{shown}`)")),
            "setuid" | "setgid" | "seteuid" | "setegid" | "setreuid" | "setregid" | "setresuid"
            | "setresgid" | "setgroups" | "initgroups" | "chroot" | "mknod" => self
                .found
                .high(format!("changes users or privileges (`{shown}`)")),
            _ => self
                .found
                .high(format!("uses `{shown}`, which the checker does not know")),
        }
    }

    fn shutil_call(&mut self, name: &str, arguments: Option<Node>) {
        let function = name.trim_start_matches("shutil.");
        let shown = show(name);
        match function {
            "which"
            | "disk_usage"
            | "get_terminal_size"
            | "get_archive_formats"
            | "get_unpack_formats"
            | "copyfileobj"
            | "ignore_patterns" => {}
            "rmtree" => {
                self.found.high(format!("deletes files (`{shown}`)"));
                let path = arguments
                    .and_then(|a| self.argument(a, 0, "path"))
                    .and_then(|p| self.path_value(p, 0));
                if let Some(path) = path.filter(|p| self.found.is_outside(Some(p))) {
                    self.found.high(format!(
                        "deletes files outside the workspace (`{}`)",
                        show(&path)
                    ));
                }
            }
            "copy" | "copy2" | "copyfile" | "copytree" | "copymode" | "copystat" => {
                self.write_argument(arguments, 1, "dst", &shown)
            }
            "move" => {
                self.write_argument(arguments, 1, "dst", &shown);
                let source = arguments
                    .and_then(|a| self.argument(a, 0, "src"))
                    .map(|s| (self.path_value(s, 0), self.text(s).to_string()));
                if let Some((path, text)) = source {
                    if self.found.is_outside(path.as_deref()) {
                        self.found.high(format!(
                            "moves files away from a place outside the workspace or only known at run time (`{}`)",
                            show(path.as_deref().unwrap_or(&text))
                        ));
                    }
                }
            }
            "make_archive" => self.write_argument(arguments, 0, "base_name", &shown),
            "unpack_archive" => {
                if arguments
                    .and_then(|a| self.argument(a, 1, "extract_dir"))
                    .is_some()
                {
                    self.write_argument(arguments, 1, "extract_dir", &shown);
                } else {
                    self.found.write_to(Some("."), ".", &shown);
                }
            }
            "chown" => self
                .found
                .high(format!("changes file permissions or owners (`{shown}`)")),
            _ => self
                .found
                .high(format!("uses `{shown}`, which the checker does not know")),
        }
    }

    /// `getattr(obj, name)`: fine on ordinary objects with a fixed name.
    fn getattr(&mut self, arguments: Option<Node>) {
        let Some(arguments) = arguments else { return };
        let name = positional(arguments, 1).and_then(|n| self.string_value(n, 0));
        let Some(name) = name else {
            self.found.high(
                "looks up a name only known at run time (`getattr`), which cannot be checked",
            );
            return;
        };
        if listed(INTERNALS, name.as_str()) {
            self.found.high(format!(
                "reaches into Python's internals (`{}`), a known way to hide what code does",
                show(&name)
            ));
        }
        let Some(object) = positional(arguments, 0) else {
            return;
        };
        let on_module = match self.qualified(object, 0) {
            Some(target) => {
                let target = normalise(&target);
                !listed(RULED_BUILTINS, target.as_str()) || object.kind() == "call"
            }
            None => false,
        };
        let imports = object.kind() == "call"
            && object
                .child_by_field_name("function")
                .and_then(|f| self.qualified(f, 0))
                .is_some_and(|f| {
                    matches!(
                        normalise(&f).as_str(),
                        "__import__" | "importlib.import_module"
                    )
                });
        if on_module || imports {
            self.found.high(format!(
                "looks up `{}` on a module by name (`getattr`), a way to hide what code does",
                show(&name)
            ));
        }
    }

    /// `open(path, mode)` and its relatives.
    fn open(&mut self, arguments: Option<Node>, path_keyword: &str, default_mode: &str) {
        let Some(arguments) = arguments else { return };
        let mode = match self.argument(arguments, 1, "mode") {
            None => Some(default_mode.to_string()),
            Some(mode) => self.string_value(mode, 0),
        };
        let writes = mode
            .as_deref()
            .is_none_or(|m| m.contains(['w', 'a', 'x', '+', 'c', 'n']));
        // Only `w` (and `n`, dbm's "new") empties an existing file; `a`,
        // `x` and `r+` keep what it holds.
        let replaces = mode.as_deref().is_none_or(|m| m.contains(['w', 'n']));
        if writes {
            let how = if replaces {
                Write::Replace
            } else {
                Write::Keep
            };
            self.write_argument_as(Some(arguments), 0, path_keyword, "open", how);
        }
    }

    /// Judges a write to the path given as argument `index` (or `keyword`).
    fn write_argument(
        &mut self,
        arguments: Option<Node>,
        index: usize,
        keyword: &str,
        actor: &str,
    ) {
        self.write_argument_as(arguments, index, keyword, actor, Write::Replace);
    }

    fn write_argument_as(
        &mut self,
        arguments: Option<Node>,
        index: usize,
        keyword: &str,
        actor: &str,
        how: Write,
    ) {
        let Some(node) = arguments.and_then(|a| self.argument(a, index, keyword)) else {
            return;
        };
        let path = self.path_value(node, 0);
        let shown = show(path.as_deref().unwrap_or(self.text(node)));
        let actor = if path.is_some() {
            shown.clone()
        } else {
            actor.to_string()
        };
        self.found.write(path.as_deref(), &shown, &actor, how);
    }

    /// Methods on objects the checker cannot name: `pathlib` methods and the
    /// saving methods of common libraries.
    fn method_call(&mut self, method: &str, object: Option<Node>, arguments: Option<Node>) {
        // A string has `replace` too: only a `Path` object has a place.
        let is_path = object.is_some_and(|o| self.is_path_object(o, 0));
        let object_path = object
            .filter(|_| is_path)
            .and_then(|o| self.path_value(o, 0));
        let object_text = object.map(|o| show(self.text(o))).unwrap_or_default();
        let keeps = matches!(method, "touch" | "mkdir");
        let write_object = |walker: &mut Self| {
            let shown = object_path.clone().unwrap_or_else(|| object_text.clone());
            let actor = if is_path {
                shown.clone()
            } else {
                format!(".{method}()")
            };
            let how = if keeps { Write::Keep } else { Write::Replace };
            walker
                .found
                .write(object_path.as_deref(), &shown, &actor, how);
        };
        match method {
            "write_text" | "write_bytes" | "touch" | "mkdir" => write_object(self),
            "unlink" | "rmdir" => self.found.high(format!("deletes files (`.{method}()`)")),
            "symlink_to" | "hardlink_to" => {
                write_object(self);
                let target = arguments.and_then(|a| self.argument(a, 0, "target"));
                if let Some(target) = target {
                    let path = self.path_value(target, 0);
                    if self.found.is_outside(path.as_deref()) {
                        self.found.high(format!(
                            "links to a place outside the workspace or only known at run time (`{}`)",
                            show(path.as_deref().unwrap_or(self.text(target)))
                        ));
                    }
                }
            }
            "rename" | "replace" if is_path => self
                .found
                .high(format!("moves or renames files (`.{method}()`)")),
            "chmod" | "lchmod" | "chown" => self.found.high(format!(
                "changes file permissions or owners (`.{method}()`)"
            )),
            "open" if is_path => {
                let mode = match arguments.and_then(|a| self.argument(a, 0, "mode")) {
                    None => Some("r".to_string()),
                    Some(mode) => self.string_value(mode, 0),
                };
                if mode.is_none_or(|m| m.contains(['w', 'a', 'x', '+'])) {
                    write_object(self);
                }
            }
            "create_connection"
            | "create_server"
            | "create_datagram_endpoint"
            | "sock_connect"
            | "create_unix_connection" => self
                .found
                .high(format!("can use the network (`.{method}()`)")),
            "extractall" => {
                if arguments
                    .and_then(|a| self.argument(a, 0, "path"))
                    .is_some()
                {
                    self.write_argument(arguments, 0, "path", ".extractall()");
                } else {
                    self.found.write_to(Some("."), ".", ".extractall()");
                }
            }
            _ if listed(SAVING_METHODS, method) => {
                let keywords = [
                    "path",
                    "path_or_buf",
                    "fname",
                    "filename",
                    "file",
                    "excel_writer",
                ];
                let Some(arguments) = arguments else { return };
                let given = positional(arguments, 0)
                    .or_else(|| keywords.iter().find_map(|k| self.keyword(arguments, k)));
                if let Some(given) = given {
                    let path = self.path_value(given, 0);
                    let shown = show(path.as_deref().unwrap_or(self.text(given)));
                    let actor = if path.is_some() {
                        shown.clone()
                    } else {
                        format!(".{method}()")
                    };
                    self.found.write_to(path.as_deref(), &shown, &actor);
                }
            }
            _ => {}
        }
    }

    /// `os.system(cmd)`, `subprocess.run([...])`: a command fixed in the code
    /// is judged by the shell classifier; any other is high risk.
    fn run_command(&mut self, name: &str, form: CommandForm, arguments: Option<Node>) {
        let shown = show(name);
        let Some(arguments) = arguments else { return };
        if self.keyword(arguments, "executable").is_some() {
            self.found.high(format!(
                "runs a program chosen separately from its command (`{shown}` with `executable=`)"
            ));
        }
        for keyword in ["start_new_session", "process_group", "preexec_fn"] {
            let detaches = self
                .keyword(arguments, keyword)
                .is_some_and(|v| !matches!(self.text(v), "False" | "None"));
            if detaches {
                self.found.high(format!(
                    "starts a program detached from the command, so that it can outlive it (`{keyword}`)"
                ));
            }
        }
        let shell = match form {
            CommandForm::Shell => true,
            CommandForm::Spread => false,
            CommandForm::Args => self
                .keyword(arguments, "shell")
                .is_some_and(|value| self.text(value) != "False"),
        };
        let command = match form {
            CommandForm::Spread => {
                let mut cursor = arguments.walk();
                let words: Vec<Node> = arguments
                    .named_children(&mut cursor)
                    .filter(|a| a.kind() != "keyword_argument")
                    .collect();
                Some(self.command_words(&words))
            }
            _ => self.argument(arguments, 0, "args").and_then(|command| {
                if let Some(text) = self.string_value(command, 0) {
                    return Some(if shell { text } else { shell_quote(&text) });
                }
                let list = self.list_value(command)?;
                let mut cursor = list.walk();
                let words: Vec<Node> = list.named_children(&mut cursor).collect();
                if shell {
                    // With `shell=True` the first word is the command line.
                    self.string_value(*words.first()?, 0)
                } else {
                    Some(self.command_words(&words))
                }
            }),
        };
        match command {
            Some(command) => {
                self.found
                    .medium(format!("runs the command `{}` (`{shown}`)", show(&command)));
                // The command runs in a process of its own: a `cd` there
                // does not move the program's own writes.
                let working_dir = self.found.working_dir();
                let fed = self.keyword(arguments, "input").is_some()
                    || self
                        .keyword(arguments, "stdin")
                        .is_some_and(|s| !self.text(s).ends_with("DEVNULL"));
                if fed {
                    super::shell::assess_fed(&command, self.found, self.nesting + 1);
                } else {
                    super::shell::assess(&command, self.found, self.nesting + 1);
                }
                self.found.return_to(working_dir);
            }
            None => self.found.high(format!(
                "runs a command built at run time (`{shown}`), which cannot be checked"
            )),
        }
    }

    /// A list or tuple literal, directly or through a constant.
    fn list_value(&self, node: Node<'t>) -> Option<Node<'t>> {
        match node.kind() {
            "list" | "tuple" => Some(node),
            "identifier" => {
                let value = *self.constants.get(self.text(node))?;
                matches!(value.kind(), "list" | "tuple").then_some(value)
            }
            _ => None,
        }
    }

    /// The words of a command as a shell command line: fixed strings quoted,
    /// anything else a shell variable (`"$name"`), which the shell classifier
    /// treats as only known at run time.
    fn command_words(&self, words: &[Node]) -> String {
        words
            .iter()
            .map(|word| match self.string_value(*word, 0) {
                Some(text) => shell_quote(&text),
                None if word.kind() == "identifier" => format!("\"${}\"", self.text(*word)),
                None => "\"$value\"".to_string(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Argument `index` of a call, or its keyword `name`.
    fn argument(&self, arguments: Node<'t>, index: usize, name: &str) -> Option<Node<'t>> {
        self.keyword(arguments, name)
            .or_else(|| positional(arguments, index))
    }

    /// The value of the keyword argument `name`.
    fn keyword(&self, arguments: Node<'t>, name: &str) -> Option<Node<'t>> {
        let mut cursor = arguments.walk();
        let found = arguments
            .named_children(&mut cursor)
            .filter(|a| a.kind() == "keyword_argument")
            .find(|a| {
                a.child_by_field_name("name")
                    .is_some_and(|n| self.text(n) == name)
            })
            .and_then(|a| a.child_by_field_name("value"));
        found
    }
}

/// Positional argument `index` of a call.
/// Calls that turn bytes into objects by running what the bytes say:
/// pickle and its relatives, marshal, shelve.
fn is_deserialiser(name: &str) -> bool {
    const LOADERS: &str = "\
        pickle.load pickle.loads pickle.Unpickler _pickle.load _pickle.loads \
        _pickle.Unpickler dill.load dill.loads dill.load_session cloudpickle.load \
        cloudpickle.loads joblib.load pandas.read_pickle marshal.load marshal.loads \
        shelve.open shelve.Shelf shelve.DbfilenameShelf torch.load \
        copyreg._reconstructor
    ";
    listed(LOADERS, name)
}

fn positional(arguments: Node, index: usize) -> Option<Node> {
    let mut cursor = arguments.walk();
    let found = arguments
        .named_children(&mut cursor)
        .filter(|a| a.kind() != "comment")
        .take_while(|a| {
            !matches!(
                a.kind(),
                "keyword_argument" | "list_splat" | "dictionary_splat"
            )
        })
        .nth(index);
    found
}

/// Strips the spellings that name the same function: `builtins.eval` is
/// `eval`, `posix.system` is `os.system`, and a module that imported `os`
/// hands it on (`pathlib.os.system`, `tempfile._os.unlink`).
fn normalise(name: &str) -> String {
    let parts: Vec<&str> = name.split('.').collect();
    let handed_on = parts
        .iter()
        .enumerate()
        .skip(1)
        .rev()
        .find(|(_, part)| listed(JUDGED_MODULES, part.trim_start_matches('_')));
    if let Some((at, module)) = handed_on {
        let mut rerooted = vec![module.trim_start_matches('_')];
        rerooted.extend(parts.iter().skip(at + 1));
        return normalise_root(&rerooted.join("."));
    }
    normalise_root(name)
}

fn normalise_root(name: &str) -> String {
    if let Some(builtin) = name.strip_prefix("builtins.") {
        return builtin.to_string();
    }
    if let Some(rest) = name.strip_prefix("posix.") {
        return format!("os.{rest}");
    }
    if let Some(rest) = name.strip_prefix("posixpath.") {
        return format!("os.path.{rest}");
    }
    name.to_string()
}

/// Whether `name` is `module` or inside it (`urllib.request.urlopen` is in
/// `urllib.request`; `requestsx` is not in `requests`).
fn is_within(name: &str, module: &str) -> bool {
    name == module
        || name
            .strip_prefix(module)
            .is_some_and(|rest| rest.starts_with('.'))
}

fn top_module(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

/// Names worth following through `a = b` assignments.
fn is_known_name(name: &str) -> bool {
    let name = normalise(name);
    listed(JUDGED_MODULES, top_module(&name))
        || listed(RULED_BUILTINS, name.as_str())
        || COMMAND_RUNNERS.iter().any(|(n, _)| *n == name)
        || NETWORK_MODULES
            .split_whitespace()
            .any(|m| is_within(&name, m))
        || top_module(&name) == "pathlib"
}

/// Functions that must not be passed around unseen.
fn is_dangerous_function(name: &str) -> bool {
    let name = normalise(name);
    if COMMAND_RUNNERS.iter().any(|(n, _)| *n == name) {
        return true;
    }
    if matches!(
        name.as_str(),
        "eval"
            | "exec"
            | "compile"
            | "__import__"
            | "getattr"
            | "setattr"
            | "delattr"
            | "globals"
            | "vars"
            | "importlib.import_module"
            | "shutil.rmtree"
            | "shutil.move"
            | "shutil.chown"
    ) {
        return true;
    }
    let Some(function) = name.strip_prefix("os.") else {
        return false;
    };
    !function.starts_with("path.")
        && !listed(OS_READS, function)
        && !matches!(
            function,
            "environ"
                | "sep"
                | "linesep"
                | "name"
                | "curdir"
                | "pardir"
                | "extsep"
                | "altsep"
                | "pathsep"
                | "defpath"
                | "devnull"
                | "path"
                | "PathLike"
                | "DirEntry"
                | "stat_result"
                | "terminal_size"
                | "error"
                | "supports_follow_symlinks"
        )
        && !function.starts_with("O_")
        && !function.starts_with("SEEK_")
        && !function.starts_with("EX_")
        && !function.starts_with("W")
        && !function.starts_with("environ.")
}

fn join_paths(left: &str, right: &str) -> String {
    if right.starts_with('/') || left.is_empty() {
        right.to_string()
    } else if left.ends_with('/') {
        format!("{left}{right}")
    } else {
        format!("{left}/{right}")
    }
}

/// Decodes the escapes of a (non-raw) Python string. Unknown escapes keep
/// their backslash, as Python does.
fn unescape_python(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some('\\') => out.push('\\'),
            Some('\'') => out.push('\''),
            Some('"') => out.push('"'),
            Some('\n') => {}
            Some('x') => {
                let digits: String = (0..2)
                    .filter_map(|_| chars.next_if(|d| d.is_ascii_hexdigit()))
                    .collect();
                match u32::from_str_radix(&digits, 16)
                    .ok()
                    .and_then(char::from_u32)
                {
                    Some(decoded) => out.push(decoded),
                    None => {
                        out.push_str("\\x");
                        out.push_str(&digits);
                    }
                }
            }
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}
