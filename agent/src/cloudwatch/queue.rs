//! The bounded buffer between `push` (any thread, never blocks) and the flusher.
//!
//! The bound covers the events waiting *and* the chunk being sent. When it is exceeded the
//! oldest waiting events go first; the chunk in flight is never dropped, because a batch
//! must survive transient errors — it is at most one PutLogEvents call (1 MiB), so the
//! memory used stays below the bound plus one call.
//!
//! Every event gets a sequence number in push order. Events leave the queue in that order
//! (shipped, rejected or dropped), so "everything pushed before X is settled" is a single
//! number, which is what `flush` waits for.

use std::collections::VecDeque;

use super::batch::{LogEvent, MAX_BATCH_BYTES, MAX_BATCH_EVENTS};

/// Result of one push.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Pushed {
    /// Events dropped to stay within the bound (possibly the pushed one itself).
    pub dropped: u64,
    /// A full PutLogEvents call is waiting: worth waking the flusher.
    pub batch_ready: bool,
}

/// The waiting events plus the bookkeeping of the chunk in flight.
#[derive(Debug)]
pub(crate) struct Queue {
    events: VecDeque<LogEvent>,
    bytes: usize,
    max_bytes: usize,
    /// Sequence number of `events[0]` (or of the next push when empty).
    front_seq: u64,
    /// Events taken by the flusher and not yet settled.
    inflight: Option<Inflight>,
}

#[derive(Debug, Clone, Copy)]
struct Inflight {
    first_seq: u64,
    events: usize,
    bytes: usize,
}

impl Queue {
    /// An empty queue holding at most `max_bytes` (see [`LogEvent::size`]).
    pub fn new(max_bytes: usize) -> Self {
        Self {
            events: VecDeque::new(),
            bytes: 0,
            max_bytes,
            front_seq: 0,
            inflight: None,
        }
    }

    /// Appends `event`, then drops the oldest waiting events while over the bound.
    pub fn push(&mut self, event: LogEvent) -> Pushed {
        self.bytes += event.size();
        self.events.push_back(event);
        let mut dropped = 0;
        while self.bytes + self.inflight_bytes() > self.max_bytes {
            let Some(old) = self.events.pop_front() else {
                break;
            };
            self.bytes -= old.size();
            self.front_seq += 1;
            dropped += 1;
        }
        Pushed {
            dropped,
            batch_ready: self.events.len() >= MAX_BATCH_EVENTS || self.bytes >= MAX_BATCH_BYTES,
        }
    }

    /// Takes the oldest events, at most one PutLogEvents call's worth, and marks them in
    /// flight. `None` when nothing waits or a chunk is already in flight.
    pub fn take_chunk(&mut self) -> Option<Vec<LogEvent>> {
        if self.inflight.is_some() || self.events.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let mut n = 0;
        for e in &self.events {
            if n == MAX_BATCH_EVENTS || (n > 0 && bytes + e.size() > MAX_BATCH_BYTES) {
                break;
            }
            bytes += e.size();
            n += 1;
        }
        let chunk: Vec<LogEvent> = self.events.drain(..n).collect();
        self.bytes -= bytes;
        self.inflight = Some(Inflight {
            first_seq: self.front_seq,
            events: n,
            bytes,
        });
        self.front_seq += n as u64;
        Some(chunk)
    }

    /// The chunk in flight is done with (accepted, rejected or given up on).
    pub fn settle(&mut self) {
        self.inflight = None;
    }

    /// Sequence number of the next push.
    pub fn next_seq(&self) -> u64 {
        self.front_seq + self.events.len() as u64
    }

    /// Every event with a smaller sequence number has left the queue for good.
    pub fn settled_before(&self) -> u64 {
        self.inflight.map_or(self.front_seq, |i| i.first_seq)
    }

    /// Bytes held, waiting or in flight.
    pub fn bytes(&self) -> usize {
        self.bytes + self.inflight_bytes()
    }

    /// Events held, waiting or in flight.
    pub fn len(&self) -> usize {
        self.events.len() + self.inflight.map_or(0, |i| i.events)
    }

    fn inflight_bytes(&self) -> usize {
        self.inflight.map_or(0, |i| i.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(i: usize) -> LogEvent {
        // 4 message bytes + 26 = 30 bytes each.
        LogEvent::new(i as i64, format!("{i:04}"))
    }

    #[test]
    fn over_the_bound_the_oldest_go_first() {
        let mut q = Queue::new(300);
        let mut dropped = 0;
        for i in 0..25 {
            dropped += q.push(ev(i)).dropped;
        }
        assert_eq!(dropped, 15);
        assert_eq!(q.bytes(), 300);
        assert_eq!(q.len(), 10);
        let chunk = q.take_chunk().unwrap();
        let msgs: Vec<_> = chunk.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(msgs.first(), Some(&"0015"));
        assert_eq!(msgs.last(), Some(&"0024"));
    }

    #[test]
    fn the_chunk_in_flight_counts_but_is_never_dropped() {
        let mut q = Queue::new(300);
        for i in 0..10 {
            q.push(ev(i));
        }
        let chunk = q.take_chunk().unwrap();
        assert_eq!(chunk.len(), 10);
        assert_eq!(q.bytes(), 300);
        // Full: each new event displaces the previous waiting one, never the chunk.
        assert_eq!(q.push(ev(10)).dropped, 1);
        assert_eq!(q.len(), 10);
        assert_eq!(q.settled_before(), 0);
        q.settle();
        assert_eq!(q.settled_before(), 11);
        assert_eq!(q.next_seq(), 11);
        assert_eq!(q.push(ev(11)).dropped, 0);
        assert_eq!(q.take_chunk().unwrap()[0].message, "0011");
    }

    #[test]
    fn chunks_are_at_most_one_call() {
        let mut q = Queue::new(usize::MAX);
        let mut ready = false;
        for i in 0..25_000 {
            ready |= q.push(ev(i)).batch_ready;
        }
        assert!(ready);
        let mut sizes = Vec::new();
        while let Some(c) = q.take_chunk() {
            sizes.push(c.len());
            assert!(q.take_chunk().is_none(), "one chunk in flight at a time");
            q.settle();
        }
        assert_eq!(sizes, vec![10_000, 10_000, 5_000]);
        assert_eq!(q.settled_before(), 25_000);
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn chunks_respect_the_byte_limit() {
        let mut q = Queue::new(usize::MAX);
        let big = "x".repeat(100_000);
        for i in 0..25 {
            q.push(LogEvent::new(i, big.clone()));
        }
        let c = q.take_chunk().unwrap();
        assert_eq!(c.len(), 10, "10 × 100,026 bytes fit in 1 MiB, 11 do not");
    }

    #[test]
    fn an_event_larger_than_the_bound_is_dropped_itself() {
        let mut q = Queue::new(10);
        let p = q.push(ev(0));
        assert_eq!(p.dropped, 1);
        assert_eq!(q.len(), 0);
        assert_eq!(q.settled_before(), q.next_seq());
    }
}
