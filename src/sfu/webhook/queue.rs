//! The webhook's delivery queue, sans IO: notices wait in order, one is in flight
//! at a time (the platform sees them in the order they happened), a failed delivery
//! is retried with growing delays, and a full queue drops its oldest notice, counted.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// First retry delay after a failure; doubled per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// One notice's request body, numbered in the order of [`Queue::push`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delivery {
    pub seq: u64,
    pub body: String,
}

/// How one POST went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A 2xx answer.
    Delivered,
    /// Not reached, timed out, or an answer worth trying again (5xx, 408, 429).
    Retry,
    /// The platform refused this notice for good (another 4xx): trying it again
    /// would only hold the others back.
    Refused,
}

/// Why a notice will never be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loss {
    /// The queue was full and this was its oldest notice.
    Overflow {
        seq: u64,
    },
    Refused {
        seq: u64,
    },
}

#[derive(Debug)]
pub(crate) struct Queue {
    waiting: VecDeque<Delivery>,
    capacity: usize,
    /// The notice handed out by [`Queue::next_delivery`] and not yet answered.
    in_flight: Option<u64>,
    /// Failures in a row; the next try waits for the backoff they earned.
    failures: u32,
    retry_at: Option<Instant>,
    next_seq: u64,
    lost: u64,
}

