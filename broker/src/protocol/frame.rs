//! Kafka framing: every request is a big-endian i32 length followed by that many bytes.
//! A length that is negative or above the configured limit is refused before any of the body
//! is buffered, so an oversized or garbage frame costs the node nothing.

use bytes::{Buf, Bytes, BytesMut};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame length {0} is negative")]
    NegativeLength(i32),
    #[error("frame of {size} bytes exceeds the {limit}-byte request limit")]
    TooLarge { size: usize, limit: usize },
}

/// Splits one complete frame body off the front of `buffer`, if it holds one.
/// `Ok(None)` means more bytes are needed; `Err` means the stream is not Kafka and the
/// connection must be closed.
pub fn split_frame(buffer: &mut BytesMut, limit: usize) -> Result<Option<Bytes>, FrameError> {
    let Some(prefix) = buffer.get(..4) else {
        return Ok(None);
    };
    let mut length_bytes = [0u8; 4];
    length_bytes.copy_from_slice(prefix);
    let length = i32::from_be_bytes(length_bytes);
    let size = usize::try_from(length).map_err(|_| FrameError::NegativeLength(length))?;
    if size > limit {
        return Err(FrameError::TooLarge { size, limit });
    }
    if buffer.len() < 4 + size {
        buffer.reserve(4 + size - buffer.len());
        return Ok(None);
    }
    buffer.advance(4);
    Ok(Some(buffer.split_to(size).freeze()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn waits_for_a_whole_frame_then_splits_it() {
        let mut buffer = BytesMut::from(&[0, 0, 0, 3, 1, 2][..]);
        assert_eq!(split_frame(&mut buffer, 100), Ok(None));
        buffer.extend_from_slice(&[3, 0, 0]);
        assert_eq!(
            split_frame(&mut buffer, 100).unwrap().unwrap().as_ref(),
            &[1, 2, 3]
        );
        assert_eq!(buffer.as_ref(), &[0, 0]);
    }

    #[test]
    fn refuses_oversized_and_negative_lengths() {
        let mut huge = BytesMut::from(&0x4000_0000i32.to_be_bytes()[..]);
        assert!(matches!(
            split_frame(&mut huge, 1024),
            Err(FrameError::TooLarge { .. })
        ));
        let mut negative = BytesMut::from(&(-5i32).to_be_bytes()[..]);
        assert_eq!(
            split_frame(&mut negative, 1024),
            Err(FrameError::NegativeLength(-5))
        );
    }
}
