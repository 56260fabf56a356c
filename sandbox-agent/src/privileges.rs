//! The start-up check: the agent must be uid 0 with CAP_SETUID, CAP_SETGID
//! and CAP_KILL, or it could neither drop each program to uid 1000 nor
//! signal and sweep the programs' processes.

/// Capability numbers from `linux/capability.h`.
const CAP_KILL: u32 = 5;
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;

/// The capabilities the agent needs, with the names the error shows.
const NEEDED: [(u32, &str); 3] = [
    (CAP_SETUID, "CAP_SETUID"),
    (CAP_SETGID, "CAP_SETGID"),
    (CAP_KILL, "CAP_KILL"),
];

/// The effective capability mask from the text of `/proc/self/status`.
pub fn effective_caps(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// The needed capabilities missing from `caps`, by name.
pub fn missing_caps(caps: u64) -> Vec<&'static str> {
    NEEDED
        .iter()
        .filter(|(bit, _)| caps & (1 << bit) == 0)
        .map(|&(_, name)| name)
        .collect()
}

/// Ok if this process may run calls; else why not (for stderr).
pub fn check() -> Result<(), String> {
    let uid = unsafe { libc::geteuid() };
    if uid != 0 {
        return Err(format!(
            "runs as uid {uid} but needs uid 0 (start it with `docker exec -u 0:0`)"
        ));
    }
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|err| format!("cannot read /proc/self/status to check capabilities: {err}"))?;
    let caps = effective_caps(&status).ok_or("no CapEff line in /proc/self/status")?;
    let missing = missing_caps(caps);
    if !missing.is_empty() {
        return Err(format!(
            "needs {} (the container must have --cap-add SETUID --cap-add SETGID --cap-add KILL)",
            missing.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cap_eff() {
        let status = "Name:\tironclaw-agent\nCapInh:\t0000000000000000\nCapPrm:\t00000000000000e0\nCapEff:\t00000000000000e0\nCapBnd:\t00000000000000e0\n";
        assert_eq!(effective_caps(status), Some(0xe0));
        assert_eq!(
            effective_caps("CapEff:\t000001ffffffffff\n"),
            Some(0x1ff_ffff_ffff)
        );
        assert_eq!(effective_caps("Name:\tx\n"), None);
        assert_eq!(effective_caps("CapEff:\tzz\n"), None);
    }

    #[test]
    fn names_missing_caps() {
        // KILL, SETGID, SETUID = bits 5, 6, 7 = 0xe0.
        assert_eq!(missing_caps(0xe0), Vec::<&str>::new());
        assert_eq!(missing_caps(0x1ff_ffff_ffff), Vec::<&str>::new());
        assert_eq!(missing_caps(0), ["CAP_SETUID", "CAP_SETGID", "CAP_KILL"]);
        assert_eq!(missing_caps(0xc0), ["CAP_KILL"]);
        assert_eq!(missing_caps(0x60), ["CAP_SETUID"]);
    }
}
