//! A sandboxed stage's output into its log file, up to a size.
//!
//! The stage writes into a pipe, not into the file: a build printing without end (`yes` in
//! `build()`) would otherwise fill the builder's disk for as long as its wall-clock limit
//! allows. Past the limit the output is read and dropped, so that the build never blocks on a
//! full pipe, and the log says where it was cut. The master reads no more than its own limit
//! of a log either (`[builds] max_log_size`).

use std::fs::File;
use std::io::{PipeReader, PipeWriter, Read as _, Write as _};
use std::time::Duration;

use tokio::task::JoinHandle;

/// The copy of one stage's output, running until every writer has closed the pipe.
pub struct CappedLog {
    copy: JoinHandle<std::io::Result<Copied>>,
}

/// What the stage wrote, and what of it the log kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Copied {
    pub written: u64,
    pub kept: u64,
}

impl Copied {
    pub fn was_cut(&self) -> bool {
        self.written > self.kept
    }
}

impl CappedLog {
    /// A pipe whose writer the stage gets (as its stdout and stderr), copied into `log` up to
    /// `limit` bytes.
    pub fn start(log: File, limit: u64) -> std::io::Result<(PipeWriter, CappedLog)> {
        let (reader, writer) = std::io::pipe()?;
        let copy = tokio::task::spawn_blocking(move || copy(reader, log, limit));
        Ok((writer, CappedLog { copy }))
    }

    /// Waits for the copy to end (every process that held the pipe is gone: the stage's
    /// namespace has died), at most `wait`; an error says what went wrong with the log.
    pub async fn finish(self, wait: Duration) -> Result<Copied, String> {
        match tokio::time::timeout(wait, self.copy).await {
            Ok(Ok(Ok(copied))) => Ok(copied),
            Ok(Ok(Err(e))) => Err(format!("writing the log: {e}")),
            Ok(Err(e)) => Err(format!("copying the log: {e}")),
            Err(_) => Err(format!(
                "the stage's output was still open {} s after it ended",
                wait.as_secs()
            )),
        }
    }
}

fn copy(mut reader: PipeReader, mut log: File, limit: u64) -> std::io::Result<Copied> {
    let mut buf = vec![0u8; 64 << 10];
    let mut copied = Copied {
        written: 0,
        kept: 0,
    };
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(copied),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let room = usize::try_from(limit - copied.kept).unwrap_or(usize::MAX);
        let keep = n.min(room);
        if keep > 0 {
            log.write_all(&buf[..keep])?;
            copied.kept += keep as u64;
            if copied.kept == limit {
                writeln!(
                    log,
                    "\n[quarters: the log is cut here, at its limit of {limit} bytes; the stage went on]"
                )?;
            }
        }
        copied.written += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_past_the_limit_is_drained_and_dropped_and_the_cut_is_said() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("build.log");
        let (mut writer, log) = CappedLog::start(File::create(&path).unwrap(), 100 << 10).unwrap();
        // A writer that never stops until it has written ten times the limit: it must not
        // block on a full pipe.
        let writing = std::thread::spawn(move || {
            for _ in 0..16 {
                writer.write_all(&[b'y'; 64 << 10]).unwrap();
            }
        });
        writing.join().unwrap();
        let copied = log.finish(Duration::from_secs(5)).await.unwrap();
        assert_eq!(copied.written, 16 * (64 << 10));
        assert_eq!(copied.kept, 100 << 10);
        assert!(copied.was_cut());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("yyyy"));
        assert!(
            text.ends_with("its limit of 102400 bytes; the stage went on]\n"),
            "{}",
            &text[text.len() - 100..]
        );
        assert!(text.len() < (100 << 10) + 200);
    }

    #[tokio::test]
    async fn output_within_the_limit_is_kept_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("build.log");
        let (mut writer, log) = CappedLog::start(File::create(&path).unwrap(), 1 << 20).unwrap();
        writer.write_all(b"hello\n").unwrap();
        drop(writer);
        let copied = log.finish(Duration::from_secs(5)).await.unwrap();
        assert!(!copied.was_cut());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "hello\n");
    }
}
