//! The README's walk-through, pasted into a shell as a newcomer would: it must run to the end.

use std::process::Command;

#[test]
fn the_readme_walk_through_runs_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("## Walk-through")
        .nth(1)
        .expect("a walk-through section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("a sh block in the walk-through");
    assert!(block.contains("cargo run --release -- serve"), "{block}");
    for tool in ["curl", "jq"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "the walk-through needs {tool}: install it (apt-get install {tool})"
        );
    }
    // The same commands, with the binary this test run built instead of a release build.
    let script = block.replace(
        "cargo run --release -- serve",
        &format!("{} serve", env!("CARGO_BIN_EXE_clawjobs")),
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .env("CLAWJOBS_LOG", "warn")
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the walk-through failed:\n{stdout}\n{stderr}"
    );
    for expected in [
        r#""status":"accepted""#,
        r#""status":"completed""#,
        r#""credited_cents""#,
        r#""ok":true"#,
        r#""qa_fund_cents""#,
    ] {
        assert!(
            stdout.contains(expected),
            "{expected} missing from:\n{stdout}"
        );
    }
}
