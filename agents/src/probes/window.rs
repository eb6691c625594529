//! What one end measured of a link over the newest probes: sent, answered, round trip, jitter,
//! and how long it has heard nothing. Pure (times are passed in), so it is unit-tested without
//! a network.

use std::collections::VecDeque;
use std::time::Duration;

/// A probe older than this and still unanswered is lost; a later answer is ignored.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);
/// The figures cover the probes sent within this long.
pub const WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
struct Sent {
    seq: u64,
    /// When it was sent (the prober's clock, ns).
    at_ns: u64,
    /// Its round trip, once answered (less the far end's hold), in ns.
    rtt_ns: Option<u64>,
}

/// The figures a window gives, as reported to the controllers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    pub window_ms: u64,
    /// Probes old enough to count (answered, or unanswered past the timeout).
    pub sent: u32,
    pub answered: u32,
    pub rtt_ms: f64,
    pub jitter_ms: f64,
    /// Since the last answer, or since probing began when none came.
    pub silent_ms: u64,
}

impl Figures {
    /// Lost probes as a percentage of those that count (0 when none count yet).
    pub fn loss_percent(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            100.0 * f64::from(self.sent - self.answered) / f64::from(self.sent)
        }
    }
}

/// The newest probes of one link from this end.
#[derive(Debug)]
pub struct Window {
    sent: VecDeque<Sent>,
    began_ns: u64,
    last_answer_ns: Option<u64>,
}

impl Window {
    /// A window for probing that began at `now_ns`.
    pub fn new(now_ns: u64) -> Window {
        Window { sent: VecDeque::new(), began_ns: now_ns, last_answer_ns: None }
    }

    /// A probe went out.
    pub fn sent(&mut self, seq: u64, at_ns: u64) {
        self.sent.push_back(Sent { seq, at_ns, rtt_ns: None });
        let keep_from = at_ns.saturating_sub(WINDOW.as_nanos() as u64);
        while self.sent.front().is_some_and(|s| s.at_ns < keep_from) {
            self.sent.pop_front();
        }
    }

    /// An answer to probe `seq` (sent at `sent_ns`) arrived at `now_ns`, held `held_ns` on the
    /// far host. Duplicates, strangers and answers past the timeout are ignored.
    pub fn answered(&mut self, seq: u64, sent_ns: u64, held_ns: u64, now_ns: u64) {
        let Some(s) = self.sent.iter_mut().find(|s| s.seq == seq && s.at_ns == sent_ns) else { return };
        if s.rtt_ns.is_some() || now_ns.saturating_sub(s.at_ns) > ANSWER_TIMEOUT.as_nanos() as u64 {
            return;
        }
        s.rtt_ns = Some(now_ns.saturating_sub(s.at_ns).saturating_sub(held_ns));
        self.last_answer_ns = Some(now_ns);
    }

    /// The figures as of `now_ns`.
    pub fn figures(&self, now_ns: u64) -> Figures {
        let timeout = ANSWER_TIMEOUT.as_nanos() as u64;
        let counted = self.sent.iter().filter(|s| s.rtt_ns.is_some() || now_ns.saturating_sub(s.at_ns) > timeout);
        let (mut sent, mut answered, mut sum, mut jitter_sum, mut jitter_n) = (0u32, 0u32, 0u64, 0u64, 0u32);
        let mut previous: Option<u64> = None;
        for s in counted {
            sent += 1;
            if let Some(rtt) = s.rtt_ns {
                answered += 1;
                sum += rtt;
                if let Some(p) = previous {
                    jitter_sum += rtt.abs_diff(p);
                    jitter_n += 1;
                }
                previous = Some(rtt);
            }
        }
        let ms = |ns: u64| ns as f64 / 1e6;
        Figures {
            window_ms: WINDOW.as_millis() as u64,
            sent,
            answered,
            rtt_ms: if answered == 0 { 0.0 } else { ms(sum) / f64::from(answered) },
            jitter_ms: if jitter_n == 0 { 0.0 } else { ms(jitter_sum) / f64::from(jitter_n) },
            silent_ms: now_ns.saturating_sub(self.last_answer_ns.unwrap_or(self.began_ns)) / 1_000_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn answered_probes_give_rtt_less_the_far_hold_and_jitter() {
        let mut w = Window::new(0);
        for (seq, rtt) in [(1u64, 10u64), (2, 14), (3, 10)] {
            let at = seq * 200 * MS;
            w.sent(seq, at);
            // Each held 1 ms on the far host.
            w.answered(seq, at, MS, at + (rtt + 1) * MS);
        }
        let f = w.figures(700 * MS);
        assert_eq!((f.sent, f.answered), (3, 3));
        assert!((f.rtt_ms - 34.0 / 3.0).abs() < 1e-9, "{f:?}");
        assert!((f.jitter_ms - 4.0).abs() < 1e-9, "{f:?}");
        assert_eq!(f.loss_percent(), 0.0);
        assert_eq!(f.silent_ms, 700 - 611);
    }

    #[test]
    fn unanswered_probes_count_as_lost_only_after_the_timeout() {
        let mut w = Window::new(0);
        w.sent(1, 0);
        w.sent(2, 200 * MS);
        w.answered(2, 200 * MS, 0, 205 * MS);
        // Probe 1 is 500 ms old: not yet lost.
        let f = w.figures(500 * MS);
        assert_eq!((f.sent, f.answered), (1, 1));
        // At 1.1 s it is.
        let f = w.figures(1_100 * MS);
        assert_eq!((f.sent, f.answered), (2, 1));
        assert_eq!(f.loss_percent(), 50.0);
        // An answer past the timeout changes nothing.
        w.answered(1, 0, 0, 1_200 * MS);
        assert_eq!(w.figures(1_300 * MS).answered, 1);
    }

    #[test]
    fn silence_counts_from_the_start_until_an_answer_and_old_probes_leave() {
        let mut w = Window::new(5 * MS);
        for seq in 0..100u64 {
            w.sent(seq, seq * 200 * MS);
        }
        let f = w.figures(20_000 * MS);
        assert_eq!(f.silent_ms, 19_995);
        assert_eq!(f.answered, 0);
        assert!(f.sent <= 51, "only the window's probes count: {f:?}");
        assert_eq!(f.loss_percent(), 100.0);
        // A stranger's answer or a duplicate is ignored.
        w.answered(99, 1, 0, 19_801 * MS);
        assert_eq!(w.figures(19_900 * MS).answered, 0);
    }
}
