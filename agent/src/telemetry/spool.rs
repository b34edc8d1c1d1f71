//! The telemetry spool: every record gets the next per-agent sequence number and is
//! appended to a segment file under `STATE_DIR/spool/` before anything is sent, so records
//! survive lost connections and agent restarts. The control plane's acks let whole
//! segments go. The spool is bounded in bytes: when full, it drops the oldest segment of
//! the lowest class that has one — query records before metrics before events ([`Class`])
//! — and counts the records in it that were never acked, per class: never silently lost.
//! A record dropped while in flight (sent, not yet acked) is counted only if no ack covers
//! it before the session ends, so each record is either delivered or counted dropped, once.
//!
//! Each class has its own lane of segments (`spool/events/`, `spool/metrics/`,
//! `spool/queries/`), all numbered from one sequence; reading merges them in sequence
//! order, and a dropped segment leaves a gap the control plane never asks for (acks are a
//! high-water mark). Only segment metadata lives in memory; records are read back from disk
//! when sent, so memory stays flat however far the control plane falls behind.
//!
//! On disk a record is `u32 length (LE) | u64 seq (LE) | protobuf TelemetryRecord`. A torn
//! tail (crash mid-write) is cut off when the spool is opened. A spool of an earlier
//! version (one lane, `spool/seg-*.log`) is sorted into the lanes when opened.

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

/// Telemetry classes, lowest priority first: a full spool drops query records before
/// metrics, and metrics before events. (Cluster status is not spooled: each session sends
/// the latest whole; logs go to the customer's CloudWatch, never upstream.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// Query records.
    QueryRecords = 0,
    /// Metric samples.
    Metrics = 1,
    /// Events.
    Events = 2,
}

impl Class {
    /// Every class, lowest priority first.
    pub const ALL: [Class; 3] = [Class::QueryRecords, Class::Metrics, Class::Events];

    /// The class of a record.
    pub fn of(kind: &telemetry_record::Kind) -> Self {
        match kind {
            telemetry_record::Kind::Query(_) => Self::QueryRecords,
            telemetry_record::Kind::Metric(_) => Self::Metrics,
            telemetry_record::Kind::Event(_) => Self::Events,
        }
    }

    /// Its lane's directory under the spool.
    fn dir_name(self) -> &'static str {
        match self {
            Self::QueryRecords => "queries",
            Self::Metrics => "metrics",
            Self::Events => "events",
        }
    }
}

/// Records dropped because the spool was full, per class, ever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Query records.
    pub query_records: u64,
    /// Metric samples.
    pub metrics: u64,
    /// Events.
    pub events: u64,
    /// Dropped by a spool of an earlier version, which did not count per class.
    pub unclassified: u64,
}

impl Dropped {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.query_records + self.metrics + self.events + self.unclassified
    }
}

#[derive(Debug, Clone)]
struct Segment {
    path: PathBuf,
    first_seq: u64,
    last_seq: u64,
    bytes: u64,
    /// Records in it.
    records: u64,
}

/// The segments of one class.
#[derive(Debug)]
struct Lane {
    dir: PathBuf,
    segments: VecDeque<Segment>,
    writer: Option<BufWriter<File>>,
    dropped: u64,
}

impl Lane {
    fn open(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let segments = open_segments(&dir)?;
        let dropped = read_u64(&dir.join("dropped"));
        Ok(Self {
            dir,
            segments,
            writer: None,
            dropped,
        })
    }

    fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    fn last_seq(&self) -> u64 {
        self.segments.back().map_or(0, |s| s.last_seq)
    }

    fn write(&mut self, seq: u64, payload: &[u8], segment_bytes: u64) -> std::io::Result<()> {
        let size = FRAME + payload.len() as u64;
        let rotate = self.writer.is_none()
            || self
                .segments
                .back()
                .is_none_or(|s| s.bytes + size > segment_bytes);
        if rotate {
            if let Some(mut w) = self.writer.take() {
                w.flush()?;
            }
            let path = self.dir.join(format!("seg-{seq:020}.log"));
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            self.writer = Some(BufWriter::new(file));
            self.segments.push_back(Segment {
                path,
                first_seq: seq,
                last_seq: seq.saturating_sub(1),
                bytes: 0,
                records: 0,
            });
        }
        let w = self
            .writer
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no spool segment"))?;
        w.write_all(&(payload.len() as u32).to_le_bytes())?;
        w.write_all(&seq.to_le_bytes())?;
        w.write_all(payload)?;
        if let Some(seg) = self.segments.back_mut() {
            seg.last_seq = seq;
            seg.bytes += size;
            seg.records += 1;
        }
        Ok(())
    }

