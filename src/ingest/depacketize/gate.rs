//! What a video depacketizer lets through after a loss. A frame that lost a packet
//! cannot be decoded, and nor can the frames that refer to it, so after any damage
//! every frame is dropped until the next keyframe, and one is asked for.

#[derive(Debug)]
pub(super) struct KeyframeGate {
    /// A loss was reported and no packet has arrived since: the next frame may have
    /// lost its first packets, so it counts as damaged too.
    gap: bool,
    /// Dropping frames until an undamaged keyframe.
    awaiting_keyframe: bool,
    dropped_since_keyframe: bool,
    dropped: u64,
}

impl KeyframeGate {
    pub(super) fn new() -> Self {
        Self {
            gap: false,
            // A decoder can only start at a keyframe.
            awaiting_keyframe: true,
            dropped_since_keyframe: false,
            dropped: 0,
        }
    }

    /// Packets were lost just before the next one.
    pub(super) fn lost(&mut self) {
        self.gap = true;
    }

    /// A packet arrived: true when a loss came before it (its frame is damaged).
    pub(super) fn take_gap(&mut self) -> bool {
        std::mem::take(&mut self.gap)
    }

    /// A frame is complete: true when it goes out, false when it is dropped.
    pub(super) fn admit(&mut self, damaged: bool, keyframe: bool, empty: bool) -> bool {
        if damaged {
            self.awaiting_keyframe = true;
        }
        if damaged || (self.awaiting_keyframe && !keyframe) || empty {
            self.dropped += 1;
            self.dropped_since_keyframe = true;
            return false;
        }
        if keyframe {
            self.awaiting_keyframe = false;
            self.dropped_since_keyframe = false;
        }
        true
    }

    /// True from the first frame dropped for want of a keyframe until one arrives.
    pub(super) fn needs_keyframe(&self) -> bool {
        self.awaiting_keyframe && self.dropped_since_keyframe
    }

    /// Frames dropped because they were damaged or not decodable.
    pub(super) fn dropped(&self) -> u64 {
        self.dropped
    }
}
