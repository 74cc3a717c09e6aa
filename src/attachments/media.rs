//! What an upload's bytes are, and an image's size and thumbnail (SPEC §12). The stored type is
//! sniffed from the first bytes (with `infer`, plus SVG, which it does not know), never taken
//! from the client when the bytes say otherwise; images are decoded under limits, so a
//! decompression bomb gets no thumbnail instead of the server's memory.

use std::fs::File;
use std::io::{BufReader, Cursor};
use std::path::Path;

use image::{DynamicImage, ImageFormat, ImageReader, Limits};

/// How many leading bytes the sniffing looks at.
pub const SNIFF_BYTES: u64 = 8 * 1024;
/// The largest image (in pixels) that is decoded for a thumbnail.
pub const MAX_PIXELS: u64 = 40_000_000;
/// A thumbnail's longest side.
pub const THUMBNAIL_SIDE: u32 = 320;

/// The image types that get a size and a thumbnail and are shown inline; everything else
/// (SVG and HTML included) is served as a download.
pub const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

pub fn is_image(content_type: &str) -> bool {
    IMAGE_TYPES.contains(&content_type)
}

/// The content type of bytes that start with `head`: what they are when they match a known
/// type; else the `claimed` type, unless that claims an image.
pub fn sniff(head: &[u8], claimed: &str) -> String {
    if is_svg(head) {
        return "image/svg+xml".to_owned();
    }
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_owned();
    }
    if claimed.to_ascii_lowercase().starts_with("image/") {
        return "application/octet-stream".to_owned();
    }
    claimed.to_owned()
}

/// An XML or bare document whose first element is `<svg`.
fn is_svg(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&head[..head.len().min(4096)]).to_ascii_lowercase();
    let mut rest = text.trim_start_matches('\u{feff}').trim_start();
    // Skip the XML declaration, comments, processing instructions and a doctype.
    loop {
        if let Some(after) = rest.strip_prefix("<!--") {
            match after.find("-->") {
                Some(end) => rest = after[end + 3..].trim_start(),
                None => return false,
            }
        } else if rest.starts_with("<?") || rest.starts_with("<!doctype") {
            match rest.find('>') {
                Some(end) => rest = rest[end + 1..].trim_start(),
                None => return false,
            }
        } else {
            break;
        }
    }
    rest.starts_with("<svg") && rest[4..].starts_with(|c: char| c.is_whitespace() || c == '>')
}

/// An image's size, and its thumbnail when it could be decoded within [`MAX_PIXELS`].
#[derive(Debug, PartialEq, Eq)]
pub struct Inspected {
    pub width: u32,
    pub height: u32,
    /// The encoded thumbnail and its type.
    pub thumbnail: Option<(Vec<u8>, &'static str)>,
}

/// Reads the image file at `path` (of sniffed type `content_type`). `None` when it is not one of
/// [`IMAGE_TYPES`] or its header cannot be read. Blocking: call it off the async threads.
pub fn inspect(path: &Path, content_type: &str) -> Option<Inspected> {
    let format = ImageFormat::from_mime_type(content_type).filter(|_| is_image(content_type))?;
    let (width, height) = reader(path, format)?.into_dimensions().ok()?;
    let pixels = u64::from(width) * u64::from(height);
    let thumbnail = (pixels <= MAX_PIXELS)
        .then(|| decode(path, format, width, height))
        .flatten()
        .and_then(|image| encode_thumbnail(&image));
    Some(Inspected {
        width,
        height,
        thumbnail,
    })
}

/// A reader of the file as the sniffed format (never guessed from its name).
fn reader(path: &Path, format: ImageFormat) -> Option<ImageReader<BufReader<File>>> {
    let mut reader = ImageReader::open(path).ok()?;
    reader.set_format(format);
    Some(reader)
}

/// Decodes at most the size the header announced, and at most 8 bytes a pixel of memory.
fn decode(path: &Path, format: ImageFormat, width: u32, height: u32) -> Option<DynamicImage> {
    let mut reader = reader(path, format)?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    limits.max_alloc = Some(u64::from(width) * u64::from(height) * 8 + (16 << 20));
    reader.limits(limits);
    reader.decode().ok()
}

/// At most [`THUMBNAIL_SIDE`] on its long side: JPEG, or PNG when the image has transparency.
fn encode_thumbnail(image: &DynamicImage) -> Option<(Vec<u8>, &'static str)> {
    let small = if image.width() <= THUMBNAIL_SIDE && image.height() <= THUMBNAIL_SIDE {
        image.clone()
    } else {
        image.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE)
    };
    let mut out = Cursor::new(Vec::new());
    if small.color().has_alpha() {
        small.write_to(&mut out, ImageFormat::Png).ok()?;
        Some((out.into_inner(), "image/png"))
    } else {
        let rgb = DynamicImage::ImageRgb8(small.to_rgb8());
        rgb.write_to(&mut out, ImageFormat::Jpeg).ok()?;
        Some((out.into_inner(), "image/jpeg"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_decide_the_type() {
        let png = [
            0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D,
        ];
        assert_eq!(sniff(&png, "text/plain"), "image/png");
        assert_eq!(
            sniff(b"<html><script>alert(1)</script>", "image/png"),
            "text/html"
        );
        assert_eq!(sniff(b"  <!DOCTYPE html><p>hi", "image/jpeg"), "text/html");
        assert_eq!(
            sniff(b"%PDF-1.7\n", "application/octet-stream"),
            "application/pdf"
        );
        // SVG in its usual shapes, whatever was claimed.
        for svg in [
            &b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>x()</script></svg>"[..],
            b"<?xml version=\"1.0\"?>\n<!-- made by hand -->\n<svg>",
            b"\xef\xbb\xbf<!DOCTYPE svg PUBLIC \"-//W3C//DTD SVG 1.1//EN\" \"x\"><svg\n>",
        ] {
            assert_eq!(sniff(svg, "image/png"), "image/svg+xml");
        }
        assert_ne!(sniff(b"<svgfoo>", "text/plain"), "image/svg+xml");
        // Unknown bytes keep the claim, unless it claims an image.
        assert_eq!(sniff(b"just words", "text/plain"), "text/plain");
        assert_eq!(
            sniff(b"just words", "image/png"),
            "application/octet-stream"
        );
    }

    #[test]
    fn an_image_gets_its_size_and_a_small_thumbnail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wide.png");
        image::RgbImage::from_pixel(1000, 500, image::Rgb([200, 10, 10]))
            .save(&path)
            .unwrap();
        let seen = inspect(&path, "image/png").unwrap();
        assert_eq!((seen.width, seen.height), (1000, 500));
        let (bytes, kind) = seen.thumbnail.unwrap();
        assert_eq!(kind, "image/jpeg");
        let thumb = image::load_from_memory(&bytes).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (320, 160));
        // Not an image type: nothing to inspect.
        assert!(inspect(&path, "application/pdf").is_none());
    }
}