    /// Drops the oldest segment. Returns the records in it that were not acked and not
    /// sent (lost), and the sequence numbers of those sent but not yet acked (in flight:
    /// the control plane may still hold them, so the next ack decides).
    fn drop_oldest(&mut self, acked: u64, sent: u64) -> std::io::Result<(u64, Vec<u64>)> {
        let Some(old) = self.segments.pop_front() else {
            return Ok((0, Vec::new()));
        };
        if self.segments.is_empty()
            && let Some(mut w) = self.writer.take()
        {
            w.flush()?;
        }
        // Only a segment the ack or the send point falls inside is read.
        let (lost, in_flight) = if old.last_seq <= acked {
            (0, Vec::new())
        } else if old.first_seq > sent.max(acked) {
            (old.records, Vec::new())
        } else {
            let unacked = unacked_seqs(&old.path, acked)?;
            let (in_flight, lost): (Vec<u64>, Vec<u64>) =
                unacked.into_iter().partition(|seq| *seq <= sent);
            (lost.len() as u64, in_flight)
        };
        std::fs::remove_file(&old.path)?;
        self.count_dropped(lost)?;
        Ok((lost, in_flight))
    }

    fn count_dropped(&mut self, n: u64) -> std::io::Result<()> {
        if n > 0 {
            self.dropped += n;
            write_u64(&self.dir.join("dropped"), self.dropped)?;
        }
        Ok(())
    }

    /// Forgets segments wholly acked (never the one being written).
    fn forget_acked(&mut self, acked: u64) -> std::io::Result<()> {
        while self.segments.len() > 1 && self.segments.front().is_some_and(|s| s.last_seq <= acked)
        {
            if let Some(s) = self.segments.pop_front() {
                std::fs::remove_file(&s.path)?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(w) = self.writer.as_mut() {
            w.flush()?;
        }
        Ok(())
    }

    /// Up to `max` records (and about `max_bytes`) from `from_seq` on, in order.
    fn read_from(
        &mut self,
        from_seq: u64,
        max: usize,
        max_bytes: usize,
    ) -> std::io::Result<Vec<TelemetryRecord>> {
        self.flush()?;
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
                let (len, seq) = read_head(&mut r)?;
                read += FRAME + len as u64;
                if seq < from_seq {
                    r.seek_relative(len as i64)?;
                    continue;
                }
                let mut buf = vec![0u8; len];
                r.read_exact(&mut buf)?;
                out.push(TelemetryRecord::decode(buf.as_slice()).map_err(std::io::Error::other)?);
                bytes += len;
                if out.len() >= max || bytes >= max_bytes {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }
}

fn read_head(r: &mut impl Read) -> std::io::Result<(usize, u64)> {
    let mut head = [0u8; FRAME as usize];
    r.read_exact(&mut head)?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let seq = u64::from_le_bytes([
        head[4], head[5], head[6], head[7], head[8], head[9], head[10], head[11],
    ]);
    Ok((len, seq))
}

/// The sequence numbers of a segment's records above `acked`.
fn unacked_seqs(path: &Path, acked: u64) -> std::io::Result<Vec<u64>> {
    let mut r = BufReader::new(File::open(path)?);
    let mut seqs = Vec::new();
    while let Ok((len, seq)) = read_head(&mut r) {
        if seq > acked {
            seqs.push(seq);
        }
        r.seek_relative(len as i64)?;
    }
    Ok(seqs)
}

/// The segments of a directory, torn tails cut off, empty ones removed.
fn open_segments(dir: &Path) -> std::io::Result<VecDeque<Segment>> {
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
        let (range, good, records) = scan(&path)?;
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
                records,
            }),
            None => std::fs::remove_file(&path)?,
        }
    }
    Ok(segments)
}

/// The spool.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    /// One per [`Class`], indexed by it.
    lanes: [Lane; 3],
    next_seq: u64,
    acked: u64,
    /// The highest sequence number handed to the uplink in this session.
    sent: u64,
    /// Records dropped while in flight (sent, not yet acked): delivered if an ack covers
    /// them, dropped if the session ends first. Counting them at once would count a record
    /// the control plane did receive twice, once delivered and once dropped.
    in_flight_dropped: Vec<(Class, u64)>,
    /// Dropped before drops were counted per class.
    unclassified_dropped: u64,
}

