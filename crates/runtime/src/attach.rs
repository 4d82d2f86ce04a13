//! The caller's side of an attach session (CRI `Attach`): the shim copies the container's
//! output into a SEQPACKET socket, one tagged chunk per message, and the caller writes stdin
//! on the fd it got with the session; this type hides the tags.

use std::io;

use shim::protocol::{ATTACH_CLOSE_STDIN, ATTACH_STDERR, ATTACH_STDOUT};

use crate::stdio::ExecIo;

/// An attach session on a container's main process. Dropping it ends the session (with
/// `stdinOnce`, the first session's end closes the process's stdin).
pub struct AttachSession {
    pub(crate) output: ExecIo,
    /// Where the caller writes the process's stdin (`None`: the container has no stdin or it
    /// was not asked for). With `tty` this is the terminal, which also resizes.
    pub input: Option<ExecIo>,
    /// The container has a terminal: its output is one stream.
    pub tty: bool,
}

/// Which stream a chunk of output came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachOutput {
    Stdout,
    Stderr,
}

/// Room for the largest chunk the shim sends (its read size plus the tag).
pub const MAX_CHUNK: usize = 65536 + 1;

impl AttachSession {
    /// The next chunk of output into `buf` (at least [`MAX_CHUNK`] long, or chunks are cut):
    /// its stream and length, or `None` once the process has exited.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<Option<(AttachOutput, usize)>> {
        loop {
            let n = self.output.read(buf).await?;
            let Some(&tag) = buf[..n].first() else {
                return Ok(None);
            };
            let stream = match tag {
                ATTACH_STDOUT => AttachOutput::Stdout,
                ATTACH_STDERR => AttachOutput::Stderr,
                _ => continue,
            };
            buf.copy_within(1..n, 0);
            return Ok(Some((stream, n - 1)));
        }
    }

    /// Tells the shim the caller's stdin ended (drop a pipe `input` first).
    pub async fn close_stdin(&self) -> io::Result<()> {
        self.output.write_all(&[ATTACH_CLOSE_STDIN]).await
    }
}
