//! The master's sources: scanners built from the config, and `quarters-master scan`.

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::Context;
use quarters_parsers::Scanner;
use quarters_parsers::scan::PackageError;
use serde_json::json;

use crate::config::MasterConfig;

/// One scanner per configured source, each with its cache in the state directory.
pub fn scanners(config: &MasterConfig) -> anyhow::Result<Vec<Scanner>> {
    let base = config.path.parent().unwrap_or(Path::new("."));
    config
        .sources
        .iter()
        .map(|spec| {
            let source = quarters_parsers::open(spec, base)
                .with_context(|| format!("opening source {}", spec.name))?;
            let cache = config
                .state_dir
                .join("scan")
                .join(format!("{}.json", spec.name));
            Ok(Scanner::new(
                &spec.name,
                source,
                Some(cache),
                config.evaluation.clone(),
            ))
        })
        .collect()
}

/// Scans every source and prints every package found, with its metadata or its error.
/// Returns whether every source could be read; package errors are printed, not failures.
pub fn print_scan(
    config: &MasterConfig,
    as_json: bool,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let mut all_read = true;
    let mut report = Vec::new();
    for scanner in scanners(config)? {
        // On a terminal, one line redrawn in place; otherwise the plain log lines.
        let mut scanner = if std::io::stderr().is_terminal() {
            let observer = terminal_progress(scanner.name());
            scanner.with_progress(observer)
        } else {
            scanner
        };
        let polled = scanner.poll();
        if let Err(e) = &polled {
            all_read = false;
            if !as_json {
                writeln!(out, "source {}: cannot be read: {e}", scanner.name())?;
            }
        }
        if as_json {
            let packages: Vec<_> = scanner
                .packages()
                .iter()
                .map(|(path, p)| match &p.result {
                    Ok(meta) => json!({"path": path, "content_id": p.content_id, "metadata": meta}),
                    Err(e) => {
                        json!({"path": path, "content_id": p.content_id, "error": error_json(e)})
                    }
                })
                .collect();
            report.push(json!({
                "source": scanner.name(),
                "kind": scanner.source().kind(),
                "revision": scanner.revision(),
                "error": polled.as_ref().err().map(ToString::to_string),
                "packages": packages,
            }));
            continue;
        }
        let errors = scanner
            .packages()
            .values()
            .filter(|p| p.result.is_err())
            .count();
        writeln!(
            out,
            "source {} ({}) at revision {}: {} packages, {} with errors",
            scanner.name(),
            scanner.source().kind(),
            scanner
                .revision()
                .map_or_else(|| "(none)".to_owned(), ToString::to_string),
            scanner.packages().len(),
            errors
        )?;
        for (path, p) in scanner.packages() {
            match &p.result {
                Ok(meta) => writeln!(
                    out,
                    "  {path:<30} {:<16} {:<14} {}{}",
                    meta.version,
                    meta.arch.join(","),
                    meta.pkgnames.join(" "),
                    meta.packager
                        .as_deref()
                        .map(|p| format!("  ({p})"))
                        .unwrap_or_default()
                )?,
                Err(e) => writeln!(
                    out,
                    "  {path:<30} ERROR {}",
                    e.to_string().replace('\n', "\n      ")
                )?,
            }
        }
    }
    if as_json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    }
    Ok(all_read)
}

/// Draws an evaluation's progress on one terminal line, redrawn every tick and ended by a
/// newline when the run has finished.
fn terminal_progress(source: &str) -> quarters_parsers::evaluate::Observer {
    let source = source.to_owned();
    std::sync::Arc::new(move |p: &quarters_parsers::evaluate::Progress| {
        let mut err = std::io::stderr().lock();
        // `\r` and "erase line" rather than a cursor library: one line is all there is.
        let _ = write!(err, "\r\x1b[2Ksource {source}: {p}");
        if p.finished() {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    })
}

fn error_json(e: &PackageError) -> serde_json::Value {
    match e {
        PackageError::Metadata(m) => json!({"kind": "metadata", "message": m}),
        PackageError::Source(m) => json!({"kind": "source", "message": m}),
    }
}
