//! The buffer exchange with a memory-to-memory encoder, as a state machine: which
//! OUTPUT buffers (pictures in) are free or with the device, which CAPTURE buffers
//! (bitstream out) the device holds, and which frames are inside it. Every queued
//! picture is stamped with a sequence number that the device copies to the
//! bitstream buffer it produces, which maps the output back to its pts.

use std::collections::VecDeque;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum QueueError {
    #[error("{queue} buffer {index} does not exist")]
    NoSuchBuffer { queue: &'static str, index: usize },
    #[error("{queue} buffer {index} is already with the device")]
    AlreadyQueued { queue: &'static str, index: usize },
    #[error("{queue} buffer {index} came back but was not queued")]
    NotQueued { queue: &'static str, index: usize },
    #[error("the device returned frame {0}, which is not inside it")]
    UnknownFrame(u64),
}

const OUTPUT: &str = "OUTPUT";
const CAPTURE: &str = "CAPTURE";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InFlight {
    sequence: u64,
    pts: i64,
}

/// A frame that came out, and how many frames before it the device dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Done {
    pub(crate) pts: i64,
    pub(crate) dropped: usize,
}

#[derive(Debug)]
pub(crate) struct BufferQueue {
    /// `true`: the device holds the buffer.
    output: Vec<bool>,
    capture: Vec<bool>,
    in_flight: VecDeque<InFlight>,
    next_sequence: u64,
}

impl BufferQueue {
    pub(crate) fn new(outputs: usize, captures: usize) -> Self {
        Self {
            output: vec![false; outputs],
            capture: vec![false; captures],
            in_flight: VecDeque::new(),
            next_sequence: 0,
        }
    }

    /// A free OUTPUT buffer for the next picture; `None` means an OUTPUT buffer
    /// must be dequeued first (the device is behind).
    pub(crate) fn free_output(&self) -> Option<usize> {
        self.output.iter().position(|&queued| !queued)
    }

    /// Records a picture with `pts` queued in OUTPUT buffer `index`; returns the
    /// sequence number to stamp the buffer with.
    pub(crate) fn output_queued(&mut self, index: usize, pts: i64) -> Result<u64, QueueError> {
        set(&mut self.output, OUTPUT, index, true)?;
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.in_flight.push_back(InFlight { sequence, pts });
        Ok(sequence)
    }

    /// The device is done reading OUTPUT buffer `index`.
    pub(crate) fn output_returned(&mut self, index: usize) -> Result<(), QueueError> {
        set(&mut self.output, OUTPUT, index, false)
    }

    /// CAPTURE buffers the device does not hold, to queue (again); marks them held.
    pub(crate) fn captures_to_queue(&mut self) -> Vec<usize> {
        let free: Vec<usize> = (0..self.capture.len())
            .filter(|&i| !self.capture[i])
            .collect();
        for &i in &free {
            self.capture[i] = true;
        }
        free
    }

    /// The device returned CAPTURE buffer `index` (with a frame or empty).
    pub(crate) fn capture_returned(&mut self, index: usize) -> Result<(), QueueError> {
        set(&mut self.capture, CAPTURE, index, false)
    }

    /// A bitstream buffer stamped `sequence` came out: the frame's pts. Frames
    /// queued before it that never came out were dropped by the device.
    pub(crate) fn frame_done(&mut self, sequence: u64) -> Result<Done, QueueError> {
        let at = self
            .in_flight
            .iter()
            .position(|f| f.sequence == sequence)
            .ok_or(QueueError::UnknownFrame(sequence))?;
        let frame = self
            .in_flight
            .drain(..=at)
            .next_back()
            .expect("position found");
        Ok(Done {
            pts: frame.pts,
            dropped: at,
        })
    }

    /// Frames queued that have not come out.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Forgets frames that will not come out (after a drain); how many there were.
    pub(crate) fn forget_in_flight(&mut self) -> usize {
        let n = self.in_flight.len();
        self.in_flight.clear();
        n
    }
}

fn set(
    slots: &mut [bool],
    queue: &'static str,
    index: usize,
    queued: bool,
) -> Result<(), QueueError> {
    let slot = slots
        .get_mut(index)
        .ok_or(QueueError::NoSuchBuffer { queue, index })?;
    match (*slot, queued) {
        (true, true) => Err(QueueError::AlreadyQueued { queue, index }),
        (false, false) => Err(QueueError::NotQueued { queue, index }),
        _ => {
            *slot = queued;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_flow_through_and_map_back_to_their_pts() {
        let mut q = BufferQueue::new(2, 2);
        assert_eq!(q.captures_to_queue(), vec![0, 1]);
        assert!(q.captures_to_queue().is_empty());

        let a = q.free_output().unwrap();
        assert_eq!(q.output_queued(a, 0).unwrap(), 0);
        let b = q.free_output().unwrap();
        assert_ne!(a, b);
        assert_eq!(q.output_queued(b, 3000).unwrap(), 1);
        // Both OUTPUT buffers are with the device: the next picture must wait.
        assert_eq!(q.free_output(), None);
        assert_eq!(q.in_flight(), 2);

        q.output_returned(a).unwrap();
        assert_eq!(q.free_output(), Some(a));
        q.capture_returned(1).unwrap();
        assert_eq!(q.frame_done(0).unwrap(), Done { pts: 0, dropped: 0 });
        assert_eq!(q.captures_to_queue(), vec![1]);
        assert_eq!(q.output_queued(a, 6000).unwrap(), 2);
        assert_eq!(q.in_flight(), 2);
    }

    #[test]
    fn frames_the_device_skipped_are_counted() {
        let mut q = BufferQueue::new(4, 1);
        for (i, pts) in [0, 3000, 6000].into_iter().enumerate() {
            q.output_queued(i, pts).unwrap();
        }
        assert_eq!(
            q.frame_done(2).unwrap(),
            Done {
                pts: 6000,
                dropped: 2
            }
        );
        assert_eq!(q.in_flight(), 0);
        assert_eq!(q.frame_done(1), Err(QueueError::UnknownFrame(1)));
    }

    #[test]
    fn buffers_out_of_turn_are_errors() {
        let mut q = BufferQueue::new(1, 1);
        assert_eq!(
            q.output_returned(0),
            Err(QueueError::NotQueued {
                queue: "OUTPUT",
                index: 0
            })
        );
        q.output_queued(0, 0).unwrap();
        assert_eq!(
            q.output_queued(0, 1),
            Err(QueueError::AlreadyQueued {
                queue: "OUTPUT",
                index: 0
            })
        );
        assert!(matches!(
            q.capture_returned(3),
            Err(QueueError::NoSuchBuffer { index: 3, .. })
        ));
        assert!(q.capture_returned(0).is_err());
        assert_eq!(q.forget_in_flight(), 1);
    }
}
