//! Shell completions and man pages generated from a clap definition, shared by `winmdm`
//! and `winmdm-load`. The text is generated into memory first: clap_complete panics on
//! a failed write (a closed pipe), which must be an error instead.

use std::io::Write;

/// Prints the completion script of `cmd` (installed as `name`) for `shell`.
pub fn print_completions(
    mut cmd: clap::Command,
    shell: clap_complete::Shell,
    name: &str,
) -> Result<bool, String> {
    let mut text = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut text);
    print_bytes(&text)
}

/// Prints the man page (roff) of `cmd`.
pub fn print_man(cmd: clap::Command) -> Result<bool, String> {
    let mut text = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut text)
        .map_err(|e| e.to_string())?;
    print_bytes(&text)
}

fn print_bytes(b: &[u8]) -> Result<bool, String> {
    let mut out = std::io::stdout().lock();
    out.write_all(b)
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))?;
    Ok(true)
}
