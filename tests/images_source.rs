//! The `images` source: `watch` mode picking up files added after the
//! start, files it cannot take logged and skipped, and symbolic links.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::*;

/// A pipeline whose `images` source reads the directory `in` next to it
/// (created empty; returned) with `settings`, copying every file it reads
/// into `copies/` under its own name.
fn copying(settings: &str) -> (Pipeline, PathBuf) {
    let p = Pipeline::new(&format!(
        r#"
[sources.photos]
type = "images"
path = "@dir/in"
{settings}

[sinks.copies]
type = "directory"
inputs = ["photos"]
path = "copies"
name = "filename"
"#
    ));
    let images = p.path("in");
    std::fs::create_dir_all(&images).unwrap();
    (p, images)
}

/// `watch = true`: files added to the directory after the start are read
/// (once each, byte for byte) and written by the directory sink; files not
/// matching the pattern are not.
#[test]
fn the_images_source_in_watch_mode_picks_up_files_added_after_start() {
    let (p, images) =
        copying("pattern = [\"*.png\", \"*.jpg\"]\nwatch = true\npoll_interval = \"100ms\"");
    let samples = repo().join("data/images");
    std::fs::copy(samples.join("camera.png"), images.join("camera.png")).unwrap();
    let bg = p.start();
    let copies = p.path("copies");
    let listing = |want: usize| -> Vec<String> {
        let start = Instant::now();
        loop {
            let mut names: Vec<String> = std::fs::read_dir(&copies)
                .map(|d| {
                    d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                        .filter(|n| !n.starts_with('.'))
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            if names.len() >= want {
                return names;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "only {names:?} written:\n{}",
                bg.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert_eq!(listing(1), ["camera.png"]);

    // Added while running: two matching files and one that does not match.
    for name in ["coffee.png", "rocket.jpg"] {
        std::fs::copy(samples.join(name), images.join(name)).unwrap();
    }
    write(&images, "notes.txt", "not an image\n");
    assert_eq!(listing(3), ["camera.png", "coffee.png", "rocket.jpg"]);

    // Nothing more comes (no re-reads, no notes.txt) over several polls.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(listing(3).len(), 3);
    let status = bg.status();
    assert_eq!(stage(&status, "photos")["state"], "running", "{status}");
    assert_eq!(counter(&status, "photos", "events_in"), 3, "{status}");
    assert_eq!(counter(&status, "photos", "errors"), 0, "{status}");
    assert_eq!(counter(&status, "copies", "events_out"), 3, "{status}");
    bg.stop();
    for name in ["camera.png", "coffee.png", "rocket.jpg"] {
        assert!(
            std::fs::read(copies.join(name)).unwrap() == std::fs::read(samples.join(name)).unwrap(),
            "{name} differs"
        );
    }
}

/// A file the `images` source cannot take (larger than `max_file_size`) is
/// logged with its reason, counted as an error and skipped, while the other
/// files are read; a directory whose name matches the pattern is ignored.
#[test]
fn unreadable_image_files_are_logged_and_skipped_and_the_rest_are_read() {
    let (p, images) = copying("pattern = \"*.png\"\nmax_file_size = \"200KiB\"");
    let samples = repo().join("data/images");
    // camera.png and logo.png are under 200 KiB, coffee.png (456 KiB) over.
    for name in ["camera.png", "coffee.png", "logo.png"] {
        std::fs::copy(samples.join(name), images.join(name)).unwrap();
    }
    let big = std::fs::metadata(images.join("coffee.png")).unwrap().len();
    assert!(big > 200 << 10, "coffee.png is {big} bytes");
    std::fs::create_dir(images.join("folder.png")).unwrap();
    let stderr = p.run_ok(Duration::from_secs(60));

    let mut names: Vec<String> = std::fs::read_dir(p.path("copies"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["camera.png", "logo.png"], "{stderr}");
    for name in &names {
        assert!(
            std::fs::read(p.path("copies").join(name)).unwrap()
                == std::fs::read(samples.join(name)).unwrap(),
            "{name} differs"
        );
    }
    let warning = stderr
        .lines()
        .find(|l| l.contains("cannot read file; skipped"))
        .unwrap_or_else(|| panic!("no warning:\n{stderr}"));
    assert!(
        warning.contains("stage=\"photos\"")
            && warning.contains("file=\"coffee.png\"")
            && warning.contains(&format!(
                "reason=\"{big} bytes is above max_file_size (204800)\""
            )),
        "{warning}"
    );
    assert_eq!(stderr.matches("cannot read file; skipped").count(), 1);
    assert_eq!(stage_total(&stderr, "photos", "events_in"), 2);
    assert_eq!(stage_total(&stderr, "photos", "errors"), 1);
}

/// A symbolic link matching the pattern is read like any file when its
/// target is a readable image, and logged and skipped when it dangles.
#[test]
fn symlinked_images_are_read_and_dangling_links_are_logged() {
    let (p, images) = copying("pattern = \"*.png\"");
    let samples = repo().join("data/images");
    std::fs::copy(samples.join("camera.png"), images.join("camera.png")).unwrap();
    std::os::unix::fs::symlink(samples.join("coffee.png"), images.join("coffee.png")).unwrap();
    std::os::unix::fs::symlink(p.path("gone.png"), images.join("gone.png")).unwrap();
    let stderr = p.run_ok(Duration::from_secs(60));
    let copies = p.path("copies");
    assert!(
        std::fs::read(copies.join("coffee.png")).ok()
            == std::fs::read(samples.join("coffee.png")).ok(),
        "the symlinked image was not read:\n{stderr}"
    );
    assert!(copies.join("camera.png").is_file());
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("cannot read file; skipped") && l.contains("file=\"gone.png\"")),
        "the dangling link was not logged:\n{stderr}"
    );
}
