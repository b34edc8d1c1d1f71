//! The telemetry spool: every record gets the next per-agent sequence number and is
//! appended to a segment file under `STATE_DIR/spool/` before anything is sent, so records
//! survive lost connections and agent restarts. The control plane's acks let whole
//! segments go. The spool is bounded in bytes: when full, the oldest segment goes and the
//! records in it that were never acked are counted as dropped — never silently lost.
//!
//! Only segment metadata lives in memory; records are read back from disk when sent, so
//! memory stays flat however far the control plane falls behind.
//!
//! On disk a record is `u32 length (LE) | u64 seq (LE) | protobuf TelemetryRecord`. A torn
//! tail (crash mid-write) is cut off when the spool is opened.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use prost::Message;
use tether_proto::v1::{TelemetryRecord, telemetry_record};

/// Bytes of framing per record.
const FRAME: u64 = 12;
/// Largest record accepted (a query record with a long text is far below this).
const MAX_RECORD: usize = 1 << 20;

#[derive(Debug, Clone)]
struct Segment {
    path: PathBuf,
    first_seq: u64,
    last_seq: u64,
    bytes: u64,
}

/// The spool.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    segments: VecDeque<Segment>,
    writer: Option<BufWriter<File>>,
    next_seq: u64,
    acked: u64,
    dropped_total: u64,
}

