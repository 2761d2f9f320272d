//! Shell completions and the man page come from the clap definition of the CLI.

use std::process::Command;

fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_fake-windows-client"))
        .args(args)
        .output()
        .expect("run fake-windows-client");
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn completions_and_man_page() {
    let fish = run(&["completions", "fish"]);
    assert!(fish.contains("complete -c fake-windows-client"), "{fish}");
    assert!(fish.contains("enroll"), "subcommands are completed");
    assert!(fish.contains("digest"), "flags are completed");
    let man = run(&["man"]);
    assert!(man.contains(".TH fake-windows-client 1"), "{man}");
}
