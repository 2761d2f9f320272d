//! Shell completions and man pages come from the clap definitions of the harness and
//! of the server (whose flags `winmdm serve` shares).

use std::process::Command;

fn winmdm(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_winmdm"))
        .args(args)
        .output()
        .expect("run winmdm");
    assert!(out.status.success(), "winmdm {args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn completions_and_man_pages_of_the_harness_and_the_server() {
    let bash = winmdm(&["completions", "bash"]);
    assert!(bash.contains("_winmdm()"), "{bash}");
    assert!(bash.contains("import-raw"), "subcommands are completed");
    let server = winmdm(&["completions", "zsh", "--bin", "winmdm-server"]);
    assert!(server.starts_with("#compdef winmdm-server"), "{server}");
    assert!(server.contains("--enroll-secret"), "the server's flags");
    let man = winmdm(&["man"]);
    assert!(man.contains(".TH winmdm 1"), "{man}");
    let man = winmdm(&["man", "--bin", "winmdm-server"]);
    assert!(
        man.contains(".TH winmdm-server 1") && man.contains("database\\-url"),
        "{man}"
    );
}
