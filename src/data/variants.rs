//! Valid image variants the `image` crate refuses, converted here from the raw samples its
//! format crates hand over: TIFFs in CIE L*a*b*, YCbCr, with a colour palette, in 1–4-bit or
//! floating-point grey or float RGB; GIFs without any colour table (shown in grey, as Pillow
//! does).
//!
//! `tiff` 0.11 refuses palette and Lab TIFFs outright, so their photometric tag is rewritten in
//! a copy of the file (to grey and RGB) and the samples are mapped here.

use std::io::Cursor;

use image::RgbImage;
use tiff::decoder::{Decoder, DecodingResult};
use tiff::tags::Tag;

use super::limits::{MAX_DECODE_BYTES, MAX_SIDE_PX};

const PHOTOMETRIC: u16 = 262;
const WHITE_IS_ZERO: u16 = 0;
const BLACK_IS_ZERO: u16 = 1;
const RGB: u16 = 2;
const PALETTE: u16 = 3;
const YCBCR: u16 = 6;
const CIELAB: u16 = 8;
const YCBCR_COEFFICIENTS: u16 = 529;

/// Decodes a TIFF of one of the variants above; `Err` says why not.
pub fn decode_tiff(bytes: &[u8]) -> Result<RgbImage, String> {
    let (photometric, at) = photometric_tag(bytes).ok_or("no photometric interpretation")?;
    match photometric {
        PALETTE => {
            let map = Decoder::new(Cursor::new(bytes))
                .and_then(|mut d| d.get_tag_u16_vec(Tag::ColorMap))
                .map_err(|e| e.to_string())?;
            let (w, h, bits, samples) = read(&patched(bytes, at, BLACK_IS_ZERO))?;
            let levels = 1usize << bits;
            if map.len() != 3 * levels {
                return Err("the colour map does not fit the bit depth".into());
            }
            let indices = unpack(&samples, w, h, bits)?;
            let pixels = indices.iter().flat_map(|&i| {
                let i = usize::from(i);
                [map[i], map[levels + i], map[2 * levels + i]].map(|v| (v >> 8) as u8)
            });
            image_from(w, h, pixels.collect())
        }
        CIELAB => {
            let (w, h, bits, samples) = read(&patched(bytes, at, RGB))?;
            let lab = match samples {
                DecodingResult::U8(v) if bits == 8 && v.len() == w * h * 3 => v,
                _ => return Err("only 8-bit CIE L*a*b* TIFFs are read".into()),
            };
            image_from(w, h, lab.chunks_exact(3).flat_map(lab_to_srgb).collect())
        }
        YCBCR => {
            let mut decoder = decoder(bytes)?;
            let coefficients = decoder
                .get_tag_f32_vec(Tag::Unknown(YCBCR_COEFFICIENTS))
                .ok()
                .filter(|c| c.len() == 3 && c.iter().all(|v| v.is_finite() && *v > 0.0))
                .map_or([0.299, 0.587, 0.114], |c| [c[0], c[1], c[2]]);
            let (w, h, _, samples) = read_with(&mut decoder)?;
            let ycc = match samples {
                DecodingResult::U8(v) if v.len() == w * h * 3 => v,
                _ => return Err("subsampled or non-8-bit YCbCr TIFFs are not read".into()),
            };
            let rgb = ycc
                .chunks_exact(3)
                .flat_map(|p| ycbcr_to_rgb(p, coefficients));
            image_from(w, h, rgb.collect())
        }
        WHITE_IS_ZERO | BLACK_IS_ZERO | RGB => {
            let (w, h, bits, samples) = read(bytes)?;
            let channels = if photometric == RGB { 3 } else { 1 };
            let mut values = match samples {
                DecodingResult::F32(v) => floats_to_u8(&v),
                DecodingResult::F64(v) => {
                    floats_to_u8(&v.iter().map(|&x| x as f32).collect::<Vec<_>>())
                }
                DecodingResult::U8(_) if channels == 1 && bits < 8 => {
                    let max = (1u16 << bits) - 1;
                    unpack(&samples, w, h, bits)?
                        .into_iter()
                        .map(|v| (u16::from(v) * 255 / max) as u8)
                        .collect()
                }
                _ => return Err("not a variant this reader converts".into()),
            };
            if values.len() != w * h * channels {
                return Err("the samples do not fill the image".into());
            }
            if photometric == WHITE_IS_ZERO {
                values.iter_mut().for_each(|v| *v = 255 - *v);
            }
            let rgb = if channels == 1 {
                values.iter().flat_map(|&v| [v, v, v]).collect()
            } else {
                values
            };
            image_from(w, h, rgb)
        }
        other => Err(format!("photometric interpretation {other} is not read")),
    }
}

