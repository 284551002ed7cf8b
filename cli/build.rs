//! Stamps the binary with the git commit it was built from, for `commerce --version`:
//! `COMMERCE_GIT_COMMIT` is `git rev-parse --short HEAD`, with `-dirty` when tracked sources
//! of the binary differ from that commit, or `unknown` outside a git checkout (a crates
//! tarball, a source archive, no git installed). A build script must not fail the build for
//! this, so every git error falls back to `unknown`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace paths (relative to its root) the binary is built from: a change under one
/// of them reruns this script so `-dirty` stays right; edits elsewhere (tests, docs) do not.
const SOURCES: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    "storage",
    "broker",
    "services",
    "gateway",
    "cli",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = git_commit(&manifest_dir).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=COMMERCE_GIT_COMMIT={commit}");
}

/// The short commit id (plus `-dirty`), and the rerun-if-changed lines that keep it current;
/// `None` when this crate is not tracked in a git checkout.
fn git_commit(manifest_dir: &Path) -> Option<String> {
    let root = git(manifest_dir, &["rev-parse", "--show-toplevel"]).map(PathBuf::from)?;

    // Watch first, so a later `git commit` of a not-yet-tracked checkout reruns this script.
    // HEAD names the branch; the branch's ref file (or packed-refs) names the commit. In a
    // linked worktree HEAD lives in the worktree's git dir and the refs in the common one,
    // so ask git for the paths rather than assuming `../.git/HEAD`. A branch whose ref is
    // only packed has no file yet: then watch the `refs/heads` folder (cargo scans folders),
    // as a watched path that does not exist would rerun this script on every build. The
    // branch's own file is better when there is one: other worktrees' commits don't touch it.
    let mut watched = vec![git_path(manifest_dir, "HEAD")?];
    let branch_ref = git(manifest_dir, &["symbolic-ref", "-q", "HEAD"])
        .filter(|branch| !branch.is_empty())
        .and_then(|branch| git_path(manifest_dir, &branch))
        .filter(|path| path.exists());
    watched.extend(branch_ref.or_else(|| git_path(manifest_dir, "refs/heads")));
    watched.extend(git_path(manifest_dir, "packed-refs"));
    // The sources: any edit reruns this script, so `-dirty` follows the working tree.
    watched.extend(SOURCES.iter().map(|source| root.join(source)));
    for path in watched.iter().filter(|path| path.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }

    // Only trust the repository if it tracks this very file: a crates tarball unpacked
    // inside some unrelated checkout must not borrow that checkout's commit.
    let tracked = git(manifest_dir, &["ls-files", "--", "build.rs"])?;
    let commit = git(manifest_dir, &["rev-parse", "--short", "HEAD"])?;
    if tracked.is_empty() || commit.is_empty() {
        return None;
    }

    let mut status = vec![
        "--no-optional-locks",
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
    ];
    status.extend(SOURCES);
    let dirty = git(&root, &status).is_some_and(|changes| !changes.is_empty());
    Some(if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    })
}

/// Absolute path of a file inside the git dir (`HEAD`, `refs/heads/x`, `packed-refs`).
fn git_path(dir: &Path, name: &str) -> Option<PathBuf> {
    git(
        dir,
        &["rev-parse", "--path-format=absolute", "--git-path", name],
    )
    .map(PathBuf::from)
}

/// Runs git in `dir`; its trimmed stdout, or `None` if git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
