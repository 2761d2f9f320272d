//! Regenerates the device's CSP catalogue from a folder of Microsoft's CSP DDF v2 files:
//! `cargo run -p fake-windows-client --example ddf-convert -- <ddf-dir> <out-file> <edition>`.

use fake_windows_client::ddf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, out, edition] = args.as_slice() else {
        eprintln!("usage: ddf-convert <ddf-dir> <out-file> <edition>");
        return ExitCode::from(2);
    };
    let mut names: Vec<_> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("xml")))
            .collect(),
        Err(e) => {
            eprintln!("{dir}: {e}");
            return ExitCode::FAILURE;
        }
    };
    names.sort();
    let mut files = Vec::new();
    for p in &names {
        let converted = std::fs::read_to_string(p)
            .map_err(|e| e.to_string())
            .and_then(|x| ddf::convert(&x).map_err(|e| e.to_string()));
        match converted {
            Ok(v) => files.push(v),
            Err(e) => {
                eprintln!("{}: {e}", p.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let (entries, counts) = ddf::merge(files);
    let text = ddf::render(edition, &entries, &counts);
    if let Err(e) = std::fs::write(out, &text) {
        eprintln!("{out}: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "{} files, {} nodes in {} CSPs, {} bytes",
        names.len(),
        entries.len(),
        counts.len(),
        text.len()
    );
    ExitCode::SUCCESS
}
