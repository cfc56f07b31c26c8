//! The decoders' limits, shared by the image crate's path ([`super::decode`]) and the TIFF
//! variants it refuses ([`super::variants`]).

/// Guards against decompression bombs: images larger than this are refused before decoding.
pub const MAX_SIDE_PX: u32 = 20_000;
/// Largest decoded image (and largest allocation a decoder may make); converting it to RGB and
/// turning it upright can take up to twice as much again.
pub const MAX_DECODE_BYTES: u64 = 512 << 20;
