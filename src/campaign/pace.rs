//! `--spread`: start times uniformly at random over a window, drawn in order and one at a
//! time, so nothing is kept per target.

use rand::Rng;
use std::time::Duration;

/// Draws the sorted start offsets of `total` targets spread uniformly at random over
/// `window`, one at a time (the sequential method for uniform order statistics): the
/// starts look like each phone's own random delay, but come out in order.
#[derive(Debug, Clone)]
pub struct Spread {
    window: Duration,
    remaining: u64,
    /// The previous point, as a fraction of the window.
    last: f64,
}

impl Spread {
    /// A spread of `total` starts over `window`.
    pub fn new(window: Duration, total: u64) -> Spread {
        Spread {
            window,
            remaining: total,
            last: 0.0,
        }
    }

    /// The next start offset from the campaign start; the window's end once `total` have
    /// been drawn.
    pub fn next_offset(&mut self, rng: &mut impl Rng) -> Duration {
        if self.remaining == 0 {
            return self.window;
        }
        // The minimum of n uniforms on [last, 1] is last + (1 - last) * (1 - V^(1/n)).
        let v: f64 = rng.gen::<f64>();
        let step = 1.0 - v.powf(1.0 / self.remaining as f64);
        self.last += (1.0 - self.last) * step;
        self.remaining -= 1;
        self.window.mul_f64(self.last.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn offsets_are_sorted_and_fill_the_window_evenly() {
        let window = Duration::from_secs(100);
        let mut spread = Spread::new(window, 10_000);
        let mut rng = StdRng::seed_from_u64(7);
        let mut prev = Duration::ZERO;
        let mut buckets = [0u32; 10];
        for _ in 0..10_000 {
            let d = spread.next_offset(&mut rng);
            assert!(d >= prev && d <= window);
            prev = d;
            buckets[((d.as_secs_f64() / 10.0) as usize).min(9)] += 1;
        }
        for b in buckets {
            assert!((850..=1150).contains(&b), "{buckets:?}");
        }
        assert!(prev > Duration::from_secs(99));
    }
}
