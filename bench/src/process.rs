//! Child processes the bench starts (the service, uvicorn, Azurite): their output captured line
//! by line (the latest lines kept for error messages), their memory read from `/proc`, and the
//! process killed when dropped.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEPT_LINES: usize = 400;

pub struct Child {
    child: std::process::Child,
    lines: Arc<Mutex<VecDeque<String>>>,
}

/// Resident memory of a process, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the peak resident size so far.
    pub peak_kib: u64,
}

impl Child {
    /// Starts `command` with its output captured and no standard input.
    pub fn spawn(mut command: Command) -> Result<Child, String> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {program}: {e}"))?;
        let lines = Arc::new(Mutex::new(VecDeque::new()));
        let stdout = child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        let stderr = child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        for stream in [stdout, stderr].into_iter().flatten() {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut kept = lines.lock().unwrap();
                    if kept.len() == KEPT_LINES {
                        kept.pop_front();
                    }
                    kept.push_back(line);
                }
            });
        }
        Ok(Child { child, lines })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (polling, bounded) for an output line containing `needle`; returns it.
    pub async fn wait_for_line(&self, needle: &str, within: Duration) -> Result<String, String> {
        let deadline = Instant::now() + within;
        loop {
            let found = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
                .cloned();
            if let Some(line) = found {
                return Ok(line);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no line with '{needle}' within {within:?}; output:\n{}",
                    self.tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The latest captured lines, for error messages.
    pub fn tail(&self) -> String {
        let lines = self.lines.lock().unwrap();
        let skip = lines.len().saturating_sub(30);
        lines
            .iter()
            .skip(skip)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn memory(&self) -> Result<Memory, String> {
        memory_of(self.pid())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn memory_of(pid: u32) -> Result<Memory, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read the memory of process {pid}: {e}"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .ok_or_else(|| format!("process {pid} has no {name} in /proc"))
    };
    Ok(Memory {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn captures_output_and_reads_memory() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo starting; echo 'listening on x' >&2; sleep 5"]);
        let child = Child::spawn(command).unwrap();
        let line = child
            .wait_for_line("listening", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(line, "listening on x");
        assert!(child.tail().contains("starting"));
        let memory = child.memory().unwrap();
        assert!(memory.rss_kib > 0 && memory.peak_kib >= memory.rss_kib);
        let missing = child
            .wait_for_line("never printed", Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(missing.contains("starting"), "{missing}");
    }
}
