//! The crates that touch the outside each stay in their one module
//! (DESIGN.md §1): bollard in `src/sandbox/`, diesel in `src/db/`,
//! actix-web-actors in `src/ws.rs`. Checked over the source text, so a
//! stray `use` anywhere fails here.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Lines of code (not comments) that name `krate`.
fn uses(text: &str, krate: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//"))
        .filter(|l| l.contains(&format!("{krate}::")) || l.starts_with(&format!("use {krate}")))
        .map(str::to_string)
        .collect()
}

#[test]
fn outside_crates_stay_in_their_modules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    assert!(files.len() > 20, "found the sources");
    let rooms = [
        ("bollard", "src/sandbox/"),
        ("diesel", "src/db/"),
        ("diesel_migrations", "src/db/"),
        ("actix_web_actors", "src/ws.rs"),
    ];
    let mut strays = Vec::new();
    for file in &files {
        let rel = file
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let text = std::fs::read_to_string(file).unwrap();
        for (krate, room) in rooms {
            if rel.starts_with(room) {
                continue;
            }
            for line in uses(&text, krate) {
                strays.push(format!("{rel}: {line}"));
            }
        }
    }
    assert!(
        strays.is_empty(),
        "outside their module:\n{}",
        strays.join("\n")
    );
}
