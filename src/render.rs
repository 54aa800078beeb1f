//! MIME to displayable text, and envelopes out of raw messages (mail-parser).

use crate::backend::Envelope;

/// Parse the envelope of a raw message.
pub fn envelope_of(raw: &[u8]) -> Envelope {
    let _ = raw;
    Envelope::default()
}
