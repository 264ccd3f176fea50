//! Build history from elsewhere: a CSV with `pkgname` and `duration` (milliseconds) columns, as
//! pkgsrc's bulk-build reports write it. The master seeds its expected durations from it until
//! its own accepted builds say better; the simulator reads it for the builds it pretends to run.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

/// Why a history file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: String, message: String },
}

/// `pkgname -> duration (ms)` from a history CSV. Rows whose duration is not a number (a build
/// that failed before timing, say) are skipped; a later row for the same package wins.
pub fn read(path: &Path) -> Result<HashMap<String, u64>, HistoryError> {
    let text = fs::read_to_string(path).map_err(|source| HistoryError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text).map_err(|message| HistoryError::Format {
        path: path.display().to_string(),
        message,
    })
}

fn parse(text: &str) -> Result<HashMap<String, u64>, String> {
    // The files are plain comma-separated values without quoting (pkgsrc writes no commas into
    // these fields), so splitting on commas is the whole format; a CSV crate would add nothing.
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .collect();
    let column = |name: &str| header.iter().position(|h| *h == name);
    let (Some(name_col), Some(duration_col)) = (column("pkgname"), column("duration")) else {
        return Err("the header needs `pkgname` and `duration` columns".to_owned());
    };
    let mut out = HashMap::new();
    for (n, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        let Some(name) = cols.get(name_col).filter(|n| !n.is_empty()) else {
            return Err(format!("line {}: no pkgname", n + 2));
        };
        if let Some(ms) = cols.get(duration_col).and_then(|d| d.parse::<u64>().ok()) {
            out.insert((*name).to_owned(), ms);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_found_by_name_and_untimed_rows_skipped() {
        let text = "timestamp,pkgname,outcome,duration\n1,foo-1.0,success,1500\n2,bar-2,failed,-\n3,foo-1.0,success,2500\n";
        let history = parse(text).unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history["foo-1.0"], 2500);
    }

    #[test]
    fn a_file_without_the_columns_is_refused() {
        let err = parse("name,time\nfoo,1\n").unwrap_err();
        assert!(err.contains("`pkgname` and `duration`"), "{err}");
        let err = parse("pkgname,duration\n,5\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
    }
}
