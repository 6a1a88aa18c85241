//! Pacing: `--rate` spaces starts evenly; `--spread` draws start times uniformly at random
//! over a window, in order and one at a time, so nothing is kept per target.

use rand::Rng;
use std::time::Duration;
use tokio::time::Instant;

/// How far a late start may be caught up: the timer wakes at millisecond granularity, so
/// fast rates start the targets of one millisecond together and keep their average.
const CATCH_UP: Duration = Duration::from_millis(1);

/// `--rate`: starts evenly spaced from the first, on tokio's clock. A start that had to
/// wait (for a concurrency slot) is followed by the next one a period later, not by a
/// burst of the missed ones.
#[derive(Debug, Clone)]
pub struct Pacer {
    period: Duration,
    next: Option<Instant>,
}

impl Pacer {
    /// Starts `period` apart.
    pub fn new(period: Duration) -> Pacer {
        Pacer { period, next: None }
    }

    /// Waits until the next start may go.
    pub async fn ready(&mut self) {
        let now = Instant::now();
        let at = match self.next {
            // Held up longer than the timer's lateness: start again from now.
            Some(next) if now.saturating_duration_since(next) <= CATCH_UP => next,
            _ => now,
        };
        if at > now {
            tokio::time::sleep_until(at).await;
        }
        self.next = Some(at + self.period);
    }
}

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

    #[tokio::test(start_paused = true)]
    async fn starts_are_evenly_spaced_and_a_late_one_is_not_caught_up() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(Duration::from_millis(100));
        let mut starts = Vec::new();
        for _ in 0..3 {
            pacer.ready().await;
            starts.push(t0.elapsed());
        }
        // Held up for a second (waiting for a slot): one start at once, then the period.
        tokio::time::sleep(Duration::from_secs(1)).await;
        for _ in 0..2 {
            pacer.ready().await;
            starts.push(t0.elapsed());
        }
        let ms = |m| Duration::from_millis(m);
        assert_eq!(starts, [ms(0), ms(100), ms(200), ms(1200), ms(1300)]);
    }

    #[tokio::test(start_paused = true)]
    async fn rates_past_the_timer_granularity_keep_their_average() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(Duration::from_micros(100));
        for _ in 0..10_000 {
            pacer.ready().await;
        }
        // 10,000 starts at 10,000 per second: within a millisecond of one second.
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(999), "{took:?}");
        assert!(took <= Duration::from_millis(1001), "{took:?}");
    }
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
