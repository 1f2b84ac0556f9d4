//! The repository stands alone: no tracked file refers to a path outside it. A user clones the
//! repository by itself, so a build, test, benchmark, script, doc or compose file that reads the
//! reference folder the project started from (beside the repository) or climbs out of the
//! repository with `../` works on a developer's machine and fails in every user's clone.

use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// The reference folder beside the repository, spelled in pieces so this file does not name it.
const SHARED: &str = "shared";

/// Why a line is flagged.
#[derive(Debug, PartialEq, Eq)]
enum Reason {
    /// It names the reference folder beside the repository.
    Names(String),
    /// A `../` path that leaves the repository from the file's directory, from its crate's
    /// directory and from the repository root alike.
    Escapes(String),
}

/// Where a file sits, as directories relative to the repository root.
struct Place<'a> {
    /// The file's own directory.
    dir: &'a Path,
    /// Its crate's directory: the nearest one up with a `Cargo.toml` (the root's otherwise).
    crate_dir: &'a Path,
}

/// Every reference outside the repository in `text`, by line number (1-based).
fn scan(text: &str, place: &Place<'_>) -> Vec<(usize, Reason)> {
    let needles = [
        format!("../{SHARED}"),
        format!("{SHARED}/spec"),
        format!("{SHARED}/seed"),
        format!("{SHARED}/twilio-oai"),
    ];
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        for needle in &needles {
            if line.contains(needle.as_str()) {
                found.push((i + 1, Reason::Names(needle.clone())));
            }
        }
        for path in relative_paths(line) {
            let escapes = [place.dir, place.crate_dir, Path::new("")]
                .iter()
                .all(|base| escapes(base, path));
            if escapes {
                found.push((i + 1, Reason::Escapes(path.to_owned())));
            }
        }
    }
    found
}

/// The characters a path token is made of.
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._-/+@%~".contains(c)
}

/// The relative paths in a line that start with `../`: at the start of a token (after a quote,
/// a bracket, a space, `=`…), or as `/../` appended to a directory given elsewhere
/// (`concat!(env!("CARGO_MANIFEST_DIR"), "/../x")`).
fn relative_paths(line: &str) -> Vec<&str> {
    let mut paths = Vec::new();
    let mut from = 0;
    while let Some(at) = line[from..].find("../").map(|i| from + i) {
        let before = line[..at].chars().next_back();
        let start = match before {
            None => Some(at),
            Some(c) if !is_path_char(c) => Some(at),
            // `"/../x"`: the `/` joins the path to a directory named elsewhere.
            Some('/') => match line[..at - 1].chars().next_back() {
                None => Some(at),
                Some(c) if !is_path_char(c) => Some(at),
                _ => None,
            },
            _ => None,
        };
        let end = line[at..]
            .find(|c: char| !is_path_char(c))
            .map_or(line.len(), |i| at + i);
        if let Some(start) = start {
            paths.push(&line[start..end]);
        }
        from = end.max(at + 3);
    }
    paths
}

/// Whether `path`, resolved lexically from `base` (relative to the repository root), leaves the
/// repository at some point.
fn escapes(base: &Path, path: &str) -> bool {
    let mut depth = base
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count() as isize;
    for segment in path.split('/') {
        match segment {
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            "" | "." => {}
            _ => depth += 1,
        }
    }
    false
}

/// The tracked files, relative to `root`: `git ls-files`, or without git (or outside a git
/// checkout) every file under `root` but `target/` and `.git/`.
fn tracked_files(root: &Path) -> Vec<PathBuf> {
    let git = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["ls-files", "-z"])
        .output();
    match git {
        Ok(out) if out.status.success() && root.join(".git").exists() => out
            .stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
            .collect(),
        _ => {
            let mut files = Vec::new();
            walk(root, Path::new(""), &mut files);
            files
        }
    }
}

fn walk(root: &Path, rel: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root.join(rel)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let path = rel.join(&name);
        match entry.file_type() {
            Ok(t) if t.is_dir() && name != "target" && name != ".git" => walk(root, &path, files),
            Ok(t) if t.is_file() => files.push(path),
            _ => {}
        }
    }
}

/// The nearest directory at or above `dir` (relative to `root`) holding a `Cargo.toml`.
fn crate_dir(root: &Path, dir: &Path) -> PathBuf {
    dir.ancestors()
        .find(|d| root.join(d).join("Cargo.toml").is_file())
        .unwrap_or(Path::new(""))
        .to_path_buf()
}

