//! The request log: every request the emulated services received, with the answer's status, so
//! tests and benchmarks can count calls (`GET /_emulator/requests`).

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoggedRequest {
    pub seq: u64,
    pub service: &'static str,
    pub method: String,
    pub host: String,
    pub path: String,
    pub query: String,
    pub status: u16,
    /// Set when an injected fault shaped the answer.
    pub fault: bool,
}

#[derive(Debug, Default)]
pub struct RequestLog {
    next: u64,
    entries: Vec<LoggedRequest>,
}

impl RequestLog {
    pub fn push(&mut self, mut entry: LoggedRequest) {
        self.next += 1;
        entry.seq = self.next;
        self.entries.push(entry);
    }

    pub fn entries(&self) -> &[LoggedRequest] {
        &self.entries
    }

    /// The sequence number of the latest request (0 before the first); `since=` takes it.
    pub fn last(&self) -> u64 {
        self.next
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}
