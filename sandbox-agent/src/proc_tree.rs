//! Every descendant of a process, found through `/proc`: the keeper's sweep
//! uses it to reach the processes that left the program's group (`setsid`,
//! double forks, `nohup … &`), which a group kill alone would miss; the agent
//! uses it for strays that reached it because their keeper died.
//!
//! Parsing and the walks are pure functions over `(pid, ppid)` pairs; only
//! [`scan`] reads `/proc` and [`stop_and_kill`] sends signals.

use std::collections::{HashMap, HashSet};

use crate::sys;

pub type Pid = libc::pid_t;

/// `(pid, ppid)` from the content of `/proc/<pid>/stat`:
/// `pid (comm) state ppid …`. The command name may hold spaces and
/// parentheses, so the fields after it are found from the *last* `)`.
pub fn parse_stat(stat: &[u8]) -> Option<(Pid, Pid)> {
    let open = stat.iter().position(|&b| b == b'(')?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    let pid = std::str::from_utf8(&stat[..open])
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let after = std::str::from_utf8(stat.get(close + 1..)?).ok()?;
    let mut fields = after.split_ascii_whitespace();
    let _state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((pid, ppid))
}

/// Every process below `root` (children, grandchildren, …), `root` itself
/// excluded, parents before their children. Tolerates cycles, which a
/// snapshot taken while pids are reused could in theory show.
pub fn descendants(parents: &[(Pid, Pid)], root: Pid) -> Vec<Pid> {
    let mut children: HashMap<Pid, Vec<Pid>> = HashMap::new();
    for &(pid, ppid) in parents {
        children.entry(ppid).or_default().push(pid);
    }
    let mut seen = HashSet::from([root]);
    let mut found = Vec::new();
    let mut next = 0;
    let mut frontier = vec![root];
    while let Some(&parent) = frontier.get(next) {
        next += 1;
        for &child in children.get(&parent).map(Vec::as_slice).unwrap_or_default() {
            if seen.insert(child) {
                found.push(child);
                frontier.push(child);
            }
        }
    }
    found
}

/// Processes below the agent that no running keeper owns, with everything
/// below them. Only keepers are the agent's children in normal operation;
/// anything else got there because its keeper died without sweeping (the
/// agent is a subreaper too).
pub fn strays(parents: &[(Pid, Pid)], agent: Pid, keepers: &[Pid]) -> Vec<Pid> {
    let mut found = Vec::new();
    for &(pid, ppid) in parents {
        if ppid == agent && !keepers.contains(&pid) {
            found.push(pid);
            found.extend(descendants(parents, pid));
        }
    }
    found
}

/// One sweep round over `pids`: SIGSTOP to all of them first, then SIGKILL.
/// A stopped process cannot fork, so none of them can add a process the
/// round does not know of after the round started.
pub fn stop_and_kill(pids: &[Pid]) {
    // Errors are expected and harmless: a process may be gone already.
    for &pid in pids {
        let _ = sys::kill(pid, libc::SIGSTOP);
    }
    for &pid in pids {
        let _ = sys::kill(pid, libc::SIGKILL);
    }
}

/// `(pid, ppid)` of every process visible in `/proc` right now. Processes
/// that exit while the scan runs are skipped.
pub fn scan() -> Vec<(Pid, Pid)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|entry| std::fs::read(entry.path().join("stat")).ok())
        .filter_map(|stat| parse_stat(&stat))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_lines() {
        type Parsed = Option<(Pid, Pid)>;
        let cases: &[(&[u8], Parsed)] = &[
            (b"42 (bash) S 7 42 42 0 -1 4194560 100", Some((42, 7))),
            (b"1 (docker-init) S 0 1 1 0 -1", Some((1, 0))),
            // A command name with spaces and parentheses of its own.
            (b"93 (a) b (c) R 12 93 93 0", Some((93, 12))),
            (b"93 (x) y) Z 5 93", Some((93, 5))),
            // Non-UTF-8 command names are fine too.
            (b"8 (\xff\xfe) S 3 8", Some((8, 3))),
            (b"", None),
            (b"12 (cut", None),
            (b"12 (sh) S", None),
            (b"x (sh) S 1", None),
            (b"12 (sh) S ppid", None),
        ];
        for (line, want) in cases {
            assert_eq!(parse_stat(line), *want, "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn walks_down_from_the_root_only() {
        // 1 init
        // ├─ 10 agent
        // │  ├─ 20 keeper ── 30 program ── 40 child ── 50 grandchild
        // │  │              └─ 31 orphan reparented to the keeper
        // │  └─ 21 other keeper ── 60 other program
        // └─ 99 unrelated
        let parents = [
            (1, 0),
            (10, 1),
            (20, 10),
            (21, 10),
            (30, 20),
            (31, 20),
            (40, 30),
            (50, 40),
            (60, 21),
            (99, 1),
        ];
        let mut below_keeper = descendants(&parents, 20);
        below_keeper.sort();
        assert_eq!(below_keeper, [30, 31, 40, 50]);
        assert_eq!(descendants(&parents, 21), [60]);
        assert_eq!(descendants(&parents, 50), Vec::<Pid>::new());
        assert_eq!(descendants(&parents, 12345), Vec::<Pid>::new());
        let everything = descendants(&parents, 1);
        assert_eq!(everything.len(), 9);
        // Parents come before their children.
        let at = |pid| everything.iter().position(|&p| p == pid);
        assert!(at(20) < at(30) && at(30) < at(40) && at(40) < at(50));
    }

    #[test]
    fn strays_are_the_agents_non_keeper_subtrees() {
        // Agent 10 with keepers 20 and 21; keeper 22 died, leaving 30 (and
        // its child 40) reparented to the agent.
        let parents = [
            (1, 0),
            (10, 1),
            (20, 10),
            (21, 10),
            (25, 20),
            (30, 10),
            (40, 30),
            (99, 1),
        ];
        let mut found = strays(&parents, 10, &[20, 21]);
        found.sort();
        assert_eq!(found, [30, 40]);
        assert_eq!(strays(&parents, 10, &[20, 21, 30]), Vec::<Pid>::new());
        // A keeper that is no longer running counts as a stray too.
        let mut found = strays(&parents, 10, &[21]);
        found.sort();
        assert_eq!(found, [20, 25, 30, 40]);
    }

    #[test]
    fn survives_cycles() {
        let parents = [(2, 3), (3, 2), (4, 3)];
        let mut found = descendants(&parents, 2);
        found.sort();
        assert_eq!(found, [3, 4]);
    }

    #[test]
    fn scan_sees_this_process_and_its_parent() {
        let me = std::process::id() as Pid;
        let parent = unsafe { libc::getppid() };
        assert!(scan().contains(&(me, parent)));
    }
}
