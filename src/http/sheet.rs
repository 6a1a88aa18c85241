//! The contact sheet of a campaign's screenshots: one self-contained HTML page
//! (`report.html`) with each phone's thumbnail, embedded as a PNG data URI, and its
//! outcome. Written as the records come, so its memory does not grow with the fleet.

use super::addr::PhoneAddr;
use crate::campaign::{Record, Verdict};
use base64::Engine;
use quick_xml::escape::escape;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The widest thumbnail, in pixels; wider screenshots are scaled down.
pub const THUMB_WIDTH: u32 = 160;

/// The largest screenshot file read for a thumbnail.
const MAX_SHOT: u64 = 8 << 20;

/// A contact sheet being written.
#[derive(Debug)]
pub struct ContactSheet {
    dir: PathBuf,
    out: BufWriter<File>,
    counts: BTreeMap<String, u64>,
    thumbnails: u64,
}

impl ContactSheet {
    /// Starts `dir/report.html` (the screenshots are in `dir`).
    pub fn create(dir: &Path) -> io::Result<ContactSheet> {
        let mut out = BufWriter::new(File::create(dir.join("report.html"))?);
        out.write_all(HEAD.as_bytes())?;
        Ok(ContactSheet {
            dir: dir.to_path_buf(),
            out,
            counts: BTreeMap::new(),
            thumbnails: 0,
        })
    }

    /// Adds a phone: its thumbnail (this run's screenshot; for a phone not sent this run,
    /// the one a previous run saved) and its outcome.
    pub fn add(&mut self, record: &Record) -> io::Result<()> {
        if let Verdict::BadRow(_) = record.verdict {
            return Ok(());
        }
        let label = record.verdict.label().to_string();
        *self.counts.entry(label.clone()).or_default() += 1;
        let stem = PhoneAddr::parse(&record.target).map(|p| p.file_stem()).ok();
        let (shot, caption) = match &record.verdict {
            Verdict::Sent { outcome, .. } => {
                let details = outcome.details.as_deref();
                let shot = details
                    .and_then(|d| d.get("screenshot"))
                    .and_then(|v| v.as_str())
                    .map(str::to_string);
                let why = details
                    .and_then(|d| d.get("screenshot_error"))
                    .and_then(|v| v.as_str())
                    .map(|e| format!(" (no screenshot: {e})"))
                    .unwrap_or_default();
                let status = outcome.status.map(|s| format!("{s} ")).unwrap_or_default();
                (shot, format!("{status}{}{why}", outcome.reason))
            }
            other => (
                stem.map(|s| format!("{s}.png"))
                    .filter(|name| self.dir.join(name).is_file()),
                other.reason().into_owned(),
            ),
        };
        let image = match shot.as_deref().map(|name| self.thumbnail(name)) {
            Some(Some(uri)) => {
                self.thumbnails += 1;
                format!("<img alt=\"screenshot\" src=\"{uri}\">")
            }
            _ => "<div class=\"none\">no screenshot</div>".to_string(),
        };
        writeln!(
            self.out,
            "<figure class=\"{}\">{image}<figcaption><b>{}</b><br><span>{}</span> {}</figcaption></figure>",
            escape(label.as_str()),
            escape(crate::text::printable(&record.target, false).as_ref()),
            escape(label.as_str()),
            escape(crate::text::printable(&caption, false).as_ref()),
        )
    }

    /// Thumbnails embedded so far.
    pub fn thumbnails(&self) -> u64 {
        self.thumbnails
    }

    /// Ends the page with the count of each outcome.
    pub fn finish(mut self) -> io::Result<()> {
        let counts: Vec<String> = self
            .counts
            .iter()
            .map(|(label, n)| format!("{n} {}", escape(label.as_str())))
            .collect();
        writeln!(
            self.out,
            "</main><footer>{} thumbnails; {}</footer></body></html>",
            self.thumbnails,
            counts.join(", ")
        )?;
        self.out.flush()
    }

    /// A screenshot as a data URI, scaled to [`THUMB_WIDTH`]; `None` when it cannot be read.
    fn thumbnail(&self, name: &str) -> Option<String> {
        use std::io::Read;
        let mut bytes = Vec::new();
        File::open(self.dir.join(name))
            .ok()?
            .take(MAX_SHOT)
            .read_to_end(&mut bytes)
            .ok()?;
        let png = scaled(&bytes)?;
        Some(format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(png)
        ))
    }
}

