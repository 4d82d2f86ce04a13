//! The `v5.channel.k8s.io` WebSocket framing kubectl ≥1.30 speaks for exec and attach: every
//! binary message is one channel byte and its data (0 stdin, 1 stdout, 2 stderr, 3 the final
//! `metav1.Status`, 4 terminal resize, 255 "close channel N" in v5); `v4` lacks the close
//! message, and the first version (`channel.k8s.io`) tells only a failure's text on channel 3.
//! Pure functions, so the protocol is tested without sockets.

use serde::Deserialize;
use serde_json::{json, Value};

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5: a message `[255, ch]` says the peer will send nothing more on channel `ch`.
pub const CLOSE: u8 = 255;

/// The WebSocket subprotocol for exec and attach.
pub const PROTOCOL_V5: &str = "v5.channel.k8s.io";
/// The same framing without the close message: what the client libraries' port-forward and
/// SPDY clients (kubectl ≤1.29, as a stream protocol) speak.
pub const PROTOCOL_V4: &str = "v4.channel.k8s.io";
/// The first version (also what a WebSocket without a subprotocol gets): the same channels,
/// but channel 3 carries an error's text, and nothing when the command succeeded.
pub const PROTOCOL_V1: &str = "channel.k8s.io";

/// How the end of a session is told on channel 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFormat {
    /// v4 and v5: the `metav1.Status` as JSON, success included.
    Json,
    /// v1: a failure's message as text; a success sends nothing (kubelet's `v1WriteStatus`).
    Text,
}

impl StatusFormat {
    /// The format of the WebSocket subprotocol the client and kubelet agreed on (`None`: the
    /// client offered none).
    pub fn of_protocol(protocol: Option<&str>) -> Self {
        match protocol {
            Some(PROTOCOL_V5 | PROTOCOL_V4) => StatusFormat::Json,
            _ => StatusFormat::Text,
        }
    }

    /// What goes on channel 3 for `status`; `None`: nothing.
    pub fn encode(self, status: &Value) -> Option<Vec<u8>> {
        match self {
            StatusFormat::Json => Some(status.to_string().into_bytes()),
            StatusFormat::Text => {
                if status.get("status").and_then(Value::as_str) == Some("Success") {
                    return None;
                }
                let message = status.get("message").and_then(Value::as_str).unwrap_or("");
                Some(message.as_bytes().to_vec())
            }
        }
    }
}

/// What one client message means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound<'a> {
    Stdin(&'a [u8]),
    Resize {
        width: u16,
        height: u16,
    },
    CloseStdin,
    /// An empty message, a bad resize or a channel we do not read: ignored, as kubelet does.
    Ignored,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TerminalSize {
    width: u16,
    height: u16,
}

/// Decodes one binary message from the client.
pub fn decode(msg: &[u8]) -> Inbound<'_> {
    let Some((&ch, data)) = msg.split_first() else {
        return Inbound::Ignored;
    };
    match ch {
        STDIN => Inbound::Stdin(data),
        // kubectl sends `{"Width":100,"Height":30}` and a newline; several may arrive in one
        // message, the last wins.
        RESIZE => data
            .split(|b| *b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .rev()
            .find_map(|l| serde_json::from_slice::<TerminalSize>(l).ok())
            .map_or(Inbound::Ignored, |s| Inbound::Resize {
                width: s.width,
                height: s.height,
            }),
        CLOSE if data.first() == Some(&STDIN) => Inbound::CloseStdin,
        _ => Inbound::Ignored,
    }
}

/// One outbound message: the channel byte, then the data.
pub fn frame(ch: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(ch);
    out.extend_from_slice(data);
    out
}

/// The Status kubelet ends an exec with: Success, or NonZeroExitCode with the code as the
/// `ExitCode` cause, from which kubectl prints `command terminated with exit code N` and
/// exits with N.
pub fn exit_status(exit_code: i32) -> Value {
    if exit_code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command, exit code {exit_code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": exit_code.to_string()}]},
    })
}

/// A Status for an exec that could not run at all (kubectl prints its message).
pub fn error_status(message: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "code": 500,
        "details": {"causes": [{"message": message}]},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_tells_only_failures_and_as_text() {
        let v1 = StatusFormat::of_protocol(Some(PROTOCOL_V1));
        assert_eq!(v1, StatusFormat::of_protocol(None));
        assert_eq!(v1.encode(&exit_status(0)), None);
        assert_eq!(
            v1.encode(&exit_status(3)).as_deref(),
            Some(&b"command terminated with non-zero exit code: error executing command, exit code 3"[..])
        );
        let v5 = StatusFormat::of_protocol(Some(PROTOCOL_V5));
        assert_eq!(
            v5.encode(&exit_status(0)),
            Some(exit_status(0).to_string().into_bytes())
        );
    }

    #[test]
    fn decodes_client_messages() {
        assert_eq!(decode(b"\x00ls\n"), Inbound::Stdin(b"ls\n"));
        assert_eq!(
            decode(b"\x04{\"Width\":100,\"Height\":30}\n"),
            Inbound::Resize {
                width: 100,
                height: 30
            }
        );
        assert_eq!(
            decode(b"\x04{\"Width\":81,\"Height\":25}\n{\"Width\":80,\"Height\":24}\n"),
            Inbound::Resize {
                width: 80,
                height: 24
            }
        );
        assert_eq!(decode(b"\x04{bad"), Inbound::Ignored);
        assert_eq!(decode(&[255, 0]), Inbound::CloseStdin);
        assert_eq!(decode(&[255, 1]), Inbound::Ignored);
        assert_eq!(decode(b""), Inbound::Ignored);
        assert_eq!(decode(b"\x01out"), Inbound::Ignored);
    }

    #[test]
    fn frames_and_statuses() {
        assert_eq!(frame(STDOUT, b"hi"), b"\x01hi");
        assert_eq!(exit_status(0)["status"], "Success");
        let s = exit_status(7);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "7");
        assert_eq!(error_status("boom")["message"], "boom");
    }
}
