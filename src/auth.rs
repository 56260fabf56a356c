//! Passwords, login tokens and the failed-login limiter.
//!
//! Passwords are hashed with argon2id (PHC strings). A login is a random
//! token in an HttpOnly cookie; the database keeps only its SHA-256, so a
//! leaked database does not leak live logins.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Name of the login cookie.
pub const COOKIE_NAME: &str = "ironclaw_login";

/// Shortest password `ironclaw user add|passwd` accepts.
pub const MIN_PASSWORD_LEN: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("password hashing failed: {0}")]
    Hash(String),
}

pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Whether `password` matches the stored hash. A malformed stored hash
/// never matches.
pub fn verify_password(password: &str, stored: &str) -> bool {
    PASSWORD_CHECKS.fetch_add(1, Ordering::Relaxed);
    PasswordHash::new(stored)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash that no password matches, verified against when the username is
/// unknown so that a failed login takes the same time either way.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a real password").unwrap_or_default())
}

/// A fresh login token (256 random bits, hex).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What the database stores for a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A random password for the first-start `admin`.
pub fn random_password() -> String {
    let mut bytes = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Longest username a login may name, checked before anything else: every
/// username IronClaw creates is at most 64 bytes (`ironclaw user add`).
pub const MAX_USERNAME_BYTES: usize = 64;

/// Longest password a login may send, checked before hashing: argon2's cost
/// grows with it, and no person types more.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Password checks (argon2) running at once. Each takes about 19 MiB and
/// most of a core for a moment; a flood queues behind a few instead of
/// taking the host's memory. Beyond it a login answers 503 + retry-after.
pub const MAX_CONCURRENT_HASHES: usize = 4;

/// Entries kept per limiter table (pairs, addresses, users, familiar
/// pairs). A table at the cap drops expired entries, then the one least
/// recently active, so memory stays bounded however many names and
/// addresses arrive (about 10 000 × a few hundred bytes per table).
const LIMITER_MAX_KEYS: usize = 10_000;

/// A name with `max_failures` recent failures from anywhere is slowed to one
/// attempt per this long from addresses it has not logged in from: guesses
/// spread over many addresses crawl, while its owner, from an address
/// that has logged in before, is never held up by them.
pub const USER_SLOWDOWN: Duration = Duration::from_secs(2);

/// How many password checks have run since start (for `make bench`).
static PASSWORD_CHECKS: AtomicU64 = AtomicU64::new(0);

/// Password checks run since the process started.
pub fn password_checks() -> u64 {
    PASSWORD_CHECKS.load(Ordering::Relaxed)
}

/// `text` cut to `max` bytes (on a character boundary) for a log line.
pub fn clip_for_log(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

/// Recent attempts per key, capped in keys and in attempts per key.
struct Table {
    entries: HashMap<String, Entry>,
}

struct Entry {
    /// Attempts within the window, oldest first; at most the limit that
    /// applies to the key.
    times: VecDeque<Instant>,
    /// The latest attempt (for eviction and the per-user slow-down).
    last: Instant,
}

impl Table {
    fn new() -> Self {
        Table {
            entries: HashMap::new(),
        }
    }

    /// Attempts of `key` within `window` of `now`.
    fn count(&mut self, key: &str, now: Instant, window: Duration) -> (usize, Option<Instant>) {
        match self.entries.get_mut(key) {
            None => (0, None),
            Some(e) => {
                while e
                    .times
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= window)
                {
                    e.times.pop_front();
                }
                (e.times.len(), e.times.front().copied())
            }
        }
    }

    fn last(&self, key: &str) -> Option<Instant> {
        self.entries.get(key).map(|e| e.last)
    }

    /// Note an attempt of `key`, keeping at most `keep` times for it.
    fn push(&mut self, key: &str, now: Instant, window: Duration, keep: usize) {
        if !self.entries.contains_key(key) {
            self.make_room(now, window);
        }
        let e = self.entries.entry(key.to_string()).or_insert(Entry {
            times: VecDeque::new(),
            last: now,
        });
        e.times.push_back(now);
        while e.times.len() > keep.max(1) {
            e.times.pop_front();
        }
        e.last = now;
    }

    /// Take back the latest attempt of `key` (it succeeded or never ran).
    fn pop(&mut self, key: &str) {
        if let Some(e) = self.entries.get_mut(key) {
            e.times.pop_back();
            if e.times.is_empty() {
                self.entries.remove(key);
            }
        }
    }

    fn remove(&mut self, key: &str) {
        self.entries.remove(key);
    }

    fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// Keep the table under [`LIMITER_MAX_KEYS`]: drop expired entries,
    /// then the least recently active one.
    fn make_room(&mut self, now: Instant, window: Duration) {
        if self.entries.len() < LIMITER_MAX_KEYS {
            return;
        }
        self.entries
            .retain(|_, e| now.duration_since(e.last) < window);
        if self.entries.len() >= LIMITER_MAX_KEYS {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.entries.remove(&k);
            }
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

struct Tables {
    /// Attempts per (username, address): the lock.
    pairs: Table,
    /// Attempts per address, looser: one address may serve several people.
    addresses: Table,
    /// Attempts per username from anywhere: only a slow-down.
    users: Table,
    /// (username, address) pairs that logged in successfully: the owner's
    /// usual addresses, exempt from the per-user slow-down.
    familiar: Table,
}

/// Why a login may not try now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait(pub u64);

/// An attempt counted before its password is checked. Counted as a failure
/// unless [`LoginLimiter::succeeded`] or [`LoginLimiter::withdraw`] takes
/// it back, so parallel guesses cannot all pass the limit while their
/// hashes run.
#[derive(Debug)]
pub struct Attempt {
    pair: String,
    address: String,
    user: String,
}

/// The failed-login policy (README, "Logins"):
///
/// - a (username, address) pair is locked after `max_failures` attempts
///   within `window`;
/// - an address is locked after `max_failures × address_factor`;
/// - a username with `max_failures` recent attempts from anywhere is slowed
///   to one attempt per [`USER_SLOWDOWN`] from unfamiliar addresses, never
///   locked: its owner from an address that logged in before goes on.
pub struct LoginLimiter {
    max_failures: u32,
    address_factor: u32,
    window: Duration,
    tables: Mutex<Tables>,
}

impl LoginLimiter {
    pub fn new(max_failures: u32, address_factor: u32, window: Duration) -> Self {
        LoginLimiter {
            max_failures: max_failures.max(1),
            address_factor: address_factor.max(1),
            window,
            tables: Mutex::new(Tables {
                pairs: Table::new(),
                addresses: Table::new(),
                users: Table::new(),
                familiar: Table::new(),
            }),
        }
    }

    /// Count an attempt by `user` from `address` now, or say how long to
    /// wait. The attempt is reserved before any hashing.
    pub fn begin(&self, user: &str, address: &str) -> Result<Attempt, Wait> {
        let Ok(mut t) = self.tables.lock() else {
            return Err(Wait(1));
        };
        let now = Instant::now();
        let window = self.window;
        let max = self.max_failures as usize;
        let address_max = max * self.address_factor as usize;
        let pair = format!("{user}\n{address}");
        let wait_from = |oldest: Option<Instant>| {
            let left = oldest.map_or(window, |o| window.saturating_sub(now.duration_since(o)));
            Wait(left.as_secs().max(1))
        };
        let (n, oldest) = t.pairs.count(&pair, now, window);
        if n >= max {
            return Err(wait_from(oldest));
        }
        let (n, oldest) = t.addresses.count(address, now, window);
        if n >= address_max {
            return Err(wait_from(oldest));
        }
        let (n, _) = t.users.count(user, now, window);
        if n >= max && !t.familiar.contains(&pair) {
            if let Some(last) = t.users.last(user) {
                let since = now.duration_since(last);
                if since < USER_SLOWDOWN {
                    return Err(Wait((USER_SLOWDOWN - since).as_secs().max(1)));
                }
            }
        }
        t.pairs.push(&pair, now, window, max);
        t.addresses.push(address, now, window, address_max);
        t.users.push(user, now, window, max);
        Ok(Attempt {
            pair,
            address: address.to_string(),
            user: user.to_string(),
        })
    }

    /// The password was right: the pair's failures are forgotten and the
    /// address becomes one of the user's familiar ones.
    pub fn succeeded(&self, attempt: Attempt) {
        if let Ok(mut t) = self.tables.lock() {
            let now = Instant::now();
            t.pairs.remove(&attempt.pair);
            t.addresses.pop(&attempt.address);
            t.users.pop(&attempt.user);
            t.familiar.push(&attempt.pair, now, Duration::MAX, 1);
        }
    }

    /// The attempt never reached a password check (the server was busy):
    /// it does not count.
    pub fn withdraw(&self, attempt: Attempt) {
        if let Ok(mut t) = self.tables.lock() {
            t.pairs.pop(&attempt.pair);
            t.addresses.pop(&attempt.address);
            t.users.pop(&attempt.user);
        }
    }

    /// Keys held across all tables (for tests and `make bench`).
    pub fn tracked_keys(&self) -> usize {
        self.tables
            .lock()
            .map(|t| t.pairs.len() + t.addresses.len() + t.users.len() + t.familiar.len())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ_per_salt() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &a));
        assert!(!verify_password("wrong", &a));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn the_pair_locks_and_a_success_clears_it() {
        let l = LoginLimiter::new(3, 4, Duration::from_secs(60));
        for _ in 0..3 {
            l.begin("u", "a").unwrap();
        }
        assert!(l.begin("u", "a").is_err(), "reserved attempts count");
        assert!(l.begin("other", "a").is_ok());
        let l = LoginLimiter::new(3, 4, Duration::from_secs(60));
        l.begin("u", "a").unwrap();
        let ok = l.begin("u", "a").unwrap();
        l.succeeded(ok);
        for _ in 0..3 {
            l.begin("u", "a").unwrap();
        }
    }

    #[test]
    fn hammering_a_name_slows_strangers_but_not_its_owner() {
        let l = LoginLimiter::new(3, 100, Duration::from_secs(60));
        // The owner logged in from "home" before.
        let ok = l.begin("alice", "home").unwrap();
        l.succeeded(ok);
        // Someone else tries her name from many addresses.
        for i in 0..3 {
            let _ = l.begin("alice", &format!("evil{i}"));
        }
        assert!(l.begin("alice", "evil9").is_err(), "slowed down");
        for _ in 0..2 {
            assert!(l.begin("alice", "home").is_ok(), "the owner goes on");
        }
    }

    #[test]
    fn an_address_is_locked_across_names_and_withdrawn_attempts_do_not_count() {
        let l = LoginLimiter::new(2, 2, Duration::from_secs(60));
        for i in 0..4 {
            l.begin(&format!("u{i}"), "a").unwrap();
        }
        assert!(l.begin("u9", "a").is_err());
        let l = LoginLimiter::new(1, 1, Duration::from_secs(60));
        let a = l.begin("u", "a").unwrap();
        l.withdraw(a);
        assert!(l.begin("u", "a").is_ok());
    }

    #[test]
    fn memory_is_bounded_however_many_names_and_addresses_arrive() {
        let l = LoginLimiter::new(5, 4, Duration::from_secs(60));
        for i in 0..(LIMITER_MAX_KEYS * 2) {
            let _ = l.begin(&format!("user{i}"), &format!("addr{i}"));
        }
        assert!(
            l.tracked_keys() <= 3 * LIMITER_MAX_KEYS,
            "{}",
            l.tracked_keys()
        );
    }

    #[test]
    fn long_text_is_clipped_for_the_log() {
        assert_eq!(clip_for_log("short", 10), "short");
        let long = "é".repeat(1000);
        let clipped = clip_for_log(&long, 11);
        assert!(clipped.len() < 40, "{clipped}");
        assert!(clipped.ends_with("(2000 bytes)"));
    }

    #[test]
    fn token_hash_is_stable_and_not_the_token() {
        let t = new_token();
        assert_eq!(t.len(), 64);
        assert_eq!(token_hash(&t), token_hash(&t));
        assert_ne!(token_hash(&t), t);
    }
}
