//! What the background jobs work out from an upload's bytes (a local copy of them): image
//! dimensions and thumbnails, audio and video durations, PDF pages and text, OCR. The CPU-bound
//! parts are synchronous and run on the blocking pool; the external programs run with a time
//! limit and are killed when it passes.

use std::io::{BufReader, Cursor};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits};

/// The longest side of a thumbnail, in pixels.
pub const THUMBNAIL_SIDE: u32 = 320;
/// Programs (tesseract, pdftoppm) that run longer are killed.
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);
/// Extracted text is cut at this many characters.
pub const MAX_TEXT_CHARS: usize = 1_000_000;

fn image_limits() -> Limits {
    let mut l = Limits::default();
    l.max_image_width = Some(20_000);
    l.max_image_height = Some(20_000);
    l.max_alloc = Some(512 * 1024 * 1024);
    l
}

/// Width and height as displayed, from the header only (works on a prefix of the file).
pub fn image_dimensions(head: &[u8]) -> Option<(u32, u32)> {
    let mut reader = ImageReader::new(Cursor::new(head))
        .with_guessed_format()
        .ok()?;
    reader.limits(image_limits());
    let mut decoder = reader.into_decoder().ok()?;
    let (w, h) = decoder.dimensions();
    let turned = matches!(
        decoder.orientation().ok()?,
        image::metadata::Orientation::Rotate90
            | image::metadata::Orientation::Rotate270
            | image::metadata::Orientation::Rotate90FlipH
            | image::metadata::Orientation::Rotate270FlipH
    );
    Some(if turned { (h, w) } else { (w, h) })
}

/// Decodes an image (its first frame), turns it upright and makes a JPEG thumbnail. The
/// thumbnail is encoded from pixels alone, so nothing of the original's metadata (EXIF, GPS)
/// survives. Returns (width, height, jpeg).
pub fn image_thumbnail(path: &Path) -> anyhow::Result<(u32, u32, Vec<u8>)> {
    let file = std::fs::File::open(path)?;
    let mut reader = ImageReader::new(BufReader::new(file)).with_guessed_format()?;
    reader.limits(image_limits());
    let mut decoder = reader.into_decoder()?;
    let orientation = decoder.orientation()?;
    let mut img = DynamicImage::from_decoder(decoder)?;
    img.apply_orientation(orientation);
    let (w, h) = (img.width(), img.height());
    Ok((w, h, jpeg_thumbnail(&img)?))
}

fn jpeg_thumbnail(img: &DynamicImage) -> anyhow::Result<Vec<u8>> {
    let small = img.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE);
    // JPEG has no alpha: transparent parts go on white, not black.
    let rgba = small.to_rgba8();
    let mut rgb = image::RgbImage::new(rgba.width(), rgba.height());
    for (dst, src) in rgb.pixels_mut().zip(rgba.pixels()) {
        let a = u16::from(src[3]);
        for c in 0..3 {
            dst[c] = ((u16::from(src[c]) * a + 255 * (255 - a)) / 255) as u8;
        }
    }
    let mut out = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 75);
    rgb.write_with_encoder(encoder)?;
    Ok(out)
}

/// Duration of audio (or the audio of a video) in milliseconds: from the container's frame
/// count where it has one, else from the timestamps of its packets (no decoding).
pub fn duration_ms(path: &Path) -> anyhow::Result<Option<i64>> {
    use symphonia::core::formats::FormatOptions;
    use symphonia::core::io::MediaSourceStream;
    use symphonia::core::meta::MetadataOptions;
    use symphonia::core::probe::Hint;

    let file = std::fs::File::open(path)?;
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let probed = symphonia::default::get_probe().format(
        &Hint::new(),
        mss,
        &FormatOptions::default(),
        &MetadataOptions::default(),
    )?;
    let mut format = probed.format;
    let Some(track) = format.default_track().cloned() else {
        return Ok(None);
    };
    let p = &track.codec_params;
    let to_ms = |frames: u64| -> Option<i64> {
        if let Some(tb) = p.time_base {
            let t = tb.calc_time(frames);
            Some((t.seconds as f64 * 1000.0 + t.frac * 1000.0).round() as i64)
        } else {
            p.sample_rate
                .filter(|r| *r > 0)
                .map(|r| (frames as f64 * 1000.0 / f64::from(r)).round() as i64)
        }
    };
    // Symphonia's frame count already leaves out the encoder delay (Opus pre-skip).
    if let Some(n) = p.n_frames {
        return Ok(to_ms(n));
    }
    let mut end = 0u64;
    while let Ok(packet) = format.next_packet() {
        if packet.track_id() == track.id {
            end = end.max(packet.ts + packet.dur);
        }
    }
    Ok(if end > 0 { to_ms(end) } else { None })
}

