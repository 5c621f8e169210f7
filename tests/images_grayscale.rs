//! Images through the grayscale plugin: exact grayscale pixels, broken
//! files dead-lettered, oversized images refused, large payloads through
//! the plugin and through a real Kafka broker.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;

/// OpenCV's 8-bit BGR->GRAY, written out here independently of the plugin.
fn opencv_gray(r: u8, g: u8, b: u8) -> u8 {
    let y = 3735u32 * u32::from(b) + 19235 * u32::from(g) + 9798 * u32::from(r) + 16384;
    (y >> 15) as u8
}

/// Decodes a PNG to (width, height, channels, pixels), 8-bit.
fn read_png(path: &Path) -> (u32, u32, usize, Vec<u8>) {
    let mut d = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    d.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut r = d.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    let channels = match r.output_color_type().0 {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => unreachable!("expanded"),
    };
    (info.width, info.height, channels, buf)
}

/// Decodes a JPEG to RGB with the same decoder the plugin uses.
fn read_jpeg_rgb(path: &Path) -> (u32, u32, Vec<u8>) {
    use zune_core::bytestream::ZCursor;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    let bytes = std::fs::read(path).unwrap();
    let opts = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut d = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(&bytes[..]), opts);
    let px = d.decode().unwrap();
    let (w, h) = d.dimensions().unwrap();
    (w as u32, h as u32, px)
}

/// The gray pixels expected for 8-bit `pixels` of `channels` channels.
fn expected_gray(channels: usize, pixels: &[u8]) -> Vec<u8> {
    if channels <= 2 {
        return pixels.chunks(channels).map(|p| p[0]).collect();
    }
    pixels
        .chunks(channels)
        .map(|p| opencv_gray(p[0], p[1], p[2]))
        .collect()
}

/// Runs the files of `images` matching `pattern` through the grayscale
/// plugin (with `extra` stage settings), from a pipeline in `dir`; returns
/// the directories of the converted and the rejected images, and the log.
fn convert(dir: &Path, images: &Path, pattern: &str, extra: &str) -> (PathBuf, PathBuf, String) {
    let text = format!(
        r#"
[sources.photos]
type = "images"
path = "{images}"
pattern = "{pattern}"

[transforms.grayscale]
type = "wasm"
inputs = ["photos"]
plugin = "@plugin(grayscale)"
timeout = "20s"
dead_letter = "rejected"
{extra}

[sinks.gray]
type = "directory"
inputs = ["grayscale"]
path = "gray"
name = "filename"

[sinks.rejected]
type = "directory"
path = "rejected"
name = "filename"
headers = true
"#,
        images = images.display(),
    );
    let file = pipeline_file(dir, &text);
    let (_, stderr) = run_to_end(&file, Duration::from_secs(120));
    (dir.join("gray"), dir.join("rejected"), stderr)
}

/// The sample images.
fn samples() -> PathBuf {
    repo().join("data/images")
}

#[test]
fn png_samples_match_the_formula_pixel_for_pixel() {
    let dir = tempdir();
    let (gray, _, _) = convert(dir.path(), &samples(), "*.png", "memory_limit = \"256MiB\"");
    let mut checked = 0;
    for entry in std::fs::read_dir(samples()).unwrap() {
        let src = entry.unwrap().path();
        if src.extension().is_none_or(|e| e != "png") {
            continue;
        }
        let (w, h, channels, pixels) = read_png(&src);
        let (gw, gh, gc, gpixels) = read_png(&gray.join(src.file_name().unwrap()));
        assert_eq!((gw, gh, gc), (w, h, 1), "{}", src.display());
        assert!(
            gpixels == expected_gray(channels, &pixels),
            "{}: pixels differ",
            src.display()
        );
        checked += 1;
    }
    assert_eq!(
        checked, 6,
        "astronaut, camera (gray), chelsea, coffee, logo (RGBA), motorcycle_left"
    );
}

