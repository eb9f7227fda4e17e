//! The simulated clock. Batch allocation, autoscale evaluation and ACI provisioning delays run on
//! it; its speed factor lets minutes of Batch behaviour pass in seconds. Token lifetimes use real
//! time instead, because clients compare them with their own clock.

use std::sync::Mutex;
use std::time::Instant;

use time::{Duration, OffsetDateTime};

pub struct Clock {
    state: Mutex<ClockState>,
}

#[derive(Clone, Copy)]
struct ClockState {
    base_real: Instant,
    base_sim: OffsetDateTime,
    speed: f64,
}

impl Clock {
    pub fn new(start: OffsetDateTime, speed: f64) -> Clock {
        Clock {
            state: Mutex::new(ClockState {
                base_real: Instant::now(),
                base_sim: start,
                speed,
            }),
        }
    }

    pub fn now(&self) -> OffsetDateTime {
        let s = *self.state.lock().unwrap();
        s.base_sim + Duration::seconds_f64(s.base_real.elapsed().as_secs_f64() * s.speed)
    }

    pub fn speed(&self) -> f64 {
        self.state.lock().unwrap().speed
    }

    /// Moves the clock to `now` and/or changes its speed, from this instant on.
    pub fn set(&self, now: Option<OffsetDateTime>, speed: Option<f64>) {
        let current = self.now();
        let mut s = self.state.lock().unwrap();
        s.base_real = Instant::now();
        s.base_sim = now.unwrap_or(current);
        if let Some(speed) = speed {
            s.speed = speed;
        }
    }

    /// The real time that `simulated` takes at the current speed.
    pub fn real(&self, simulated: Duration) -> std::time::Duration {
        let seconds = simulated.as_seconds_f64() / self.speed();
        std::time::Duration::from_secs_f64(seconds.max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_at_its_speed_and_can_be_moved() {
        let start = time::macros::datetime!(2026-01-05 06:00 UTC);
        let clock = Clock::new(start, 1000.0);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let elapsed = clock.now() - start;
        assert!(elapsed >= Duration::seconds(20), "{elapsed}");
        clock.set(Some(start), Some(1.0));
        assert!(clock.now() - start < Duration::seconds(1));
        assert_eq!(
            clock.real(Duration::seconds(2)),
            std::time::Duration::from_secs(2)
        );
    }
}