/// The file holding [`Spool::in_flight_dropped`] across restarts, a line `class seq` each.
const IN_FLIGHT_DROPPED: &str = "in-flight-dropped";

fn read_in_flight_dropped(path: &Path) -> Vec<(Class, u64)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let (class, seq) = line.split_once(' ')?;
            let class = Class::ALL.into_iter().find(|c| c.dir_name() == class)?;
            Some((class, seq.trim().parse().ok()?))
        })
        .collect()
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

/// What [`scan`] finds: the sequence range, the length of the intact prefix, the records.
type Scanned = (Option<(u64, u64)>, u64, u64);

/// Scans a segment: its sequence range, the length of its intact prefix and its records.
fn scan(path: &Path) -> std::io::Result<Scanned> {
    let mut r = BufReader::new(File::open(path)?);
    let mut good = 0u64;
    let mut records = 0u64;
    let mut range: Option<(u64, u64)> = None;
    while let Ok((len, seq)) = read_head(&mut r) {
        if len > MAX_RECORD || r.seek_relative(len as i64).is_err() {
            break;
        }
        // seek_relative may go past the end without error; check the file length.
        let pos = r.stream_position()?;
        if pos > r.get_ref().metadata()?.len() {
            break;
        }
        good = pos;
        records += 1;
        range = Some(range.map_or((seq, seq), |(first, _)| (first, seq)));
    }
    Ok((range, good, records))
}