fn decoder(bytes: &[u8]) -> Result<Decoder<Cursor<&[u8]>>, String> {
    let mut limits = tiff::decoder::Limits::default();
    limits.decoding_buffer_size = MAX_DECODE_BYTES as usize;
    Decoder::new(Cursor::new(bytes))
        .map(|d| d.with_limits(limits))
        .map_err(|e| e.to_string())
}

/// Width, height, bits per sample and the samples of the first image.
fn read(bytes: &[u8]) -> Result<(usize, usize, u8, DecodingResult), String> {
    read_with(&mut decoder(bytes)?)
}

fn read_with(
    decoder: &mut Decoder<Cursor<&[u8]>>,
) -> Result<(usize, usize, u8, DecodingResult), String> {
    let (w, h) = decoder.dimensions().map_err(|e| e.to_string())?;
    if w == 0 || h == 0 || w > MAX_SIDE_PX || h > MAX_SIDE_PX {
        return Err(format!("{w} x {h} pixels is outside the limits"));
    }
    if u64::from(w) * u64::from(h) * 3 > MAX_DECODE_BYTES {
        return Err(format!("{w} x {h} pixels is too large"));
    }
    let bits = match decoder.colortype().map_err(|e| e.to_string())? {
        tiff::ColorType::Gray(b) | tiff::ColorType::RGB(b) | tiff::ColorType::YCbCr(b) => b,
        other => return Err(format!("{other:?} samples are not read")),
    };
    let samples = decoder.read_image().map_err(|e| e.to_string())?;
    Ok((w as usize, h as usize, bits, samples))
}

/// Samples of `bits` (1, 2, 4 or 8) packed into bytes, rows padded to whole bytes.
fn unpack(samples: &DecodingResult, w: usize, h: usize, bits: u8) -> Result<Vec<u8>, String> {
    let DecodingResult::U8(bytes) = samples else {
        return Err("palette or grey samples wider than 8 bits are not read".into());
    };
    if !matches!(bits, 1 | 2 | 4 | 8) {
        return Err(format!("{bits}-bit samples are not read"));
    }
    let bits = usize::from(bits);
    let row_bytes = (w * bits).div_ceil(8);
    if bytes.len() < row_bytes * h {
        return Err("the samples do not fill the image".into());
    }
    let mask = ((1u16 << bits) - 1) as u8;
    let mut out = Vec::with_capacity(w * h);
    for row in bytes.chunks_exact(row_bytes).take(h) {
        out.extend((0..w).map(|x| {
            let bit = x * bits;
            (row[bit / 8] >> (8 - bits - bit % 8)) & mask
        }));
    }
    Ok(out)
}

/// Float samples in [0, 1] (most writers) or, when larger values occur, in [0, 255] (Pillow's
/// "F" images), clamped to 8 bits.
fn floats_to_u8(values: &[f32]) -> Vec<u8> {
    let max = values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0, f32::max);
    let scale = if max > 1.0 { 1.0 } else { 255.0 };
    values
        .iter()
        .map(|&v| {
            if v.is_finite() {
                (v * scale).round().clamp(0.0, 255.0) as u8
            } else {
                0
            }
        })
        .collect()
}

fn image_from(w: usize, h: usize, rgb: Vec<u8>) -> Result<RgbImage, String> {
    RgbImage::from_raw(w as u32, h as u32, rgb)
        .ok_or_else(|| "the samples do not fill the image".into())
}

/// JPEG/TIFF YCbCr (full range, centred chroma) to RGB with the given luma coefficients.
fn ycbcr_to_rgb(p: &[u8], [kr, kg, kb]: [f32; 3]) -> [u8; 3] {
    let y = f32::from(p[0]);
    let cb = f32::from(p[1]) - 128.0;
    let cr = f32::from(p[2]) - 128.0;
    let r = y + (2.0 - 2.0 * kr) * cr;
    let b = y + (2.0 - 2.0 * kb) * cb;
    let g = (y - kr * r - kb * b) / kg;
    [r, g, b].map(|v| v.round().clamp(0.0, 255.0) as u8)
}

