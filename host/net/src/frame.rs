//! The wire format: every frame is a little-endian `u32` length, then a kind byte and
//! its fields in the snapshot codec (`eddy_core::state::Encoder`). Data frames carry a
//! [`Message`] exactly as a checkpoint stores in-flight data.

use eddy_core::exec::channel::Message;
use eddy_core::state::{Decoder, Encoder, StateError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Frames larger than this are refused: a peer sending one is broken or hostile.
pub const MAX_FRAME: usize = 1 << 30;

/// One unit on a connection between two workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// The first frame each side sends: who it is, and which incarnation of it.
    Hello {
        /// The worker's identity.
        peer: String,
        /// Distinguishes a restarted worker from the one it replaces.
        incarnation: u64,
    },
    /// A sender is ready to send on `channel`; the receiver answers with credit.
    Open {
        /// The channel.
        channel: u64,
    },
    /// The receiver has room for `bytes` more on `channel`.
    Credit {
        /// The channel.
        channel: u64,
        /// Bytes granted.
        bytes: u64,
    },
    /// The sender waits with `bytes` ready to send on `channel` and no credit.
    Backlog {
        /// The channel.
        channel: u64,
        /// Bytes waiting.
        bytes: u64,
    },
    /// A message on `channel`, sent with credit (batches) or in band (control).
    Data {
        /// The channel.
        channel: u64,
        /// The message.
        message: Message,
    },
    /// Puts unaligned barrier `id` ahead of everything in flight on `channel`.
    Overtake {
        /// The channel.
        channel: u64,
        /// The checkpoint.
        id: u64,
    },
    /// What the barrier of an [`Frame::Overtake`] overtook, as copies.
    Overtaken {
        /// The channel.
        channel: u64,
        /// The in-flight messages, oldest first.
        messages: Vec<Message>,
    },
    /// A message between the checkpoint coordinators of one attempt's parts.
    Control {
        /// The attempt.
        attempt: u64,
        /// The message, as the core encodes it.
        body: Vec<u8>,
    },
}

/// A frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The connection failed or ended mid-frame.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The frame announces more bytes than any frame may hold.
    #[error("a frame of {0} bytes is larger than the limit of {MAX_FRAME}")]
    TooLarge(usize),
    /// The frame's bytes are not a frame.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

impl From<StateError> for FrameError {
    fn from(e: StateError) -> Self {
        FrameError::Malformed(e.0)
    }
}

