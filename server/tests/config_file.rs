//! `--config FILE`: file values are used, flags and environment variables override
//! them, unknown keys are refused naming the key and the file, and docs/winmdm.toml
//! lists every flag with its default.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use winmdm_server::{Config, ConfigError};

fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("winmdm.toml");
    std::fs::write(&path, text).expect("write config");
    (dir, path)
}

fn parse(path: &Path, extra: &[&str]) -> Result<Config, ConfigError> {
    let mut args = vec![
        "winmdm-server".to_string(),
        "--config".to_string(),
        path.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Config::try_parse_with_file_from(args)
}

#[test]
fn file_values_are_used() {
    let (_d, path) = write(
        "enroll-secret = \"from-file\"\nmax-msg-size = 1234\nlisten = \"127.0.0.1:9000\"\n\
         enroll-user = [\"a:1\", \"b:2\"]\nlog-format = \"json\"\n",
    );
    let c = parse(&path, &[]).expect("parses");
    assert_eq!(c.enroll_secret, "from-file");
    assert_eq!(c.max_msg_size, 1234);
    assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
    assert_eq!(c.enroll_users, ["a:1", "b:2"]);
    assert_eq!(c.log_format, winmdm_server::LogFormat::Json);
    // Unset keys keep their defaults.
    assert_eq!(c.provider_id, "winmdm");
}

#[test]
fn a_flag_overrides_the_file() {
    let (_d, path) =
        write("enroll-secret = \"from-file\"\nredeliver-after-secs = 5\nenroll-user = [\"a:1\"]\n");
    let c = parse(
        &path,
        &[
            "--redeliver-after-secs",
            "7",
            "--enroll-user",
            "c:3",
            "--enroll-secret=flag",
        ],
    )
    .expect("parses");
    assert_eq!(c.redeliver_after_secs, 7);
    assert_eq!(c.enroll_users, ["c:3"], "the flag replaces the file's list");
    assert_eq!(c.enroll_secret, "flag");
}

/// The only test setting this variable: no other test reads node-key-ttl-secs.
#[test]
fn an_environment_variable_overrides_the_file() {
    let (_d, path) = write("enroll-secret = \"s\"\nnode-key-ttl-secs = 11\n");
    std::env::set_var("WINMDM_NODE_KEY_TTL_SECS", "22");
    let c = parse(&path, &[]);
    std::env::remove_var("WINMDM_NODE_KEY_TTL_SECS");
    assert_eq!(c.expect("parses").node_key_ttl_secs, 22);
}

#[test]
fn an_unknown_key_is_refused_naming_key_and_file() {
    let (_d, path) = write("enroll-secret = \"s\"\nmax-msg-sise = 10\n");
    let e = parse(&path, &[]).expect_err("unknown key").to_string();
    assert!(e.contains("`max-msg-sise`"), "{e}");
    assert!(e.contains(&path.display().to_string()), "{e}");
    // Underscores are not the flags' spelling: refused, with the right name suggested.
    let (_d, path) = write("enroll_secret = \"s\"\n");
    let e = parse(&path, &[]).expect_err("underscored key").to_string();
    assert!(
        e.contains("`enroll_secret`") && e.contains("`enroll-secret`"),
        "{e}"
    );
}

#[test]
fn bad_files_are_refused_with_the_reason() {
    let (_d, path) = write("enroll-secret = \"s\"\nlisten = [\"a\", \"b\"]\n");
    let e = parse(&path, &[])
        .expect_err("array for one value")
        .to_string();
    assert!(e.contains("`listen`") && e.contains("one value"), "{e}");
    let (_d, path) = write("enroll-secret = \n");
    let e = parse(&path, &[]).expect_err("bad TOML").to_string();
    assert!(e.contains("not valid TOML"), "{e}");
    let missing = PathBuf::from("/nonexistent/winmdm.toml");
    let e = parse(&missing, &["--enroll-secret", "s"])
        .expect_err("missing file")
        .to_string();
    assert!(e.contains("/nonexistent/winmdm.toml"), "{e}");
}

#[test]
fn without_a_file_the_command_line_alone_is_parsed() {
    let c = Config::try_parse_with_file_from(["winmdm-server", "--enroll-secret", "s"])
        .expect("parses");
    assert_eq!(c.enroll_secret, "s");
    assert!(matches!(
        Config::try_parse_with_file_from(["winmdm-server"]),
        Err(ConfigError::Cli(_))
    ));
}

/// docs/winmdm.toml lists every (visible) flag, commented out with its default, and
/// parses once its assignments are uncommented.
#[test]
fn the_example_file_lists_every_flag_with_its_default() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/winmdm.toml");
    let text = std::fs::read_to_string(example).expect("docs/winmdm.toml");
    let assignment = |l: &str| {
        let rest = l.strip_prefix("# ")?;
        let (key, _) = rest.split_once(" = ")?;
        key.chars()
            .all(|c| c.is_ascii_lowercase() || c == '-')
            .then(|| rest.to_string())
    };
    let uncommented: String = text
        .lines()
        .filter_map(assignment)
        .map(|l| l + "\n")
        .collect();
    let table: toml::Table = uncommented.parse().expect("example parses as TOML");
    let listed: BTreeSet<String> = table.keys().cloned().collect();
    let command = Config::command();
    let flags: BTreeSet<String> = command
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| a.get_long())
        .filter(|l| *l != "config")
        .map(str::to_string)
        .collect();
    assert_eq!(
        listed, flags,
        "docs/winmdm.toml and the flags of Config differ"
    );
    for arg in command.get_arguments() {
        let (Some(long), [default]) = (arg.get_long(), arg.get_default_values()) else {
            continue;
        };
        let Some(value) = table.get(long) else {
            continue;
        };
        let shown = match value {
            toml::Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        assert_eq!(
            shown,
            default.to_string_lossy(),
            "docs/winmdm.toml: `{long}` is not shown with its default"
        );
    }
    let (_d, path) = write(&uncommented);
    parse(&path, &[]).expect("the uncommented example is a valid configuration");
}

/// The only test setting this variable: `--help` names it but never shows its value.
#[test]
fn help_never_shows_the_value_of_a_secret_environment_variable() {
    std::env::set_var("WINMDM_ADMIN_TOKEN", "admin-token-in-the-environment");
    let help = Config::command().render_long_help().to_string();
    std::env::remove_var("WINMDM_ADMIN_TOKEN");
    assert!(help.contains("WINMDM_ADMIN_TOKEN"), "{help}");
    assert!(!help.contains("admin-token-in-the-environment"), "{help}");
}
