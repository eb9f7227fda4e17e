//! A child process whose stdout and stderr are captured line by line, killed when dropped.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Where a captured line came from. The Functions host logs stdout at Information and stderr at
/// Error level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<(Stream, String)>>>);

impl Lines {
    pub fn all(&self) -> Vec<(Stream, String)> {
        self.0.lock().unwrap().clone()
    }

    pub fn text(&self) -> String {
        self.all()
            .into_iter()
            .map(|(_, line)| line)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits (polling, bounded) until a line contains `needle`; returns that line.
    pub async fn wait_for(&self, needle: &str, within: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some((_, line)) = self.all().into_iter().find(|(_, l)| l.contains(needle)) {
                return Some(line);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub struct Process {
    pub child: Child,
    pub lines: Lines,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl Process {
    pub fn spawn(mut command: Command) -> std::io::Result<Process> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn()?;
        let lines = Lines::default();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut readers = Vec::new();
        for (stream, reader) in [
            (
                Stream::Stdout,
                Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            ),
            (Stream::Stderr, Box::new(stderr)),
        ] {
            let lines = lines.clone();
            readers.push(tokio::spawn(async move {
                let mut reader = BufReader::new(reader).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    if std::env::var_os("TEST_LOG").is_some() {
                        eprintln!("[{stream:?}] {line}");
                    }
                    lines.0.lock().unwrap().push((stream, line));
                }
            }));
        }
        Ok(Process {
            child,
            lines,
            readers,
        })
    }

    /// Waits for the process to exit and for all of its output to be read.
    pub async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        let status = self.child.wait().await?;
        for reader in self.readers.drain(..) {
            let _ = reader.await;
        }
        Ok(status)
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

/// The environment every spawned binary starts from: only what a process needs to run, so that a
/// developer's own settings cannot leak into a test.
pub fn clean_command(program: &std::path::Path) -> Command {
    let mut command = Command::new(program);
    command.env_clear();
    for name in ["PATH", "HOME", "TMPDIR"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command
}