impl Frame {
    /// The frame's bytes, length prefix included.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        match self {
            Frame::Hello { peer, incarnation } => {
                e.u8(0).bytes(peer.as_bytes()).u64(*incarnation);
            }
            Frame::Open { channel } => {
                e.u8(1).u64(*channel);
            }
            Frame::Credit { channel, bytes } => {
                e.u8(2).u64(*channel).u64(*bytes);
            }
            Frame::Backlog { channel, bytes } => {
                e.u8(3).u64(*channel).u64(*bytes);
            }
            Frame::Data { channel, message } => {
                e.u8(4).u64(*channel);
                message.encode(&mut e);
            }
            Frame::Overtake { channel, id } => {
                e.u8(5).u64(*channel).u64(*id);
            }
            Frame::Overtaken { channel, messages } => {
                e.u8(6).u64(*channel).count(messages.len());
                for m in messages {
                    m.encode(&mut e);
                }
            }
            Frame::Control { attempt, body } => {
                e.u8(7).u64(*attempt).bytes(body);
            }
        }
        let body = e.finish();
        let mut out = Vec::with_capacity(4 + body.len());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Reads a frame body (without its length prefix).
    pub fn decode(body: &[u8]) -> Result<Frame, FrameError> {
        let mut d = Decoder::new(body);
        let frame = match d.u8()? {
            0 => Frame::Hello {
                peer: d.str()?.to_owned(),
                incarnation: d.u64()?,
            },
            1 => Frame::Open { channel: d.u64()? },
            2 => Frame::Credit {
                channel: d.u64()?,
                bytes: d.u64()?,
            },
            3 => Frame::Backlog {
                channel: d.u64()?,
                bytes: d.u64()?,
            },
            4 => Frame::Data {
                channel: d.u64()?,
                message: Message::decode(&mut d)?,
            },
            5 => Frame::Overtake {
                channel: d.u64()?,
                id: d.u64()?,
            },
            6 => {
                let channel = d.u64()?;
                let messages = (0..d.count()?)
                    .map(|_| Message::decode(&mut d))
                    .collect::<Result<_, _>>()?;
                Frame::Overtaken { channel, messages }
            }
            7 => Frame::Control {
                attempt: d.u64()?,
                body: d.bytes()?.to_vec(),
            },
            kind => return Err(FrameError::Malformed(format!("unknown frame kind {kind}"))),
        };
        d.end()?;
        Ok(frame)
    }

    /// Reads the next frame; `None` when the peer closed the connection between frames.
    pub async fn read(input: &mut (impl AsyncRead + Unpin)) -> Result<Option<Frame>, FrameError> {
        let mut len = [0u8; 4];
        match input.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        let mut body = vec![0u8; len];
        input.read_exact(&mut body).await?;
        Frame::decode(&body).map(Some)
    }

    /// Writes the frame (not flushed).
    pub async fn write(&self, output: &mut (impl AsyncWrite + Unpin)) -> std::io::Result<()> {
        output.write_all(&self.encode()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_core::Batch;

    fn batch(values: &[&str]) -> Batch {
        let mut b = Batch::default();
        for v in values {
            b.push_value(v.as_bytes()).expect("fits");
        }
        b
    }

    #[test]
    fn every_frame_reads_back_as_written() {
        let frames = [
            Frame::Hello {
                peer: "worker-1".into(),
                incarnation: 7,
            },
            Frame::Open { channel: 3 },
            Frame::Credit {
                channel: 3,
                bytes: 1 << 20,
            },
            Frame::Backlog {
                channel: 3,
                bytes: 512,
            },
            Frame::Data {
                channel: 3,
                message: Message::Data(batch(&["{\"a\":1}", "{\"a\":2}"])),
            },
            Frame::Data {
                channel: 9,
                message: Message::Watermark(-5),
            },
            Frame::Overtake { channel: 3, id: 4 },
            Frame::Overtaken {
                channel: 3,
                messages: vec![Message::Data(batch(&["x"])), Message::EndOfInput],
            },
            Frame::Control {
                attempt: 12,
                body: vec![1, 2, 3],
            },
        ];
        for frame in frames {
            let bytes = frame.encode();
            let len = u32::from_le_bytes(bytes[..4].try_into().expect("prefix")) as usize;
            assert_eq!(len, bytes.len() - 4);
            assert_eq!(Frame::decode(&bytes[4..]).expect("decodes"), frame);
        }
    }

    #[test]
    fn truncated_unknown_and_oversized_frames_are_errors() {
        let bytes = Frame::Credit {
            channel: 1,
            bytes: 2,
        }
        .encode();
        let e = Frame::decode(&bytes[4..bytes.len() - 1]).unwrap_err();
        assert!(matches!(e, FrameError::Malformed(_)), "{e}");
        let e = Frame::decode(&[42]).unwrap_err();
        assert!(e.to_string().contains("unknown frame kind 42"), "{e}");
        let mut trailing = bytes[4..].to_vec();
        trailing.push(0);
        assert!(Frame::decode(&trailing).is_err(), "trailing bytes");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let huge = ((MAX_FRAME + 1) as u32).to_le_bytes();
        let e = runtime.block_on(Frame::read(&mut &huge[..])).unwrap_err();
        assert!(matches!(e, FrameError::TooLarge(_)), "{e}");
        let none = runtime
            .block_on(Frame::read(&mut &[][..]))
            .expect("clean end");
        assert_eq!(none, None);
    }
}