fn read_u64(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn write_u64(path: &Path, v: u64) -> std::io::Result<()> {
    tether_shared::files::write_private(path, v.to_string().as_bytes())
}

/// Scans a segment: its sequence range and the length of its intact prefix.
fn scan(path: &Path) -> std::io::Result<(Option<(u64, u64)>, u64)> {
    let mut r = BufReader::new(File::open(path)?);
    let mut good = 0u64;
    let mut range: Option<(u64, u64)> = None;
    loop {
        let mut head = [0u8; FRAME as usize];
        if r.read_exact(&mut head).is_err() {
            break;
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as u64;
        let seq = u64::from_le_bytes([
            head[4], head[5], head[6], head[7], head[8], head[9], head[10], head[11],
        ]);
        if len as usize > MAX_RECORD || r.seek_relative(len as i64).is_err() {
            break;
        }
        // seek_relative may go past the end without error; check the file length.
        let pos = r.stream_position()?;
        if pos > r.get_ref().metadata()?.len() {
            break;
        }
        good = pos;
        range = Some(range.map_or((seq, seq), |(first, _)| (first, seq)));
    }
    Ok((range, good))
}

impl Spool {
    /// Opens (creating) the spool in `dir`, bounded to `max_bytes`.
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let n = name
                    .strip_prefix("seg-")?
                    .strip_suffix(".log")?
                    .parse()
                    .ok()?;
                Some((n, e.path()))
            })
            .collect();
        files.sort();
        let mut segments = VecDeque::new();
        for (_, path) in files {
            let (range, good) = scan(&path)?;
            let len = std::fs::metadata(&path)?.len();
            if good < len {
                tracing::warn!(segment = %path.display(), kept = good, "cutting a torn record off the spool");
                OpenOptions::new().write(true).open(&path)?.set_len(good)?;
            }
            match range {
                Some((first_seq, last_seq)) => segments.push_back(Segment {
                    path,
                    first_seq,
                    last_seq,
                    bytes: good,
                }),
                None => std::fs::remove_file(&path)?,
            }
        }
        let acked = read_u64(&dir.join("acked"));
        let dropped_total = read_u64(&dir.join("dropped"));
        let last = segments
            .back()
            .map_or(0, |s| s.last_seq)
            .max(acked)
            .max(read_u64(&dir.join("next")).saturating_sub(1));
        let mut spool = Self {
            dir: dir.to_owned(),
            max_bytes: max_bytes.max(4096),
            segment_bytes: (max_bytes / 8).clamp(4096, 16 << 20),
            segments,
            writer: None,
            next_seq: last + 1,
            acked,
            dropped_total,
        };
        spool.forget_acked()?;
        Ok(spool)
    }

    /// The sequence number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The highest acked sequence number.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Records dropped because the spool was full, ever.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Records not yet acked (an upper bound when segments hold acked records too).
    pub fn pending(&self) -> u64 {
        self.next_seq - 1 - self.acked.min(self.next_seq - 1)
    }

    /// Appends a record; returns its sequence number.
    pub fn append(&mut self, kind: telemetry_record::Kind) -> std::io::Result<u64> {
        let seq = self.next_seq;
        let payload = TelemetryRecord {
            seq,
            kind: Some(kind),
        }
        .encode_to_vec();
        if payload.len() > MAX_RECORD {
            return Err(std::io::Error::other("telemetry record larger than 1 MiB"));
        }
        let size = FRAME + payload.len() as u64;
        let rotate = self
            .segments
            .back()
            .is_none_or(|s| s.bytes + size > self.segment_bytes)
            || self.writer.is_none();
        if rotate {
            self.rotate(seq)?;
        }
        let w = self
            .writer
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no spool segment"))?;
        w.write_all(&(payload.len() as u32).to_le_bytes())?;
        w.write_all(&seq.to_le_bytes())?;
        w.write_all(&payload)?;
        if let Some(seg) = self.segments.back_mut() {
            seg.last_seq = seq;
            seg.bytes += size;
        }
        self.next_seq += 1;
        self.enforce_bound()?;
        Ok(seq)
    }

    fn rotate(&mut self, first_seq: u64) -> std::io::Result<()> {
        if let Some(mut w) = self.writer.take() {
            w.flush()?;
        }
        let path = self.dir.join(format!("seg-{first_seq:020}.log"));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        self.writer = Some(BufWriter::new(file));
        // A new segment starts empty; its range is filled by the first append.
        self.segments.push_back(Segment {
            path,
            first_seq,
            last_seq: first_seq.saturating_sub(1),
            bytes: 0,
        });
        write_u64(&self.dir.join("next"), first_seq)?;
        Ok(())
    }

    /// Drops the oldest segments while over the bound, counting unacked records.
    fn enforce_bound(&mut self) -> std::io::Result<()> {
        while self.bytes() > self.max_bytes && self.segments.len() > 1 {
            let Some(old) = self.segments.pop_front() else {
                break;
            };
            let unacked = old
                .last_seq
                .saturating_sub(old.first_seq.max(self.acked + 1).saturating_sub(1));
            let lost = if old.last_seq > self.acked {
                unacked
            } else {
                0
            };
            self.dropped_total += lost;
            std::fs::remove_file(&old.path)?;
            // Dropped records will never be sent: move the ack point past them.
            self.acked = self.acked.max(old.last_seq);
            write_u64(&self.dir.join("acked"), self.acked)?;
            write_u64(&self.dir.join("dropped"), self.dropped_total)?;
            tracing::warn!(
                dropped = lost,
                total = self.dropped_total,
                "telemetry spool full: dropped the oldest records"
            );
        }
        Ok(())
    }

    /// Makes appended records durable (flush and fsync the current segment).
    pub fn sync(&mut self) -> std::io::Result<()> {
        if let Some(w) = self.writer.as_mut() {
            w.flush()?;
            w.get_ref().sync_data()?;
        }
        Ok(())
    }

    /// The control plane holds everything through `seq`.
    pub fn ack(&mut self, seq: u64) -> std::io::Result<()> {
        if seq <= self.acked {
            return Ok(());
        }
        self.acked = seq.min(self.next_seq - 1);
        write_u64(&self.dir.join("acked"), self.acked)?;
        self.forget_acked()
    }

    fn forget_acked(&mut self) -> std::io::Result<()> {
        while self.segments.len() > 1
            && self
                .segments
                .front()
                .is_some_and(|s| s.last_seq <= self.acked)
        {
            if let Some(s) = self.segments.pop_front() {
                std::fs::remove_file(&s.path)?;
            }
        }
        Ok(())
    }

    /// Up to `max_records` records from `from_seq` on (and at most about `max_bytes`).
    pub fn read_from(
        &mut self,
        from_seq: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> std::io::Result<Vec<TelemetryRecord>> {
        if let Some(w) = self.writer.as_mut() {
            w.flush()?;
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for seg in self
            .segments
            .iter()
            .filter(|s| s.last_seq >= from_seq && s.bytes > 0)
        {
            let mut r = BufReader::new(File::open(&seg.path)?);
            let mut read = 0u64;
            while read < seg.bytes {
                let mut head = [0u8; FRAME as usize];
                r.read_exact(&mut head)?;
                let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
                let seq = u64::from_le_bytes([
                    head[4], head[5], head[6], head[7], head[8], head[9], head[10], head[11],
                ]);
                read += FRAME + len as u64;
                if seq < from_seq {
                    r.seek_relative(len as i64)?;
                    continue;
                }
                let mut buf = vec![0u8; len];
                r.read_exact(&mut buf)?;
                let rec = TelemetryRecord::decode(buf.as_slice()).map_err(std::io::Error::other)?;
                bytes += len;
                out.push(rec);
                if out.len() >= max_records || bytes >= max_bytes {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_proto::v1::QueryRecord;

    fn query(id: &str) -> telemetry_record::Kind {
        telemetry_record::Kind::Query(QueryRecord {
            query_id: id.into(),
            query: "SELECT ?".into(),
            ..Default::default()
        })
    }

    #[test]
    fn sequences_survive_reopen_and_acks_free_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Spool::open(dir.path(), 1 << 20).expect("open");
        for i in 0..100 {
            assert_eq!(s.append(query(&format!("q{i}"))).expect("append"), i + 1);
        }
        s.sync().expect("sync");
        let recs = s.read_from(51, 1000, 1 << 20).expect("read");
        assert_eq!(recs.len(), 50);
        assert_eq!(recs[0].seq, 51);
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(s.next_seq(), 101);
        s.ack(100).expect("ack");
        assert!(s.read_from(101, 10, 1 << 20).expect("read").is_empty());
        drop(s);
        let s = Spool::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(
            (s.next_seq(), s.acked()),
            (101, 100),
            "sequence numbers are never reused"
        );
    }

    #[test]
    fn full_spool_drops_oldest_and_counts_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Spool::open(dir.path(), 64 * 1024).expect("open");
        let produced = 20_000u64;
        for i in 0..produced {
            s.append(query(&format!("query-{i:08}"))).expect("append");
        }
        assert!(s.bytes() <= 64 * 1024 + 8 * 1024, "bounded: {}", s.bytes());
        let mut delivered = 0u64;
        let mut from = s.acked() + 1;
        loop {
            let recs = s.read_from(from, 500, 1 << 20).expect("read");
            let Some(last) = recs.last() else { break };
            delivered += recs.len() as u64;
            from = last.seq + 1;
            s.ack(last.seq).expect("ack");
        }
        assert!(s.dropped_total() > 0);
        assert_eq!(
            delivered + s.dropped_total(),
            produced,
            "every record delivered or counted"
        );
    }

    #[test]
    fn torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Spool::open(dir.path(), 1 << 20).expect("open");
        for i in 0..10 {
            s.append(query(&format!("q{i}"))).expect("append");
        }
        s.sync().expect("sync");
        drop(s);
        let seg = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().starts_with("seg-"))
            .expect("segment");
        let mut f = OpenOptions::new()
            .append(true)
            .open(seg.path())
            .expect("open seg");
        f.write_all(&[200, 0, 0, 0, 11, 0]).expect("torn write");
        drop(f);
        let mut s = Spool::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(s.next_seq(), 11);
        assert_eq!(s.read_from(1, 100, 1 << 20).expect("read").len(), 10);
        assert_eq!(s.append(query("q10")).expect("append"), 11);
    }
}
