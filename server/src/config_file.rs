//! `--config FILE`: the server's settings in a TOML file, under its flags and
//! environment variables.
//!
//! Each key is a flag's long name without the dashes (`enroll-secret`, `max-msg-size`);
//! a repeatable flag takes an array (`enroll-user = ["a:b", "c:d"]`). The file's values
//! become command-line arguments placed before the real ones, except for settings the
//! command line or an environment variable already gives: those win, whole (a repeatable
//! flag given on the command line replaces the file's list). A key that is not a flag is
//! refused, naming the key and the file.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};

use crate::config::Config;

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}: not valid TOML: {message}")]
    Syntax { path: String, message: String },
    #[error("{path}: unknown key `{key}`{hint}")]
    UnknownKey {
        path: String,
        key: String,
        hint: String,
    },
    #[error("{path}: key `{key}`: {why}")]
    BadValue {
        path: String,
        key: String,
        why: &'static str,
    },
    /// The command line (with the file's values) refused by clap, or `--help`.
    #[error(transparent)]
    Cli(#[from] clap::Error),
}

impl Config {
    /// Parses `args` (the program name first) with the values of the `--config` file
    /// (or `WINMDM_CONFIG`) under them.
    pub fn try_parse_with_file_from<I, T>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        // A first, lenient pass finds the file and what the command line and the
        // environment already set; errors (a missing --enroll-secret, --help) are left
        // to the real pass.
        let lenient = Config::command()
            .ignore_errors(true)
            .try_get_matches_from(&args);
        let Ok(given) = lenient else {
            return Ok(Config::try_parse_from(&args)?);
        };
        let Some(path) = given.get_one::<PathBuf>("config").cloned() else {
            return Ok(Config::try_parse_from(&args)?);
        };
        let from_file = file_args(&path, &|id| {
            matches!(
                given.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        })?;
        let mut merged = Vec::with_capacity(args.len() + from_file.len());
        merged.extend(args.first().cloned());
        merged.extend(from_file);
        merged.extend(args.into_iter().skip(1));
        let matches = Config::command().try_get_matches_from(merged)?;
        Ok(Config::from_arg_matches(&matches)?)
    }
}

/// The file's settings as `--flag=value` arguments, leaving out those `overridden`
/// (by argument id).
fn file_args(path: &Path, overridden: &dyn Fn(&str) -> bool) -> Result<Vec<OsString>, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: shown.clone(),
        error,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: shown.clone(),
            message: e.message().to_string(),
        })?;
    let command = Config::command();
    let bad = |key: &str, why| ConfigError::BadValue {
        path: shown.clone(),
        key: key.to_string(),
        why,
    };
    let mut out = Vec::new();
    for (key, value) in &table {
        let arg = command
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && key != "config")
            .ok_or_else(|| ConfigError::UnknownKey {
                path: shown.clone(),
                key: key.clone(),
                hint: hint(&command, key),
            })?;
        if overridden(arg.get_id().as_str()) {
            continue;
        }
        let repeatable = matches!(arg.get_action(), ArgAction::Append);
        let flag_only = matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse);
        let values: Vec<&toml::Value> = match value {
            toml::Value::Array(items) if repeatable => items.iter().collect(),
            toml::Value::Array(_) => return Err(bad(key, "takes one value, not an array")),
            v => vec![v],
        };
        for v in values {
            let text = match v {
                toml::Value::Boolean(on) if flag_only => {
                    if *on {
                        out.push(OsString::from(format!("--{key}")));
                    }
                    continue;
                }
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => return Err(bad(key, "must be a string, a number or a boolean")),
            };
            if flag_only {
                return Err(bad(key, "is a switch: true or false"));
            }
            out.push(OsString::from(format!("--{key}={text}")));
        }
    }
    Ok(out)
}

/// ", did you mean `x`?" when `key` spelled with underscores or in another case is a flag.
fn hint(command: &clap::Command, key: &str) -> String {
    let dashed = key.replace('_', "-").to_ascii_lowercase();
    if key == "config" {
        return " (a configuration file cannot name another)".to_string();
    }
    match command
        .get_arguments()
        .filter_map(|a| a.get_long())
        .find(|l| *l == dashed && *l != "config")
    {
        Some(l) => format!(", did you mean `{l}`? (keys are the flags' long names)"),
        None => " (keys are the flags' long names, as in docs/winmdm.toml)".to_string(),
    }
}
