//! A one-place mailbox: the newest value replaces an unread one. Frames go through these, so
//! a slow reader (the window, the live predictor) drops frames instead of queueing them.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Holds at most one value; `put` never blocks on the reader.
#[derive(Debug, Default)]
pub struct LatestSlot<T> {
    value: Mutex<Option<T>>,
    filled: Condvar,
}

impl<T> LatestSlot<T> {
    pub fn new() -> Self {
        Self {
            value: Mutex::new(None),
            filled: Condvar::new(),
        }
    }

    /// Puts `value` in, replacing (dropping) one not yet taken; returns whether one was.
    pub fn put(&self, value: T) -> bool {
        let mut slot = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        let replaced = slot.replace(value).is_some();
        self.filled.notify_one();
        replaced
    }

    /// Takes the value, if there is one.
    pub fn take(&self) -> Option<T> {
        self.value
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Waits up to `timeout` for a value and takes it.
    pub fn wait_take(&self, timeout: Duration) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut slot = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(v) = slot.take() {
                return Some(v);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            slot = self
                .filled
                .wait_timeout(slot, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// Events per second over the last `window`.
#[derive(Debug, Clone)]
pub struct RateMeter {
    window: Duration,
    times: std::collections::VecDeque<Instant>,
}

impl Default for RateMeter {
    fn default() -> Self {
        Self::new(Duration::from_secs(2))
    }
}

impl RateMeter {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            times: std::collections::VecDeque::new(),
        }
    }

    pub fn tick(&mut self, at: Instant) {
        self.times.push_back(at);
        while self
            .times
            .front()
            .is_some_and(|&t| at.duration_since(t) > self.window)
        {
            self.times.pop_front();
        }
    }

    /// The rate between the first and the last event in the window (0 with fewer than two).
    pub fn per_sec(&self) -> f64 {
        match (self.times.front(), self.times.back()) {
            (Some(&a), Some(&b)) if self.times.len() >= 2 && b > a => {
                (self.times.len() - 1) as f64 / b.duration_since(a).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_value_replaces_an_unread_one() {
        let slot = LatestSlot::new();
        assert!(!slot.put(1));
        assert!(slot.put(2));
        assert_eq!(slot.take(), Some(2));
        assert_eq!(slot.take(), None);
        assert_eq!(slot.wait_take(Duration::from_millis(5)), None);
    }

    #[test]
    fn a_waiting_reader_wakes_when_a_value_arrives() {
        let slot = std::sync::Arc::new(LatestSlot::new());
        let writer = slot.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            writer.put(7);
        });
        assert_eq!(slot.wait_take(Duration::from_secs(10)), Some(7));
        t.join().expect("join");
    }

    #[test]
    fn the_rate_counts_events_over_their_span() {
        let mut meter = RateMeter::new(Duration::from_secs(2));
        let t0 = Instant::now();
        for i in 0..11 {
            meter.tick(t0 + Duration::from_millis(100 * i));
        }
        assert!((meter.per_sec() - 10.0).abs() < 1e-6);
        meter.tick(t0 + Duration::from_secs(10));
        assert_eq!(meter.per_sec(), 0.0);
    }
}
