//! From marker codes read off the output frames to latencies: each marker state's
//! first appearance in the output is matched with the instant its first packet went
//! in.

use super::marker::gray;

/// One marker state's way through.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    pub(crate) state: u64,
    pub(crate) sent_ns: u64,
    pub(crate) ms: f64,
}

/// The latency of each marker state seen. `codes[i]` was read off output frame `i` (`None`:
/// undecided), which reached the measuring point at `arrived_ns[i]`; marker state
/// `s` went in at `sent_ns[s]`. States sent before `from_ns` (the warm-up) give no
/// sample.
///
/// A new code (one that differs from the last decided one) is taken for the latest
/// state showing it that went in before the frame came out and after the state
/// matched last: states only move forward, and the code repeats only after all 256
/// states, far longer than any latency.
pub(crate) fn marker_latencies(
    codes: &[Option<u8>],
    arrived_ns: &[u64],
    sent_ns: &[Option<u64>],
    from_ns: u64,
) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut last_code = None;
    let mut next_state = 0usize;
    for (&code, &arrived) in codes.iter().zip(arrived_ns) {
        let Some(code) = code else { continue };
        if last_code == Some(code) {
            continue;
        }
        last_code = Some(code);
        let matched = (next_state..sent_ns.len())
            .take_while(|&s| sent_ns[s].is_none_or(|t| t <= arrived))
            .filter(|&s| gray(s as u64) == code && sent_ns[s].is_some())
            .last();
        let Some(state) = matched else { continue };
        next_state = state + 1;
        let sent = sent_ns[state].expect("filtered");
        if sent >= from_ns {
            out.push(Sample {
                state: state as u64,
                sent_ns: sent,
                ms: (arrived - sent) as f64 / 1e6,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn ms(codes: &[Option<u8>], arrived: &[u64], sent: &[Option<u64>], from: u64) -> Vec<f64> {
        marker_latencies(codes, arrived, sent, from)
            .iter()
            .map(|s| s.ms)
            .collect()
    }

    #[test]
    fn first_appearances_are_matched_with_their_states() {
        // States every 100 ms; the output shows each 150 ms later, three frames
        // each, one frame undecided and state 3 never shown.
        let sent: Vec<Option<u64>> = (0..6).map(|s| Some(s * 100 * MS)).collect();
        let mut codes = Vec::new();
        let mut arrived = Vec::new();
        for s in [0u64, 1, 2, 4, 5] {
            for f in 0..3 {
                codes.push(if s == 1 && f == 0 {
                    None
                } else {
                    Some(gray(s))
                });
                arrived.push(s * 100 * MS + 150 * MS + f * 33 * MS);
            }
        }
        let l = ms(&codes, &arrived, &sent, 0);
        // State 1's first frame was undecided: its second one counts.
        assert_eq!(l, [150.0, 183.0, 150.0, 150.0, 150.0]);
        // The warm-up is left out.
        let late = marker_latencies(&codes, &arrived, &sent, 150 * MS);
        let states: Vec<u64> = late.iter().map(|s| s.state).collect();
        assert_eq!(states, [2, 4, 5]);
        assert_eq!(late[0].sent_ns, 200 * MS);
    }

    #[test]
    fn misreads_and_repeats_give_no_sample() {
        let sent: Vec<Option<u64>> = (0..4).map(|s| Some(s * 100 * MS)).collect();
        // Code of state 3 before it was sent; state 1 again after state 2.
        let codes = [Some(gray(0)), Some(gray(3)), Some(gray(2)), Some(gray(1))];
        let arrived = [50 * MS, 120 * MS, 260 * MS, 300 * MS];
        assert_eq!(ms(&codes, &arrived, &sent, 0), [50.0, 60.0]);
        // A state whose first packet was never recorded is skipped over.
        let sent = [Some(0), None, Some(200 * MS)];
        let codes = [Some(gray(1)), Some(gray(2))];
        assert_eq!(ms(&codes, &[150 * MS, 250 * MS], &sent, 0), [50.0]);
    }

    #[test]
    fn codes_repeat_after_all_states() {
        let states = 300u64;
        let sent: Vec<Option<u64>> = (0..states).map(|s| Some(s * 100 * MS)).collect();
        let codes: Vec<Option<u8>> = (0..states).map(|s| Some(gray(s))).collect();
        let arrived: Vec<u64> = (0..states).map(|s| s * 100 * MS + 70 * MS).collect();
        let l = ms(&codes, &arrived, &sent, 0);
        assert_eq!(l.len(), states as usize);
        assert!(l.iter().all(|&ms| ms == 70.0));
    }
}
