//! Time as the control loops see it.
//!
//! Every decision that depends on the time of day (CronJob schedules, minReadySeconds,
//! progress deadlines, lease expiry, stabilisation windows) reads `Clock::now`, so tests can
//! drive a `FakeClock` to exact instants. A fake clock also tells the loops when it moved
//! (`Clock::ticks`), so time-based work runs at once instead of after a real sleep.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

pub type Ticks = Pin<Box<dyn Stream<Item = ()> + Send>>;

pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;

    /// Fires when the clock jumped, so loops re-evaluate time-based state at once. The real
    /// clock never jumps: its stream stays pending and loops rely on requeue timers.
    fn ticks(&self) -> Ticks;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn ticks(&self) -> Ticks {
        Box::pin(futures::stream::pending())
    }
}

/// A clock that stands still until a test moves it.
#[derive(Debug, Clone)]
pub struct FakeClock {
    now: Arc<Mutex<Timestamp>>,
    moved: Arc<watch::Sender<u64>>,
}

impl FakeClock {
    pub fn new(start: Timestamp) -> FakeClock {
        FakeClock {
            now: Arc::new(Mutex::new(start)),
            moved: Arc::new(watch::channel(0).0),
        }
    }

    pub fn set(&self, to: Timestamp) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = to;
        self.moved.send_modify(|n| *n += 1);
    }

    pub fn advance(&self, by: Duration) {
        let by = SignedDuration::try_from(by).unwrap_or(SignedDuration::MAX);
        let next = self.now().saturating_add(by).unwrap_or(Timestamp::MAX);
        self.set(next);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ticks(&self) -> Ticks {
        let mut rx = self.moved.subscribe();
        rx.mark_unchanged();
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok()?;
            Some(((), rx))
        }))
    }
}

/// Whole seconds from `earlier` to `later` (negative when `later` is before).
pub fn seconds_between(earlier: Timestamp, later: Timestamp) -> i64 {
    later.as_second() - earlier.as_second()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn fake_clock_moves_only_when_told_and_says_so() {
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let clock = FakeClock::new(start);
        let mut ticks = clock.ticks();
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_secs(90));
        assert_eq!(seconds_between(start, clock.now()), 90);
        tokio::time::timeout(Duration::from_secs(1), ticks.next())
            .await
            .expect("a tick after the clock moved")
            .expect("stream open");
    }
}