/// 8-bit CIE L*a*b* (L scaled to 0–255, a and b signed) to sRGB, D50 white as TIFF defines it.
fn lab_to_srgb(p: &[u8]) -> [u8; 3] {
    let l = f32::from(p[0]) * 100.0 / 255.0;
    let a = f32::from(p[1] as i8);
    let b = f32::from(p[2] as i8);
    let fy = (l + 16.0) / 116.0;
    let (fx, fz) = (fy + a / 500.0, fy - b / 200.0);
    let f_inv = |t: f32| {
        if t > 6.0 / 29.0 {
            t * t * t
        } else {
            3.0 * (6.0f32 / 29.0).powi(2) * (t - 4.0 / 29.0)
        }
    };
    // D50 white, then Bradford-adapted XYZ(D50) -> linear sRGB (D65).
    let (x, y, z) = (0.9642 * f_inv(fx), f_inv(fy), 0.8249 * f_inv(fz));
    let r = 3.133_856 * x - 1.6168667 * y - 0.4906146 * z;
    let g = -0.9787684 * x + 1.9161415 * y + 0.0334540 * z;
    let bl = 0.0719453 * x - 0.2289914 * y + 1.4052427 * z;
    let gamma = |c: f32| {
        let c = c.clamp(0.0, 1.0);
        let v = if c <= 0.003_130_8 {
            12.92 * c
        } else {
            1.055 * c.powf(1.0 / 2.4) - 0.055
        };
        (v * 255.0).round() as u8
    };
    [gamma(r), gamma(g), gamma(bl)]
}

/// Largest text field (TIFF type ASCII) accepted in the first IFD: real files hold names and
/// dates there. The `tiff` crate would otherwise allocate what a hostile count says, and on
/// refusing prints a `dbg!` line of its own to stderr.
const MAX_TEXT_FIELD_BYTES: u64 = 1 << 20;

/// Refuses a TIFF whose first IFD announces a text field larger than
/// [`MAX_TEXT_FIELD_BYTES`] (classic and BigTIFF layouts).
pub fn check_tiff_text_fields(bytes: &[u8]) -> Result<(), String> {
    const ASCII: u16 = 2;
    let Some(ifd) = FirstIfd::parse(bytes) else {
        return Ok(());
    };
    match ifd
        .entries()
        .find(|e| e.kind == ASCII && e.count > MAX_TEXT_FIELD_BYTES)
    {
        Some(e) => Err(format!("a TIFF text field of {} bytes", e.count)),
        None => Ok(()),
    }
}

/// The first IFD's photometric interpretation and the byte offset of its value.
fn photometric_tag(bytes: &[u8]) -> Option<(u16, usize)> {
    let ifd = FirstIfd::parse(bytes)?;
    let entry = ifd.entries().find(|e| e.tag == PHOTOMETRIC)?;
    let value = u16::try_from(ifd.int(entry.value_at, 2)?).ok()?;
    Some((value, entry.value_at))
}

/// The first image file directory of a TIFF (classic or BigTIFF), read just far enough to list
/// its entries.
struct FirstIfd<'a> {
    bytes: &'a [u8],
    big_endian: bool,
    /// BigTIFF: 8-byte offsets and counts, 20-byte entries.
    big: bool,
    offset: usize,
}

/// One entry of an IFD: its tag, field type, value count, and where its value (or the offset
/// of its value) lies.
struct IfdEntry {
    tag: u16,
    kind: u16,
    count: u64,
    value_at: usize,
}

impl<'a> FirstIfd<'a> {
    fn parse(bytes: &'a [u8]) -> Option<Self> {
        let (big_endian, big) = match bytes.get(..4)? {
            b"II*\0" => (false, false),
            b"MM\0*" => (true, false),
            b"II+\0" => (false, true),
            b"MM\0+" => (true, true),
            _ => return None,
        };
        let mut ifd = Self {
            bytes,
            big_endian,
            big,
            offset: 0,
        };
        let offset = if big { ifd.int(8, 8) } else { ifd.int(4, 4) }?;
        ifd.offset = usize::try_from(offset).ok()?;
        Some(ifd)
    }

    /// The unsigned integer of `len` bytes at `at`, in the file's byte order.
    fn int(&self, at: usize, len: usize) -> Option<u64> {
        let field = self.bytes.get(at..at.checked_add(len)?)?;
        let ordered = |i: usize| {
            if self.big_endian {
                field[i]
            } else {
                field[len - 1 - i]
            }
        };
        Some((0..len).fold(0u64, |value, i| (value << 8) | u64::from(ordered(i))))
    }

