//! base64url as the Neuron writes and reads it: written without padding, read with or without.

use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// base64url without padding.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    ENGINE.encode(bytes)
}

/// Reads base64url, padded or not.
///
/// # Errors
/// The decoder's error when the text is not base64url.
pub fn decode(text: impl AsRef<[u8]>) -> Result<Vec<u8>, base64::DecodeError> {
    ENGINE.decode(text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips_and_accepts_padding() {
        let encoded = super::encode([0xfbu8, 0xff, 0x01, 0x02]);
        assert_eq!(encoded, "-_8BAg");
        assert_eq!(
            super::decode("-_8BAg==").ok(),
            Some(vec![0xfb, 0xff, 0x01, 0x02])
        );
        assert_eq!(
            super::decode(&encoded).ok(),
            Some(vec![0xfb, 0xff, 0x01, 0x02])
        );
        assert!(super::decode("+/8BAg").is_err());
    }
}
