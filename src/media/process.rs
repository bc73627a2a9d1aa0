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

/// Images with more pixels than this get no thumbnail (a 48-megapixel photo is within).
pub const MAX_PIXELS: u64 = 50_000_000;

/// The decoder's limits: a small file that claims a huge canvas (a decompression bomb) is
/// refused from its header, before anything is allocated. 256 MiB holds 50 megapixels of
/// 8-bit RGBA; the thumbnail is made from that one copy.
fn image_limits() -> Limits {
    let mut l = Limits::default();
    l.max_image_width = Some(20_000);
    l.max_image_height = Some(20_000);
    l.max_alloc = Some(256 * 1024 * 1024);
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
    let (w, h) = decoder.dimensions();
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        anyhow::bail!("{w}×{h} is more than {MAX_PIXELS} pixels");
    }
    let orientation = decoder.orientation()?;
    let img = DynamicImage::from_decoder(decoder)?;
    // Turned upright after shrinking: turning the full image would copy it whole.
    let mut small = img.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE);
    drop(img);
    small.apply_orientation(orientation);
    let (w, h) = match orientation {
        image::metadata::Orientation::Rotate90
        | image::metadata::Orientation::Rotate270
        | image::metadata::Orientation::Rotate90FlipH
        | image::metadata::Orientation::Rotate270FlipH => (h, w),
        _ => (w, h),
    };
    Ok((w, h, jpeg_thumbnail(&small)?))
}

/// A JPEG of an image already at thumbnail size.
fn jpeg_thumbnail(small: &DynamicImage) -> anyhow::Result<Vec<u8>> {
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

/// Address space a program (tesseract, pdftoppm) may take before the kernel refuses it more.
const TOOL_MEMORY: u64 = 4 << 30;

/// util-linux's `prlimit`, which starts a program under resource limits, where installed.
/// (Setting limits in the child ourselves would need `pre_exec`, which is unsafe code.)
fn prlimit() -> Option<&'static Path> {
    static FOUND: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| {
            ["/usr/bin/prlimit", "/bin/prlimit"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
        })
        .as_deref()
}

/// Address space the PDF reader may take (`palaver pdf-info`, with one malloc arena).
const PDF_READER_MEMORY: u64 = 1 << 30;

/// A PDF's page count and (with `with_text`) text, read by `reader pdf-info` — this program,
/// in a process of its own under memory and time limits: a small file can hold streams that
/// inflate to gigabytes, and such a file must cost a failed job, not the server.
pub async fn pdf_info(
    reader: &Path,
    pdf: &Path,
    with_text: bool,
) -> anyhow::Result<(i64, Option<String>)> {
    let mut args: Vec<&std::ffi::OsStr> = vec!["pdf-info".as_ref(), pdf.as_os_str()];
    if with_text {
        args.push("--text".as_ref());
    }
    let out = run_limited(reader.as_os_str(), &args, PDF_READER_MEMORY).await?;
    #[derive(serde::Deserialize)]
    struct Info {
        pages: i64,
        text: Option<String>,
    }
    let info: Info = serde_json::from_slice(&out)?;
    Ok((info.pages, info.text))
}

/// Runs a program with a time limit — and, where `prlimit` is installed, with limits on its
/// memory and CPU time — and kills it when the time passes; its stdout when it exits 0.
async fn run_tool(program: &str, args: &[&std::ffi::OsStr]) -> anyhow::Result<Vec<u8>> {
    run_limited(program.as_ref(), args, TOOL_MEMORY).await
}

async fn run_limited(
    program: &std::ffi::OsStr,
    args: &[&std::ffi::OsStr],
    memory: u64,
) -> anyhow::Result<Vec<u8>> {
    let mut command = match prlimit() {
        Some(prlimit) => {
            let mut c = tokio::process::Command::new(prlimit);
            c.arg(format!("--as={memory}"))
                .arg(format!("--cpu={}", TOOL_TIMEOUT.as_secs()))
                .arg("--")
                .arg(program);
            c
        }
        None => tokio::process::Command::new(program),
    };
    let child = command
        .args(args)
        // One malloc arena per process: each would reserve 64 MiB of address space per thread.
        .env("MALLOC_ARENA_MAX", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let out = tokio::time::timeout(TOOL_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| {
            anyhow::anyhow!("{program:?} took longer than {}s", TOOL_TIMEOUT.as_secs())
        })??;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        anyhow::bail!(
            "{program:?} failed ({}): {}",
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

    /// CRC-32 as PNG chunks use it (tests only).
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for b in bytes {
            crc ^= u32::from(*b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// A decompression bomb's header: a PNG claiming 11,000 × 11,000 RGBA pixels (484 MB
    /// decoded; the old limits allowed it) is refused from its header, before any allocation.
    #[test]
    fn a_huge_canvas_is_refused_before_decoding() {
        let mut img = Vec::new();
        image::RgbaImage::new(1, 1)
            .write_to(&mut Cursor::new(&mut img), image::ImageFormat::Png)
            .unwrap();
        // IHDR's data starts at byte 16 (8 signature, 4 length, 4 type): width, height.
        img[16..20].copy_from_slice(&11_000u32.to_be_bytes());
        img[20..24].copy_from_slice(&11_000u32.to_be_bytes());
        let crc = crc32(&img[12..29]);
        img[29..33].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            image_dimensions(&img),
            Some((11_000, 11_000)),
            "a valid header"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bomb.png");
        std::fs::write(&path, &img).unwrap();
        let e = image_thumbnail(&path).unwrap_err().to_string();
        assert!(e.contains("pixels"), "{e}");
    }

    #[test]
    fn thumbnails_are_upright_and_small() {
        let mut bytes = Vec::new();
        image::RgbImage::from_pixel(800, 400, image::Rgb([200, 10, 10]))
            .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wide.png");
        std::fs::write(&path, &bytes).unwrap();
        let (w, h, jpeg) = image_thumbnail(&path).unwrap();
        assert_eq!((w, h), (800, 400));
        let thumb = image::load_from_memory(&jpeg).unwrap();
        assert_eq!(
            (thumb.width(), thumb.height()),
            (THUMBNAIL_SIDE, THUMBNAIL_SIDE / 2)
        );
    }

    #[test]
    fn tidy_trims_and_folds_blank_runs() {
        assert_eq!(tidy("  \n\nHello  \n\n\n\nworld\n\n"), "Hello\n\nworld");
    }
}