#[test]
fn jpeg_samples_match_the_formula_on_the_decoders_rgb_and_broken_files_are_dead_lettered() {
    let dir = tempdir();
    let (gray, rejected, stderr) =
        convert(dir.path(), &samples(), "*.jpg", "memory_limit = \"256MiB\"");
    let mut converted = 0;
    for entry in std::fs::read_dir(samples()).unwrap() {
        let src = entry.unwrap().path();
        let name = src.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".jpg") || name == "broken_truncated.jpg" || name == "not_an_image.jpg" {
            continue;
        }
        let (w, h, rgb) = read_jpeg_rgb(&src);
        let out = gray.join(name.replace(".jpg", ".png"));
        let (gw, gh, gc, gpixels) = read_png(&out);
        assert_eq!((gw, gh, gc), (w, h, 1), "{name}");
        assert!(gpixels == expected_gray(3, &rgb), "{name}: pixels differ");
        converted += 1;
    }
    assert_eq!(converted, 7);
    let reason = |f: &str| -> String {
        let meta: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(rejected.join(format!("{f}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(meta["headers"]["weir.stage"], "grayscale");
        meta["headers"]["weir.reason"].as_str().unwrap().to_owned()
    };
    assert_eq!(
        reason("broken_truncated.jpg"),
        "corrupt or truncated JPEG: Exhausted data in the image"
    );
    assert!(
        reason("not_an_image.jpg").starts_with("not a JPEG or PNG image (starts with \"this fil\"")
    );
    assert_eq!(
        std::fs::read(rejected.join("not_an_image.jpg")).unwrap(),
        std::fs::read(samples().join("not_an_image.jpg")).unwrap(),
        "the original bytes are kept"
    );
    assert!(stderr.contains("rejected=2"), "{stderr}");
}

/// Writes a `w`x`h` RGB PNG of deterministic noise (incompressible: the
/// file is about 3 bytes per pixel).
fn noise_png(path: &Path, w: u32, h: u32) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let pixels: Vec<u8> = (0..w * h * 3)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut enc = png::Encoder::new(&mut file, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()
        .unwrap()
        .write_image_data(&pixels)
        .unwrap();
    pixels
}

#[test]
fn oversized_images_are_refused_not_crashes() {
    let dir = tempdir();
    let images = dir.path().join("in");
    std::fs::create_dir_all(&images).unwrap();
    noise_png(&images.join("big.png"), 2000, 1500);
    std::fs::copy(samples().join("camera.png"), images.join("camera.png")).unwrap();
    // max_pixels: refused before decoding.
    let a = tempdir();
    let (gray, rejected, _) = convert(
        a.path(),
        &images,
        "*.png",
        "memory_limit = \"256MiB\"\nconfig = { max_pixels = 1000000 }",
    );
    assert!(gray.join("camera.png").is_file());
    let meta = std::fs::read_to_string(rejected.join("big.png.json")).unwrap();
    assert!(
        meta.contains("image is 2000x1500 (3.0 MP), above max_pixels (1.0 MP)"),
        "{meta}"
    );
    // A memory cap too small for the decoded image: the call is stopped,
    // the image dead-lettered, the pipeline goes on.
    let b = tempdir();
    let (gray, rejected, stderr) = convert(b.path(), &images, "*.png", "memory_limit = \"8MiB\"");
    assert!(gray.join("camera.png").is_file(), "{stderr}");
    let meta = std::fs::read_to_string(rejected.join("big.png.json")).unwrap();
    assert!(meta.contains("memory limit of 8 MiB exceeded"), "{meta}");
}

#[test]
fn sample_images_and_a_multi_megabyte_image_go_through_a_real_kafka_broker() {
    use crate::common::kafka::*;
    let b = broker();
    // Records of several MB: the topic must allow them (Kafka's default
    // max.message.bytes is about 1 MB).
    create_topic_with(b, "image_test", 1, 1, &[("max.message.bytes", "16777216")]);
    let p = Pipeline::new(
        r#"
[sources.photos]
type = "images"
path = "@dir/in"

[sinks.to_kafka]
type = "kafka"
inputs = ["photos"]
brokers = "@broker"
topic = "image_test"
key = "$key"
options = { "message.max.bytes" = 16777216 }

[sources.from_kafka]
type = "kafka"
brokers = "@broker"
topic = "image_test"
group = "images"
start = "earliest"
exit_at_end = true
options = { "fetch.max.bytes" = 67108864, "max.partition.fetch.bytes" = 16777216 }

[transforms.grayscale]
type = "wasm"
inputs = ["from_kafka"]
plugin = "@plugin(grayscale)"
memory_limit = "256MiB"
timeout = "20s"
dead_letter = "rejected"

[sinks.gray]
type = "directory"
inputs = ["grayscale"]
path = "gray"
name = "filename"
extension = "gray.png"

[sinks.rejected]
type = "directory"
path = "rejected"
name = "filename"
headers = true
"#,
    );
    let images = p.path("in");
    std::fs::create_dir_all(&images).unwrap();
    for entry in std::fs::read_dir(samples()).unwrap() {
        let file = entry.unwrap().path();
        std::fs::copy(&file, images.join(file.file_name().unwrap())).unwrap();
    }
    let big_pixels = noise_png(&images.join("big_noise.png"), 1600, 1200);
    assert!(
        std::fs::metadata(images.join("big_noise.png"))
            .unwrap()
            .len()
            > 5_000_000
    );
    let stderr = p.run_ok(Duration::from_secs(180));
    let gray = p.path("gray");
    let mut names: Vec<String> = std::fs::read_dir(&gray)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names.len(),
        14,
        "13 samples and the big image: {names:?}\n{stderr}"
    );
    let (w, h, c, px) = read_png(&gray.join("big_noise.gray.png"));
    assert_eq!((w, h, c), (1600, 1200, 1));
    assert!(px == expected_gray(3, &big_pixels), "big image pixels");
    let (_, _, _, cam) = read_png(&gray.join("camera.gray.png"));
    assert_eq!(
        cam,
        read_png(&samples().join("camera.png")).3,
        "gray input passes through"
    );
    assert_eq!(
        std::fs::read_dir(p.path("rejected")).unwrap().count(),
        4,
        "2 files + 2 sidecars"
    );
}
