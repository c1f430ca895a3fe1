//! The demo's message stream: deterministic from a seed, with a share of redeliveries.

use super::StreamArgs;

/// How far back a redelivery reaches, in messages: brokers redeliver recent messages.
const REDELIVERY_REACH: u64 = 10_000;

/// Deliveries as message numbers, in delivery order.
pub struct Stream {
    pub seed: u64,
    pub deliveries: Vec<u32>,
    /// Whether delivery `i` is the first of its message.
    pub first: Vec<bool>,
    /// Distinct messages.
    pub messages: u64,
}

impl Stream {
    pub fn generate(args: StreamArgs, seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let n = usize::try_from(args.messages).unwrap_or(usize::MAX);
        let mut deliveries = Vec::with_capacity(n);
        let mut first = Vec::with_capacity(n);
        let mut fresh = 0u32;
        for _ in 0..n {
            let redeliver = fresh > 0 && rng.u8(0..100) < args.redeliver_percent;
            if redeliver {
                let back = rng.u64(1..=u64::from(fresh).min(REDELIVERY_REACH));
                deliveries.push(fresh - u32::try_from(back).unwrap_or(fresh));
                first.push(false);
            } else {
                deliveries.push(fresh);
                first.push(true);
                fresh += 1;
            }
        }
        Self {
            seed,
            deliveries,
            first,
            messages: u64::from(fresh),
        }
    }

    /// The stream's name, unique to its seed: the demo's offsets and its table of effects
    /// (key: delivery number, u64 BE; value: message number, u32 BE) go by it, so runs in one
    /// directory never mix.
    pub fn name(&self) -> String {
        format!("demo-{:016x}", self.seed)
    }

    /// The ID of message `number`: unique to this stream's seed, so runs never share IDs.
    pub fn id(&self, number: u32) -> String {
        format!("msg-{:016x}-{number}", self.seed)
    }

    pub fn len(&self) -> u64 {
        self.deliveries.len() as u64
    }
}

/// A delivery number as an index; the stream was built with `usize` indices.
pub fn index(i: u64) -> usize {
    usize::try_from(i).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redeliveries_come_at_the_asked_rate_and_only_of_earlier_messages() {
        let args = StreamArgs {
            messages: 100_000,
            redeliver_percent: 30,
            seed: None,
        };
        let s = Stream::generate(args, 7);
        let redelivered = s.first.iter().filter(|f| !**f).count();
        assert!((29_000..31_000).contains(&redelivered), "{redelivered}");
        assert_eq!(s.messages, 100_000 - redelivered as u64);
        let mut seen = std::collections::HashSet::new();
        for (&m, &first) in s.deliveries.iter().zip(&s.first) {
            assert_eq!(seen.insert(m), first);
        }
        assert_eq!(s.deliveries, Stream::generate(args, 7).deliveries);
    }
}