    /// The entries, up to the first one the file cuts short.
    fn entries(&self) -> impl Iterator<Item = IfdEntry> + '_ {
        let (count_len, entry_len, field_len) = if self.big { (8, 20, 8) } else { (2, 12, 4) };
        let count = self
            .int(self.offset, count_len)
            .unwrap_or(0)
            .min(u64::from(u16::MAX));
        (0..count as usize).map_while(move |i| {
            let entry = self.offset.checked_add(count_len + entry_len * i)?;
            Some(IfdEntry {
                tag: u16::try_from(self.int(entry, 2)?).ok()?,
                kind: u16::try_from(self.int(entry + 2, 2)?).ok()?,
                count: self.int(entry + 4, field_len)?,
                value_at: entry + 4 + field_len,
            })
        })
    }
}

/// A copy of `bytes` with the photometric value at `at` set to `value`.
fn patched(bytes: &[u8], at: usize, value: u16) -> Vec<u8> {
    let mut copy = bytes.to_vec();
    let encoded = if copy.starts_with(b"MM") {
        value.to_be_bytes()
    } else {
        value.to_le_bytes()
    };
    copy[at..at + 2].copy_from_slice(&encoded);
    copy
}

/// A GIF without a global colour table, given a grey one (index i shows as grey level i): a
/// frame without a local table then decodes as Pillow shows it; one with a table is unchanged.
pub fn with_grey_palette(bytes: &[u8]) -> Option<Vec<u8>> {
    const SCREEN_DESCRIPTOR_END: usize = 13;
    const HAS_GLOBAL_TABLE: u8 = 0x80;
    let packed = *bytes.get(10)?;
    if !bytes.starts_with(b"GIF8") || packed & HAS_GLOBAL_TABLE != 0 {
        return None;
    }
    let mut out = bytes.get(..SCREEN_DESCRIPTOR_END)?.to_vec();
    // A 256-entry table: size field 7 (2^(7+1) entries).
    out[10] = packed | HAS_GLOBAL_TABLE | 0x07;
    out.extend((0..=255u8).flat_map(|i| [i, i, i]));
    out.extend_from_slice(&bytes[SCREEN_DESCRIPTOR_END..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_unpack_most_significant_first_with_padded_rows() {
        // 3 pixels of 4 bits per row, rows padded to 2 bytes.
        let samples = DecodingResult::U8(vec![0x1f, 0x20, 0xa5, 0xc0]);
        assert_eq!(
            unpack(&samples, 3, 2, 4).expect("unpack"),
            [1, 15, 2, 10, 5, 12]
        );
        let samples = DecodingResult::U8(vec![0b1010_0000]);
        assert_eq!(unpack(&samples, 3, 1, 1).expect("unpack"), [1, 0, 1]);
    }

    #[test]
    fn a_huge_text_field_is_refused_before_the_tiff_crate_reads_it() {
        // Classic TIFF, one IFD entry: ImageDescription (270), ASCII, 256 MiB.
        let mut tiff = b"II*\0\x08\0\0\0\x01\0".to_vec();
        tiff.extend_from_slice(&270u16.to_le_bytes());
        tiff.extend_from_slice(&2u16.to_le_bytes());
        tiff.extend_from_slice(&(256u32 << 20).to_le_bytes());
        tiff.extend_from_slice(&[0; 8]);
        let error = check_tiff_text_fields(&tiff).expect_err("refused");
        assert!(error.contains("text field"), "{error}");
        assert!(check_tiff_text_fields(b"II*\0\x08\0\0\0\0\0").is_ok());
        assert!(matches!(
            crate::data::decode::decode_rgb_bytes(&tiff),
            Err(crate::data::decode::DecodeError::TooLarge(_))
        ));
    }

    #[test]
    fn colour_conversions_hit_known_points() {
        assert_eq!(
            ycbcr_to_rgb(&[255, 128, 128], [0.299, 0.587, 0.114]),
            [255, 255, 255]
        );
        assert_eq!(
            ycbcr_to_rgb(&[76, 85, 255], [0.299, 0.587, 0.114]),
            [254, 0, 0]
        );
        assert_eq!(lab_to_srgb(&[255, 0, 0]), [255, 255, 255]);
        assert_eq!(lab_to_srgb(&[0, 0, 0]), [0, 0, 0]);
        let red = lab_to_srgb(&[(53.2 * 2.55) as u8, 80, 67]);
        assert!(red[0] > 240 && red[1] < 40 && red[2] < 40, "{red:?}");
    }
}
