//! Starting `winmdm serve` as a child process in the tests: the server picks its own
//! port and prints it on its first line, so tests do not race for ports.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};

/// A started `winmdm serve`: the process, its stdout (kept open so the server never
/// writes to a closed pipe) and the address it listens on.
pub struct Started {
    pub child: Child,
    pub stdout: BufReader<ChildStdout>,
    pub addr: String,
}

/// Spawns `command` (a `winmdm serve` with its arguments) with stdout piped and reads
/// the address from its first line ("winmdm-server listening on ADDR ...").
pub fn spawn(command: &mut Command) -> Started {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .expect("winmdm serve starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("first line");
    let addr = line
        .split_whitespace()
        .nth(3)
        .unwrap_or_else(|| panic!("winmdm serve did not start: {line:?}"))
        .to_string();
    Started {
        child,
        stdout,
        addr,
    }
}
