//! Small binary fixtures (base64) the conformance suite expects in image, audio and blob contents.

/// A 1×1 red RGBA PNG.
pub const RED_PIXEL_PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";

/// 16 samples of 8 kHz, 8-bit mono silence: the smallest WAV players accept.
pub const SILENT_WAV: &str =
    "UklGRjQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YRAAAACAgICAgICAgICAgICAgICA";

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn fixtures_decode_to_their_formats() {
        let engine = base64::engine::general_purpose::STANDARD;
        let png = engine.decode(RED_PIXEL_PNG).expect("base64");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let wav = engine.decode(SILENT_WAV).expect("base64");
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(&wav[8..12], b"WAVE");
        let riff_len = u32::from_le_bytes([wav[4], wav[5], wav[6], wav[7]]) as usize;
        assert_eq!(riff_len + 8, wav.len());
    }
}