/// A PDF's page count and (optionally) its text, page by page.
pub fn pdf(path: &Path, with_text: bool) -> anyhow::Result<(i64, Option<String>)> {
    let doc = lopdf::Document::load(path)?;
    let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
    if !with_text {
        return Ok((pages.len() as i64, None));
    }
    if doc.is_encrypted() {
        anyhow::bail!("the PDF is encrypted");
    }
    let mut text = String::new();
    for chunk in doc.extract_text_chunks(&pages) {
        // A page whose text cannot be read does not lose the others.
        if let Ok(t) = chunk {
            text.push_str(&t);
        }
        if text.len() > MAX_TEXT_CHARS * 4 {
            break;
        }
    }
    Ok((pages.len() as i64, Some(tidy(&text))))
}

/// Trims lines, drops empty runs and cuts at [`MAX_TEXT_CHARS`].
pub fn tidy(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines().map(str::trim_end) {
        if line.trim().is_empty() && (out.is_empty() || out.ends_with("\n\n")) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim().chars().take(MAX_TEXT_CHARS).collect()
}

/// Runs a program with a time limit; its stdout when it exits 0.
async fn run_tool(program: &str, args: &[&std::ffi::OsStr]) -> anyhow::Result<Vec<u8>> {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let out = tokio::time::timeout(TOOL_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| anyhow::anyhow!("{program} took longer than {}s", TOOL_TIMEOUT.as_secs()))??;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        anyhow::bail!(
            "{program} failed ({}): {}",
            out.status,
            err.trim().chars().take(300).collect::<String>()
        );
    }
    Ok(out.stdout)
}

/// Whether a program can be started (`--version`/`-v` answered).
pub async fn tool_present(program: &str, version_flag: &str) -> bool {
    let started = tokio::process::Command::new(program)
        .arg(version_flag)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    matches!(
        tokio::time::timeout(Duration::from_secs(10), started).await,
        Ok(Ok(_))
    )
}

/// Text in an image, by tesseract.
pub async fn ocr(tesseract: &str, lang: &str, image: &Path) -> anyhow::Result<String> {
    let out = run_tool(
        tesseract,
        &[
            image.as_os_str(),
            "stdout".as_ref(),
            "-l".as_ref(),
            lang.as_ref(),
        ],
    )
    .await?;
    Ok(tidy(&String::from_utf8_lossy(&out)))
}

/// The first page of a PDF as a JPEG thumbnail, by pdftoppm.
pub async fn pdf_thumbnail(pdftoppm: &str, pdf: &Path, scratch: &Path) -> anyhow::Result<Vec<u8>> {
    let prefix: PathBuf = scratch.with_extension("page");
    let side = THUMBNAIL_SIDE.to_string();
    run_tool(
        pdftoppm,
        &[
            "-jpeg".as_ref(),
            "-f".as_ref(),
            "1".as_ref(),
            "-l".as_ref(),
            "1".as_ref(),
            "-scale-to".as_ref(),
            side.as_ref(),
            "-singlefile".as_ref(),
            pdf.as_os_str(),
            prefix.as_os_str(),
        ],
    )
    .await?;
    let made = prefix.with_extension("page.jpg");
    let bytes = tokio::fs::read(&made).await;
    let _ = tokio::fs::remove_file(&made).await;
    Ok(bytes?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidy_trims_and_folds_blank_runs() {
        assert_eq!(tidy("  \n\nHello  \n\n\n\nworld\n\n"), "Hello\n\nworld");
    }
}
