//! docs/tour.md, run: every command of its untagged ```console blocks runs in a fresh store (the
//! namespace column, as an unprivileged user) and must print what the page shows
//! (nook_tests::tour explains the placeholders). The VM block runs in the rig (tests/vm/tour.sh).

use std::process::Command;

use nook_tests::rootless::Rootless;
use nook_tests::{require_tool, tour, workspace_root};

#[test]
fn the_tour_prints_what_it_shows() {
    require_tool("busybox");
    let path = workspace_root().join("docs/tour.md");
    let text = std::fs::read_to_string(&path).expect("docs/tour.md");
    let blocks = tour::parse(&text).expect("docs/tour.md's console blocks");
    assert!(
        blocks.iter().any(|b| b.tag.as_deref() == Some("rig")),
        "the tour shows the VM column in a `console rig` block"
    );
    let nook = Rootless::new();
    let ran = tour::run_blocks(&blocks, None, &mut |words| {
        let out = match words[0].as_str() {
            "nook" => {
                let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
                nook.run(&args)
            }
            program => Command::new(program)
                .args(&words[1..])
                .output()
                .unwrap_or_else(|e| panic!("cannot run {program}: {e}")),
        };
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (text, out.status.code().unwrap_or(128))
    })
    .unwrap_or_else(|e| panic!("docs/tour.md: {e}"));
    assert!(ran >= 15, "only {ran} commands of the tour ran");
}