impl Spool {
    /// Opens (creating) the spool in `dir`, bounded to `max_bytes`.
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let lanes = [
            Lane::open(dir.join(Class::QueryRecords.dir_name()))?,
            Lane::open(dir.join(Class::Metrics.dir_name()))?,
            Lane::open(dir.join(Class::Events.dir_name()))?,
        ];
        let acked = read_u64(&dir.join("acked"));
        let counted: u64 = lanes.iter().map(|l| l.dropped).sum();
        let unclassified_dropped = read_u64(&dir.join("dropped")).saturating_sub(counted);
        let last = lanes
            .iter()
            .map(Lane::last_seq)
            .max()
            .unwrap_or(0)
            .max(acked)
            .max(read_u64(&dir.join("next")).saturating_sub(1));
        let mut spool = Self {
            dir: dir.to_owned(),
            max_bytes: max_bytes.max(4096),
            segment_bytes: (max_bytes / 8).clamp(4096, 16 << 20),
            lanes,
            next_seq: last + 1,
            acked,
            sent: acked,
            in_flight_dropped: read_in_flight_dropped(&dir.join(IN_FLIGHT_DROPPED)),
            unclassified_dropped,
        };
        spool.sort_legacy_segments()?;
        spool.forget_acked()?;
        Ok(spool)
    }

    /// Moves the records of a one-lane spool (`spool/seg-*.log`) into the lanes, keeping
    /// their sequence numbers.
    fn sort_legacy_segments(&mut self) -> std::io::Result<()> {
        let legacy = open_segments(&self.dir)?;
        if legacy.is_empty() {
            return Ok(());
        }
        let mut last = 0;
        // After a crash mid-way, each lane already holds a prefix of its records: what
        // it has is not copied again (a lane is written in sequence order).
        let had: Vec<u64> = self.lanes.iter().map(Lane::last_seq).collect();
        for seg in &legacy {
            let mut r = BufReader::new(File::open(&seg.path)?);
            let mut read = 0u64;
            while read < seg.bytes {
                let (len, seq) = read_head(&mut r)?;
                read += FRAME + len as u64;
                let mut buf = vec![0u8; len];
                r.read_exact(&mut buf)?;
                last = last.max(seq);
                if seq <= self.acked {
                    continue;
                }
                let Ok(rec) = TelemetryRecord::decode(buf.as_slice()) else {
                    continue;
                };
                if let Some(kind) = &rec.kind {
                    let class = Class::of(kind) as usize;
                    if seq > had[class] {
                        self.lanes[class].write(seq, &buf, self.segment_bytes)?;
                    }
                }
            }
        }
        self.sync()?;
        for seg in legacy {
            std::fs::remove_file(&seg.path)?;
        }
        self.next_seq = self.next_seq.max(last + 1);
        tracing::info!("sorted the telemetry spool into classes");
        Ok(())
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
        self.dropped().total()
    }

    /// Records dropped because the spool was full, per class, ever.
    pub fn dropped(&self) -> Dropped {
        Dropped {
            query_records: self.lanes[Class::QueryRecords as usize].dropped,
            metrics: self.lanes[Class::Metrics as usize].dropped,
            events: self.lanes[Class::Events as usize].dropped,
            unclassified: self.unclassified_dropped,
        }
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.lanes.iter().map(Lane::bytes).sum()
    }

    /// Records not yet acked (an upper bound: dropped records count too).
    pub fn pending(&self) -> u64 {
        self.next_seq - 1 - self.acked.min(self.next_seq - 1)
    }

    /// Appends a record; returns its sequence number.
    pub fn append(&mut self, kind: telemetry_record::Kind) -> std::io::Result<u64> {
        let seq = self.next_seq;
        let class = Class::of(&kind);
        let payload = TelemetryRecord {
            seq,
            kind: Some(kind),
        }
        .encode_to_vec();
        if payload.len() > MAX_RECORD {
            return Err(std::io::Error::other("telemetry record larger than 1 MiB"));
        }
        let lane = &mut self.lanes[class as usize];
        let new_segment = lane.writer.is_none()
            || lane
                .segments
                .back()
                .is_none_or(|s| s.bytes + FRAME + payload.len() as u64 > self.segment_bytes);
        lane.write(seq, &payload, self.segment_bytes)?;
        if new_segment {
            write_u64(&self.dir.join("next"), seq)?;
        }
        self.next_seq += 1;
        self.enforce_bound()?;
        Ok(seq)
    }

    /// While over the bound, drops the oldest segment of the lowest class that has one,
    /// counting the records in it that were never acked. The segment just written stays.
    fn enforce_bound(&mut self) -> std::io::Result<()> {
        loop {
            let segments: usize = self.lanes.iter().map(|l| l.segments.len()).sum();
            if self.bytes() <= self.max_bytes || segments <= 1 {
                return Ok(());
            }
            let newest = self.next_seq - 1;
            let Some(class) = Class::ALL.into_iter().find(|c| {
                let lane = &self.lanes[*c as usize];
                lane.segments
                    .front()
                    .is_some_and(|s| lane.segments.len() > 1 || s.last_seq != newest)
            }) else {
                return Ok(());
            };
            let (lost, in_flight) =
                self.lanes[class as usize].drop_oldest(self.acked, self.sent)?;
            if !in_flight.is_empty() {
                self.in_flight_dropped
                    .extend(in_flight.into_iter().map(|seq| (class, seq)));
                self.write_in_flight_dropped()?;
            }
            write_u64(&self.dir.join("dropped"), self.dropped_total())?;
            tracing::warn!(
                class = class.dir_name(),
                dropped = lost,
                total = self.dropped_total(),
                "telemetry spool full: dropped the oldest records of the lowest class"
            );
        }
    }

    /// Makes appended records durable (flush and fsync the current segments).
    pub fn sync(&mut self) -> std::io::Result<()> {
        for lane in &mut self.lanes {
            if let Some(w) = lane.writer.as_mut() {
                w.flush()?;
                w.get_ref().sync_data()?;
            }
        }
        Ok(())
    }

    /// The control plane holds everything through `seq`.
    pub fn ack(&mut self, seq: u64) -> std::io::Result<()> {
        if seq <= self.acked {
            return Ok(());
        }
        self.acked = seq.min(self.next_seq - 1);
        self.sent = self.sent.max(self.acked);
        write_u64(&self.dir.join("acked"), self.acked)?;
        if !self.in_flight_dropped.is_empty() {
            // Dropped while in flight, and the control plane has them: delivered.
            let before = self.in_flight_dropped.len();
            let acked = self.acked;
            self.in_flight_dropped.retain(|(_, s)| *s > acked);
            if self.in_flight_dropped.len() != before {
                self.write_in_flight_dropped()?;
            }
        }
        self.forget_acked()
    }

    /// A new uplink session begins where the control plane says it holds everything
    /// (`acked`, from Welcome): what was in flight before and is neither acked nor in the
    /// spool any more is lost, and counted now.
    pub fn start_session(&mut self, acked: u64) -> std::io::Result<()> {
        self.ack(acked)?;
        self.sent = self.acked;
        if self.in_flight_dropped.is_empty() {
            return Ok(());
        }
        for (class, _) in std::mem::take(&mut self.in_flight_dropped) {
            self.lanes[class as usize].count_dropped(1)?;
        }
        self.write_in_flight_dropped()?;
        write_u64(&self.dir.join("dropped"), self.dropped_total())
    }

    /// `seq` and everything before it has been handed to the uplink.
    pub fn mark_sent(&mut self, seq: u64) {
        self.sent = self.sent.max(seq);
    }

    fn write_in_flight_dropped(&self) -> std::io::Result<()> {
        let text: String = self
            .in_flight_dropped
            .iter()
            .map(|(class, seq)| format!("{} {seq}\n", class.dir_name()))
            .collect();
        tether_shared::files::write_private(&self.dir.join(IN_FLIGHT_DROPPED), text.as_bytes())
    }

    fn forget_acked(&mut self) -> std::io::Result<()> {
        for lane in &mut self.lanes {
            lane.forget_acked(self.acked)?;
        }
        Ok(())
    }

    /// Up to `max_records` records from `from_seq` on (and at most about `max_bytes`), in
    /// sequence order across the classes.
    pub fn read_from(
        &mut self,
        from_seq: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> std::io::Result<Vec<TelemetryRecord>> {
        let mut all = Vec::new();
        for lane in &mut self.lanes {
            // Each lane's first records up to the budget hold every record the merge keeps.
            all.extend(lane.read_from(from_seq, max_records, max_bytes)?);
        }
        all.sort_by_key(|r| r.seq);
        let mut bytes = 0usize;
        let mut out = Vec::new();
        for rec in all {
            if out.len() >= max_records || bytes >= max_bytes {
                break;
            }
            bytes += rec.encoded_len();
            out.push(rec);
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

    /// Reads and acks every record from `from` on, as an uplink would; returns how many.
    fn deliver_all(s: &mut Spool, mut from: u64) -> u64 {
        let mut delivered = 0;
        loop {
            let recs = s.read_from(from, 500, 1 << 20).expect("read");
            let Some(last) = recs.last() else {
                return delivered;
            };
            delivered += recs.len() as u64;
            from = last.seq + 1;
            s.ack(last.seq).expect("ack");
        }
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
        let from = s.acked() + 1;
        let delivered = deliver_all(&mut s, from);
        assert!(s.dropped_total() > 0);
        assert_eq!(
            delivered + s.dropped_total(),
            produced,
            "every record delivered or counted"
        );
    }

    /// Fills a 64 KiB spool while the first `sent` records are in flight; returns how
    /// many were read (sent).
    fn fill_with_records_in_flight(s: &mut Spool) -> u64 {
        for i in 0..100 {
            s.append(query(&format!("query-{i:08}"))).expect("append");
        }
        let recs = s.read_from(1, 100, 1 << 20).expect("read");
        let sent = recs.last().expect("records").seq;
        s.mark_sent(sent);
        for i in 100..5_000 {
            s.append(query(&format!("query-{i:08}"))).expect("append");
        }
        sent
    }

    #[test]
    fn a_record_dropped_in_flight_counts_once_delivered_or_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Acked after the drop: the control plane has them, so they are not dropped.
        let mut s = Spool::open(dir.path(), 64 * 1024).expect("open");
        let sent = fill_with_records_in_flight(&mut s);
        assert!(
            !s.in_flight_dropped.is_empty(),
            "the spool dropped records in flight"
        );
        let dropped_before_ack = s.dropped_total();
        s.ack(sent).expect("ack");
        assert_eq!(s.dropped_total(), dropped_before_ack, "acked, so delivered");
        let delivered = sent + deliver_all(&mut s, sent + 1);
        assert_eq!(delivered + s.dropped_total(), 5_000, "each counted once");

        // The session ends before the ack: the next one counts them dropped, also after a
        // restart in between.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Spool::open(dir.path(), 64 * 1024).expect("open");
        fill_with_records_in_flight(&mut s);
        drop(s);
        let mut s = Spool::open(dir.path(), 64 * 1024).expect("reopen");
        s.start_session(0).expect("session");
        let delivered = deliver_all(&mut s, 1);
        assert!(delivered < 5_000);
        assert_eq!(delivered + s.dropped_total(), 5_000, "each counted once");
    }

    fn event(i: u64) -> telemetry_record::Kind {
        telemetry_record::Kind::Event(tether_proto::v1::Event {
            cluster: "c".into(),
            r#type: "Warning".into(),
            reason: "Test".into(),
            message: format!("event {i:08}"),
            timestamp_unix_ms: i as i64,
        })
    }

    fn metric(i: u64) -> telemetry_record::Kind {
        telemetry_record::Kind::Metric(tether_proto::v1::MetricSample {
            cluster: "c".into(),
            name: "presto_running_queries".into(),
            value: i as f64,
            timestamp_unix_ms: i as i64,
        })
    }

    #[test]
    fn a_full_spool_drops_query_records_first_then_metrics_and_keeps_events() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Spool::open(dir.path(), 64 * 1024).expect("open");
        let (mut events, mut metrics, mut queries) = (0u64, 0u64, 0u64);
        for i in 0..6_000u64 {
            match i % 6 {
                0 => {
                    s.append(event(i)).expect("append");
                    events += 1;
                }
                1 | 2 => {
                    s.append(metric(i)).expect("append");
                    metrics += 1;
                }
                _ => {
                    s.append(query(&format!("query-{i:08}"))).expect("append");
                    queries += 1;
                }
            }
        }
        let d = s.dropped();
        assert!(d.query_records > 0, "{d:?}");
        assert_eq!(d.events, 0, "events are the last to go: {d:?}");
        let mut got = (0u64, 0u64, 0u64);
        let mut from = 1;
        let mut last_seq = 0;
        loop {
            let recs = s.read_from(from, 500, 1 << 20).expect("read");
            let Some(last) = recs.last() else { break };
            for r in &recs {
                assert!(r.seq > last_seq, "in sequence order");
                last_seq = r.seq;
                match Class::of(r.kind.as_ref().expect("kind")) {
                    Class::Events => got.0 += 1,
                    Class::Metrics => got.1 += 1,
                    Class::QueryRecords => got.2 += 1,
                }
            }
            from = last.seq + 1;
            s.ack(last.seq).expect("ack");
        }
        assert_eq!(got.0, events, "every event delivered");
        assert_eq!(got.1 + d.metrics, metrics, "metrics delivered or counted");
        assert_eq!(
            got.2 + d.query_records,
            queries,
            "queries delivered or counted"
        );
        drop(s);
        let s = Spool::open(dir.path(), 64 * 1024).expect("reopen");
        assert_eq!(s.dropped(), d, "the counts survive a restart");
    }

    #[test]
    fn a_one_lane_spool_of_an_earlier_version_is_sorted_into_classes() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The earlier layout: one segment, records of every class.
        let mut seg = Vec::new();
        for (seq, kind) in [(5u64, query("q5")), (6, event(6)), (7, metric(7))] {
            let payload = TelemetryRecord {
                seq,
                kind: Some(kind),
            }
            .encode_to_vec();
            seg.extend((payload.len() as u32).to_le_bytes());
            seg.extend(seq.to_le_bytes());
            seg.extend(payload);
        }
        std::fs::write(dir.path().join("seg-00000000000000000005.log"), &seg).expect("seg");
        // A crash mid-way had copied the first record into its lane already.
        std::fs::create_dir_all(dir.path().join("queries")).expect("lane");
        let first = u32::from_le_bytes([seg[0], seg[1], seg[2], seg[3]]) as usize + 12;
        std::fs::write(
            dir.path().join("queries/seg-00000000000000000005.log"),
            &seg[..first],
        )
        .expect("partial lane");
        std::fs::write(dir.path().join("acked"), "4").expect("acked");
        std::fs::write(dir.path().join("dropped"), "3").expect("dropped");
        let mut s = Spool::open(dir.path(), 1 << 20).expect("open");
        assert_eq!(s.next_seq(), 8);
        let seqs: Vec<u64> = s
            .read_from(5, 10, 1 << 20)
            .expect("read")
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, [5, 6, 7], "each record once");
        assert_eq!(s.dropped().unclassified, 3);
        assert!(!dir.path().join("seg-00000000000000000005.log").exists());
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
        let seg = std::fs::read_dir(dir.path().join("queries"))
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