impl Queue {
    pub(crate) fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "a webhook queue holds at least one notice");
        Self {
            waiting: VecDeque::with_capacity(capacity),
            capacity,
            in_flight: None,
            failures: 0,
            retry_at: None,
            next_seq: 0,
            lost: 0,
        }
    }

    /// The number the next pushed notice gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Queues a body made for [`Queue::next_seq`]; when full, the oldest waiting
    /// notice (never the one in flight) makes room and is returned as lost.
    pub(crate) fn push(&mut self, body: String) -> Option<Loss> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut loss = None;
        if self.waiting.len() == self.capacity {
            // The one in flight is at the front: drop the oldest behind it, or it
            // when it is the only one (a full queue of capacity 1).
            let victim = match (self.in_flight, self.waiting.len()) {
                (Some(_), n) if n > 1 => 1,
                _ => 0,
            };
            let dropped = self.waiting.remove(victim).expect("a full queue");
            if victim == 0 {
                self.in_flight = None;
            }
            self.lost += 1;
            loss = Some(Loss::Overflow { seq: dropped.seq });
        }
        self.waiting.push_back(Delivery { seq, body });
        loss
    }

    /// The notice to POST now, if one is waiting, none is in flight and no retry
    /// delay is running.
    pub(crate) fn next_delivery(&mut self, now: Instant) -> Option<Delivery> {
        if self.in_flight.is_some() || self.retry_at.is_some_and(|at| now < at) {
            return None;
        }
        let next = self.waiting.front()?.clone();
        self.retry_at = None;
        self.in_flight = Some(next.seq);
        Some(next)
    }

    /// When [`Queue::next_delivery`] may have something again (none: when pushed).
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        match self.in_flight {
            Some(_) => None,
            None if self.waiting.is_empty() => None,
            None => self.retry_at,
        }
    }

    /// The answer to the delivery `seq`; a notice dropped meanwhile is ignored.
    pub(crate) fn answered(&mut self, seq: u64, outcome: Outcome, now: Instant) -> Option<Loss> {
        if self.in_flight != Some(seq) {
            return None;
        }
        self.in_flight = None;
        match outcome {
            Outcome::Delivered | Outcome::Refused => {
                self.waiting.pop_front();
                self.failures = 0;
                self.retry_at = None;
                (outcome == Outcome::Refused).then(|| {
                    self.lost += 1;
                    Loss::Refused { seq }
                })
            }
            Outcome::Retry => {
                let backoff = FIRST_BACKOFF
                    .saturating_mul(1 << self.failures.min(16))
                    .min(MAX_BACKOFF);
                self.failures = self.failures.saturating_add(1);
                self.retry_at = Some(now + backoff);
                None
            }
        }
    }

    /// Notices waiting, the one in flight included.
    pub(crate) fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Notices that will never be delivered, since the start.
    pub(crate) fn lost(&self) -> u64 {
        self.lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(q: &mut Queue, text: &str) -> Option<Loss> {
        q.push(text.to_owned())
    }

    #[test]
    fn delivers_in_order_one_at_a_time() {
        let t = Instant::now();
        let mut q = Queue::new(8);
        push(&mut q, "a");
        push(&mut q, "b");
        let a = q.next_delivery(t).unwrap();
        assert_eq!((a.seq, a.body.as_str()), (0, "a"));
        assert_eq!(q.next_delivery(t), None, "one in flight at a time");
        assert_eq!(q.next_wake(), None);
        assert_eq!(q.answered(0, Outcome::Delivered, t), None);
        assert_eq!(q.next_delivery(t).unwrap().body, "b");
        q.answered(1, Outcome::Delivered, t);
        assert_eq!((q.len(), q.lost()), (0, 0));
        assert_eq!(q.next_delivery(t), None);
    }

    #[test]
    fn failures_back_off_growing_up_to_a_cap_and_success_resets() {
        let t = Instant::now();
        let mut q = Queue::new(8);
        push(&mut q, "a");
        let mut now = t;
        let mut delays = Vec::new();
        for _ in 0..8 {
            let d = q.next_delivery(now).expect("due");
            q.answered(d.seq, Outcome::Retry, now);
            let at = q.next_wake().expect("a retry is scheduled");
            assert_eq!(q.next_delivery(at - Duration::from_millis(1)), None);
            delays.push(at - now);
            now = at;
        }
        let ms: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [250, 500, 1000, 2000, 4000, 8000, 8000, 8000]);
        let d = q.next_delivery(now).unwrap();
        assert_eq!(d.body, "a", "the same notice is retried");
        q.answered(d.seq, Outcome::Delivered, now);
        push(&mut q, "b");
        let d = q.next_delivery(now).unwrap();
        q.answered(d.seq, Outcome::Retry, now);
        assert_eq!(q.next_wake(), Some(now + FIRST_BACKOFF));
    }

    #[test]
    fn a_full_queue_drops_its_oldest_waiting_notice_and_counts_it() {
        let t = Instant::now();
        let mut q = Queue::new(3);
        for s in ["a", "b", "c"] {
            assert_eq!(push(&mut q, s), None);
        }
        let a = q.next_delivery(t).unwrap();
        // "a" is in flight: "b" is the oldest that can go.
        assert_eq!(push(&mut q, "d"), Some(Loss::Overflow { seq: 1 }));
        assert_eq!(push(&mut q, "e"), Some(Loss::Overflow { seq: 2 }));
        assert_eq!((q.len(), q.lost()), (3, 2));
        q.answered(a.seq, Outcome::Delivered, t);
        let bodies: Vec<String> = std::iter::from_fn(|| {
            let d = q.next_delivery(t)?;
            q.answered(d.seq, Outcome::Delivered, t);
            Some(d.body)
        })
        .collect();
        assert_eq!(bodies, ["d", "e"]);
    }

    #[test]
    fn a_queue_of_one_drops_even_the_notice_in_flight() {
        let t = Instant::now();
        let mut q = Queue::new(1);
        push(&mut q, "a");
        let a = q.next_delivery(t).unwrap();
        assert_eq!(push(&mut q, "b"), Some(Loss::Overflow { seq: 0 }));
        // The late answer for "a" must not take "b" off the queue.
        assert_eq!(q.answered(a.seq, Outcome::Delivered, t), None);
        assert_eq!(q.next_delivery(t).unwrap().body, "b");
    }

    #[test]
    fn a_refused_notice_is_dropped_counted_and_the_next_goes_at_once() {
        let t = Instant::now();
        let mut q = Queue::new(4);
        push(&mut q, "bad");
        push(&mut q, "good");
        let d = q.next_delivery(t).unwrap();
        assert_eq!(
            q.answered(d.seq, Outcome::Refused, t),
            Some(Loss::Refused { seq: 0 })
        );
        assert_eq!(q.next_delivery(t).unwrap().body, "good");
        assert_eq!(q.lost(), 1);
    }

    #[test]
    fn numbers_follow_pushes_even_across_losses() {
        let mut q = Queue::new(1);
        assert_eq!(q.next_seq(), 0);
        push(&mut q, "a");
        push(&mut q, "b");
        assert_eq!(q.next_seq(), 2);
        assert_eq!(q.next_delivery(Instant::now()).unwrap().seq, 1);
    }
}
