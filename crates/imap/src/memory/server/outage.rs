//! Fault: the server goes down, and sessions opened meanwhile cannot
//! reach it.

use super::Server;
use crate::ImapError;

/// The error of a session opened while the server is down.
pub(super) fn unreachable() -> ImapError {
    ImapError::Unreachable {
        addr: "memory".into(),
        source: std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "simulated server is down",
        ),
    }
}

impl Server {
    /// Fault: the server restarts slowly. Every open connection breaks
    /// (returns how many were alive), and the next `sessions` sessions
    /// opened fail every command with [`ImapError::Unreachable`]: as a
    /// login sent before the greeting does when its answer finds the
    /// server gone and the usual login cannot connect either. Sessions
    /// opened after those work.
    pub fn go_down(&mut self, sessions: u32) -> usize {
        self.down_for = sessions;
        self.kill_all()
    }
}