/// A PNG at most [`THUMB_WIDTH`] wide (nearest neighbour), RGB.
fn scaled(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut decoder =
        png::Decoder::new_with_limits(std::io::Cursor::new(bytes), png::Limits { bytes: 64 << 20 });
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().ok()?;
    let mut buf = vec![0; reader.output_buffer_size()?];
    let info = reader.next_frame(&mut buf).ok()?;
    let (w, h) = (info.width, info.height);
    if w == 0 || h == 0 {
        return None;
    }
    let tw = w.min(THUMB_WIDTH);
    let th = (u64::from(h) * u64::from(tw) / u64::from(w)).max(1) as u32;
    let channels = info.color_type.samples();
    let mut rgb = Vec::with_capacity((tw * th * 3) as usize);
    for y in 0..th {
        for x in 0..tw {
            let sy = (u64::from(y) * u64::from(h) / u64::from(th)) as usize;
            let sx = (u64::from(x) * u64::from(w) / u64::from(tw)) as usize;
            let px = &buf[sy * info.line_size + sx * channels..][..channels];
            match channels {
                1 | 2 => rgb.extend_from_slice(&[px[0]; 3]),
                _ => rgb.extend_from_slice(&px[..3]),
            }
        }
    }
    let mut png = Vec::new();
    let mut encoder = png::Encoder::new(&mut png, tw, th);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header().ok()?.write_image_data(&rgb).ok()?;
    Some(png)
}

const HEAD: &str = r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>sipnotify: contact sheet</title>
<style>
body{font:13px system-ui,sans-serif;margin:1em;background:#f4f4f4}
main{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0;width:168px;padding:4px;background:#fff;border:2px solid #ccc;border-radius:4px}
figure.delivered{border-color:#3a3}figure.rejected,figure.auth_failed{border-color:#c33}
figure.timeout,figure.unreachable{border-color:#c93}
img,.none{display:block;width:160px;min-height:60px;image-rendering:pixelated}
.none{background:#ddd;color:#666;text-align:center;line-height:60px}
figcaption{font-size:11px;overflow-wrap:anywhere}
footer{margin-top:1em}
</style></head><body><h1>sipnotify: contact sheet</h1><main>
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Outcome, OutcomeKind};
    use std::time::Duration;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder
            .write_header()
            .unwrap()
            .write_image_data(&vec![200; (w * h * 3) as usize])
            .unwrap();
        out
    }

    #[test]
    fn thumbnails_are_embedded_and_captions_escaped() {
        let dir = std::env::temp_dir().join(format!("sheet-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("10.0.0.7_80.png"), png(800, 480)).unwrap();
        let mut sheet = ContactSheet::create(&dir).unwrap();
        let mut details = serde_json::Map::new();
        details.insert("screenshot".into(), "10.0.0.7_80.png".into());
        let outcome = Outcome {
            status: Some(200),
            details: Some(Box::new(details)),
            ..Outcome::unsent(OutcomeKind::Delivered, "OK <b>")
        };
        let record = |target: &str, verdict| Record {
            line: 2,
            id: None,
            target: target.into(),
            event: "background".into(),
            verdict,
        };
        let sent = Verdict::Sent {
            outcome,
            tries: 1,
            total: Duration::ZERO,
        };
        sheet.add(&record("http://10.0.0.7:80", sent)).unwrap();
        // Resumed: the earlier run's screenshot.
        sheet
            .add(&record("http://10.0.0.7:80", Verdict::AlreadyDelivered))
            .unwrap();
        sheet
            .add(&record("http://10.0.0.8:80", Verdict::Unknown))
            .unwrap();
        assert_eq!(sheet.thumbnails(), 2);
        sheet.finish().unwrap();
        let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
        assert_eq!(html.matches("<img ").count(), 2);
        assert!(html.contains("OK &lt;b&gt;") && !html.contains("OK <b>"));
        assert!(
            html.contains("2 thumbnails; 1 already_delivered, 1 delivered, 1 unknown"),
            "{html}"
        );
        let b64 = html
            .split("base64,")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let thumb = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let reader = png::Decoder::new(std::io::Cursor::new(&thumb))
            .read_info()
            .unwrap();
        assert_eq!((reader.info().width, reader.info().height), (160, 96));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