#[test]
fn no_tracked_file_refers_outside_the_repository() {
    let root = switchboard_test_support::repo_root();
    let files = tracked_files(&root);
    assert!(
        files.iter().any(|f| f == Path::new("Cargo.toml")),
        "listed the repository's files ({} found under {})",
        files.len(),
        root.display()
    );
    let mut offenders = Vec::new();
    for file in &files {
        // Binary and non-UTF-8 files cannot hold a path this check understands.
        let Ok(text) = std::fs::read_to_string(root.join(file)) else {
            continue;
        };
        let dir = file.parent().unwrap_or(Path::new(""));
        let crate_dir = crate_dir(&root, dir);
        let place = Place {
            dir,
            crate_dir: &crate_dir,
        };
        for (line, reason) in scan(&text, &place) {
            let what = match reason {
                Reason::Names(needle) => format!("names `{needle}` (outside the repository)"),
                Reason::Escapes(path) => format!("`{path}` leaves the repository"),
            };
            offenders.push(format!("{}:{line}: {what}", file.display()));
        }
    }
    assert!(
        offenders.is_empty(),
        "{} reference(s) to paths outside the repository (copy what is needed into the \
         repository, with its origin):\n{}",
        offenders.len(),
        offenders.join("\n")
    );
}

#[test]
fn the_detector_flags_paths_outside_and_only_those() {
    let place = Place {
        dir: Path::new("crates/package/tests/it"),
        crate_dir: Path::new("crates/package"),
    };
    let up = |n: usize| "../".repeat(n);

    // The reference folder, however it is reached.
    let text = format!(
        "//! fine\nlet p = repo_root().join(\"{}{SHARED}/seed/x.json\");\n",
        up(1)
    );
    assert_eq!(
        scan(&text, &place),
        vec![
            (2, Reason::Names(format!("../{SHARED}"))),
            (2, Reason::Names(format!("{SHARED}/seed"))),
        ]
    );
    let text = format!("see `{SHARED}/spec/semantics.md`\n");
    assert_eq!(
        scan(&text, &place),
        vec![(1, Reason::Names(format!("{SHARED}/spec")))]
    );

    // Five levels up from crates/package/tests/it leaves the repository in every reading.
    let escaping = format!("{}elsewhere/data.json", up(5));
    let text = format!("a\nb\nlet d = include_str!(\"{escaping}\");\n");
    assert_eq!(scan(&text, &place), vec![(3, Reason::Escapes(escaping))]);
    // Appended to a directory: `concat!(env!("CARGO_MANIFEST_DIR"), "/../../../x")`.
    let appended = format!("{}elsewhere", up(5));
    assert_eq!(
        scan(
            &format!("concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/{appended}\")"),
            &place
        ),
        vec![(1, Reason::Escapes(appended))]
    );

    // Inside the repository from at least one reading: not flagged.
    let inside = [
        // From the file's directory: crates/examples (the root reading escapes).
        format!("include_str!(\"{}examples/seed.json\")", up(3)),
        // Markdown link from the crate: the root's docs/.
        format!("[jobs]({}docs/jobs.md)", up(2)),
        format!("path = \"{}twig\"", up(1)),
        // Not a relative path: a URL, a range, an ellipsis, a path inside another.
        format!("https://example.com/{}{}x", up(1), up(6)),
        "let s = &v[..n]; let t = (..); ...".to_owned(),
        format!("services/a/{}b", up(6)),
    ];
    for text in &inside {
        assert_eq!(scan(text, &place), vec![], "{text}");
    }

    // A file at the root: one `../` already leaves.
    let root_file = Place {
        dir: Path::new(""),
        crate_dir: Path::new(""),
    };
    let sibling = format!("{}other-repo/file", up(1));
    assert_eq!(
        scan(&format!("volumes: [\"{sibling}:/x\"]"), &root_file),
        vec![(1, Reason::Escapes(sibling))]
    );
}

#[test]
fn without_git_the_tree_is_walked_without_target_and_git() {
    let root = switchboard_test_support::repo_root();
    let mut files = Vec::new();
    walk(&root, Path::new(""), &mut files);
    assert!(files.iter().any(|f| f == Path::new("Cargo.toml")));
    assert!(files.iter().any(|f| f.starts_with("examples")));
    assert!(
        !files
            .iter()
            .any(|f| f.starts_with("target") || f.starts_with(".git")),
        "target/ and .git/ are skipped"
    );
}
