//! The probe frame, the same over UDP and TCP: 40 bytes, big-endian. The prober stamps its send
//! time; the answering agent stamps when it received the frame and when it sent it back, so the
//! prober subtracts the time the frame waited on the far host from the round trip. Each stamp is
//! on its own host's monotonic clock: only differences on one host are ever taken.
//!
//! ```text
//! 0      4   5    6      8      16          24             32             40
//! | TRPB | 1 | op | 0  0 | seq | sent (ns) | received (ns) | answered (ns) |
//! ```

/// The frame's length.
pub const FRAME: usize = 40;
const MAGIC: &[u8; 4] = b"TRPB";
const VERSION: u8 = 1;

/// Which way a frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Ask = 0,
    Answer = 1,
}

/// One probe frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub op: Op,
    pub seq: u64,
    /// The prober's clock when it sent the frame.
    pub sent_ns: u64,
    /// The answering agent's clock when the frame arrived there (0 in an `Ask`).
    pub received_ns: u64,
    /// The answering agent's clock when it sent the answer (0 in an `Ask`).
    pub answered_ns: u64,
}

/// Why bytes are not a probe frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a probe frame is {FRAME} bytes, got {0}")]
    Length(usize),
    #[error("not a Triad probe frame (bad magic)")]
    Magic,
    #[error("probe frame version {0}, this agent speaks {VERSION}")]
    Version(u8),
    #[error("unknown probe operation {0}")]
    Op(u8),
}

impl Frame {
    /// A question, sent at `sent_ns`.
    pub fn ask(seq: u64, sent_ns: u64) -> Frame {
        Frame { op: Op::Ask, seq, sent_ns, received_ns: 0, answered_ns: 0 }
    }

    /// The answer to this question.
    pub fn answer(self, received_ns: u64, answered_ns: u64) -> Frame {
        Frame { op: Op::Answer, received_ns, answered_ns, ..self }
    }

    /// How long the answering agent held it, in nanoseconds (0 if its stamps are backwards).
    pub fn held_ns(&self) -> u64 {
        self.answered_ns.saturating_sub(self.received_ns)
    }

    pub fn encode(&self) -> [u8; FRAME] {
        let mut b = [0u8; FRAME];
        b[..4].copy_from_slice(MAGIC);
        b[4] = VERSION;
        b[5] = self.op as u8;
        b[8..16].copy_from_slice(&self.seq.to_be_bytes());
        b[16..24].copy_from_slice(&self.sent_ns.to_be_bytes());
        b[24..32].copy_from_slice(&self.received_ns.to_be_bytes());
        b[32..40].copy_from_slice(&self.answered_ns.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Frame, FrameError> {
        if b.len() != FRAME {
            return Err(FrameError::Length(b.len()));
        }
        if &b[..4] != MAGIC {
            return Err(FrameError::Magic);
        }
        if b[4] != VERSION {
            return Err(FrameError::Version(b[4]));
        }
        let op = match b[5] {
            0 => Op::Ask,
            1 => Op::Answer,
            other => return Err(FrameError::Op(other)),
        };
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[at..at + 8]);
            u64::from_be_bytes(w)
        };
        Ok(Frame { op, seq: word(8), sent_ns: word(16), received_ns: word(24), answered_ns: word(32) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_round_trips_and_bad_bytes_are_refused() {
        let f = Frame::ask(7, 1_000).answer(5_000, 5_300);
        assert_eq!(Frame::decode(&f.encode()), Ok(f));
        assert_eq!(f.held_ns(), 300);
        let mut b = f.encode();
        assert_eq!(Frame::decode(&b[..39]), Err(FrameError::Length(39)));
        b[0] = b'X';
        assert_eq!(Frame::decode(&b), Err(FrameError::Magic));
        let mut b = f.encode();
        b[4] = 9;
        assert_eq!(Frame::decode(&b), Err(FrameError::Version(9)));
        b[4] = 1;
        b[5] = 7;
        assert_eq!(Frame::decode(&b), Err(FrameError::Op(7)));
    }

    #[test]
    fn backwards_stamps_count_as_no_hold() {
        assert_eq!(Frame::ask(1, 0).answer(10, 5).held_ns(), 0);
    }
}
