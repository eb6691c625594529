//! Whether this leader's quorum is the cluster's, or an old quorum re-formed after the cluster
//! moved on without it (issue 16, item 9; DESIGN.md point 10).
//!
//! A break-glass at `dr` makes its controller the only voter of a new cluster, while the stores
//! of `dc` and `ndc` still hold the old three-voter membership. If those two return *together*,
//! they are a quorum of the old cluster: they elect a leader, and that leader would grant `dc` a
//! lease at the old epoch, a second writable primary. The new cluster refuses their messages, but
//! nothing stopped them from agreeing with each other.
//!
//! The rule: a leader grants no lease and changes no role while its quorum is *held*, that is
//! when it formed after an absence: this controller had not been part of a working quorum for
//! longer than [`absence_ms`] when it was elected, or, leading, went that long without a
//! quorum's acknowledgement. A held leader asks every voter to acknowledge an entry it writes
//! then (`QuorumCheck`); the hold lifts once every voter of its membership has it, or once an
//! operator confirms (`ConfirmQuorum`, `triadctl cluster confirm-quorum`). A controller cut off by
//! a break-glass order never acknowledges (the new cluster refuses the old one's messages), so the
//! old quorum stays held until a person who knows better says otherwise.
//!
//! Why the absence bound works: break-glass is refused until `dr`'s controller has known no
//! leader for max(10 s, 5 election timeouts); the old sites' last contact with a working quorum
//! came before that silence began (were they a quorum still, `dr` would not be alone, or its
//! operators attested falsely that they are dead, which no rule can catch). So any quorum of
//! theirs that forms after the order has been away for at least that long, and [`absence_ms`] is
//! half of it: a second of persistence granularity and an election's worth of slack to spare.
//! Ordinary elections (a leader killed, a link flapping) take a few election timeouts at most
//! and never hold; a whole cluster started cold holds only until every voter has answered.
//!
//! "Part of a working quorum": as leader, a quorum acknowledged it (openraft's
//! `millis_since_quorum_ack`); as follower, it accepted an AppendEntries from a leader that says
//! a quorum acknowledged it within an election timeout (`leader_has_quorum`, set from the
//! same check). The time is kept on `CLOCK_BOOTTIME` in the store (`raft/contact.rs`), so that a
//! restart does not forget it and a reboot voids it.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// How long this controller may have been out of a working quorum before a quorum it leads is
/// held: half the silence that break-glass waits for (see the module's argument).
pub fn absence_ms(election_timeout_max_ms: u64) -> u64 {
    (election_timeout_max_ms * 5).max(10_000) / 2
}

/// What a leader's step sees (taken from openraft's metrics and the applied state).
#[derive(Debug, Clone, Default)]
pub struct View {
    pub id: u64,
    pub leader: bool,
    pub term: u64,
    /// Milliseconds since a quorum last acknowledged this leader (`None`: not yet, or not leader).
    pub quorum_ack_ms: Option<u64>,
    /// The voters of the effective membership.
    pub voters: Vec<u64>,
    /// The highest log index each other member has (leader only).
    pub matched: BTreeMap<u64, u64>,
    /// The term whose leader an operator confirmed (`State::quorum_confirmed_term`).
    pub confirmed_term: u64,
    /// On `CLOCK_BOOTTIME`.
    pub now_ms: u64,
    pub absence_ms: u64,
    /// How fresh a quorum acknowledgement must be to count as contact (an election timeout).
    pub fresh_ms: u64,
}

/// Why a leader holds, and how far the lifting has got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub term: u64,
    pub why: String,
    /// The `QuorumCheck` entry every voter must acknowledge (`None`: not written yet).
    pub check_index: Option<u64>,
    /// The voters that have not acknowledged it yet.
    pub missing: Vec<u64>,
}

/// What the brain is to do for this step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Todo {
    /// Write the `QuorumCheck` entry for `term`.
    WriteCheck { term: u64 },
}

#[derive(Debug, Default)]
struct Inner {
    /// The last contact with a working quorum, on `CLOCK_BOOTTIME` (`None`: none known).
    last_contact_ms: Option<u64>,
    /// The contact last written to the store.
    saved_ms: u64,
    /// The term this controller leads at, and since when (on `CLOCK_BOOTTIME`).
    leading: Option<(u64, u64)>,
    hold: Option<Hold>,
}

/// This controller's continuity with a working quorum (shared: the peer service records contact,
/// grants ask whether the leader holds, the brain steps it).
#[derive(Debug, Default)]
pub struct Continuity {
    inner: Mutex<Inner>,
}

impl Continuity {
    /// Starts from the contact kept in the store (see `raft/contact.rs`), if any.
    pub fn new(last_contact_ms: Option<u64>) -> Self {
        let inner = Inner { last_contact_ms, saved_ms: last_contact_ms.unwrap_or(0), ..Default::default() };
        Continuity { inner: Mutex::new(inner) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("continuity lock poisoned")
    }

    /// An AppendEntries from a leader with a working quorum was accepted just now.
    pub fn contact(&self) {
        let now = triad_proto::clock::boot_ms();
        let mut g = self.lock();
        g.last_contact_ms = Some(g.last_contact_ms.unwrap_or(0).max(now));
    }

    /// Why this controller, leading at `term`, grants no lease and changes no role; `None`: it
    /// does not hold. A term not judged yet (the brain's first step at it is still to come) holds.
    pub fn held(&self, term: u64) -> Option<String> {
        let g = self.lock();
        if g.leading.is_none_or(|(t, _)| t != term) {
            return Some(format!("the leader at term {term} has not judged its quorum yet"));
        }
        g.hold.as_ref().map(Hold::describe)
    }

    /// Whether the rule has judged the quorum of this controller leading at `term`.
    pub fn judged(&self, term: u64) -> bool {
        self.lock().leading.is_some_and(|(t, _)| t == term)
    }

    /// The hold judged for the term led now, for status (`None`: none, or nothing judged yet).
    pub fn hold(&self) -> Option<String> {
        self.lock().hold.as_ref().map(Hold::describe)
    }

    /// The contact to write to the store, when it moved on by a second or more since the last.
    pub fn to_save(&self) -> Option<u64> {
        let mut g = self.lock();
        let c = g.last_contact_ms?;
        if c < g.saved_ms + 1000 {
            return None;
        }
        g.saved_ms = c;
        Some(c)
    }

    /// The `QuorumCheck` entry for `term` is at `index`.
    pub fn check_written(&self, term: u64, index: u64) {
        if let Some(h) = self.lock().hold.as_mut().filter(|h| h.term == term) {
            h.check_index = Some(index);
        }
    }

    /// One step of the rule (see the module), on what the leader sees now.
    pub fn step(&self, v: &View) -> Option<Todo> {
        let mut g = self.lock();
        if !v.leader {
            g.leading = None;
            g.hold = None;
            return None;
        }
        // Judged on the contact from before this term's acknowledgements count as contact.
        let since = match g.leading {
            Some((term, since)) if term == v.term => since,
            _ => {
                g.leading = Some((v.term, v.now_ms));
                g.hold = match g.last_contact_ms {
                    Some(c) if v.now_ms.saturating_sub(c) <= v.absence_ms => None,
                    Some(c) => Some(held(
                        v.term,
                        format!("elected after {} s out of any working quorum", v.now_ms.saturating_sub(c) / 1000),
                    )),
                    None => Some(held(v.term, "elected with no contact with a working quorum on record".into())),
                };
                v.now_ms
            }
        };
        // A membership of one is its own quorum (dr after a break-glass), acknowledged or not.
        let alone = v.voters.iter().all(|m| *m == v.id);
        let quorum_ack_ms = if alone { Some(0) } else { v.quorum_ack_ms };
        let gap = match quorum_ack_ms {
            Some(ms) => ms > v.absence_ms,
            None => v.now_ms.saturating_sub(since) > v.absence_ms,
        };
        if gap && g.hold.is_none() {
            g.hold =
                Some(held(v.term, format!("led for over {} s with no quorum acknowledging it", v.absence_ms / 1000)));
        }
        if let Some(ms) = quorum_ack_ms.filter(|ms| *ms <= v.fresh_ms) {
            let at = v.now_ms.saturating_sub(ms);
            g.last_contact_ms = Some(g.last_contact_ms.unwrap_or(0).max(at));
        }
        let h = g.hold.as_mut()?;
        if v.confirmed_term >= h.term {
            tracing::warn!(term = h.term, "quorum hold lifted: an operator confirmed this leader");
            g.hold = None;
            return None;
        }
        let Some(index) = h.check_index else { return Some(Todo::WriteCheck { term: h.term }) };
        h.missing =
            v.voters.iter().copied().filter(|m| *m != v.id && v.matched.get(m).is_none_or(|i| *i < index)).collect();
        if h.missing.is_empty() {
            tracing::info!(term = h.term, "quorum hold lifted: every voter acknowledged entry {index}");
            g.hold = None;
        }
        None
    }

    /// Whether the leader's acknowledgements are fresh enough to tell followers so (see
    /// `raft/network.rs`).
    pub fn leader_has_quorum(v: &View) -> bool {
        v.leader && v.quorum_ack_ms.is_some_and(|ms| ms <= v.fresh_ms)
    }
}

impl Hold {
    fn describe(&self) -> String {
        let waiting = match (&self.check_index, self.missing.as_slice()) {
            (None, _) => "writing a check entry for every voter to acknowledge".to_string(),
            (Some(i), missing) => format!(
                "waiting for controller{} {} to acknowledge entry {i}",
                if missing.len() == 1 { "" } else { "s" },
                missing.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", ")
            ),
        };
        format!(
            "{}: it grants no lease and changes no role until every voter answers ({waiting}) or an operator \
             confirms that none of them broke the glass (`triadctl cluster confirm-quorum --reason ...`)",
            self.why
        )
    }
}

fn held(term: u64, why: String) -> Hold {
    tracing::warn!(term, "quorum held: {why}");
    Hold { term, why, check_index: None, missing: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(now_ms: u64, term: u64, ack: Option<u64>) -> View {
        View {
            id: 1,
            leader: true,
            term,
            quorum_ack_ms: ack,
            voters: vec![1, 2, 3],
            now_ms,
            absence_ms: 5_000,
            fresh_ms: 1_000,
            ..Default::default()
        }
    }

    #[test]
    fn an_ordinary_election_does_not_hold() {
        let c = Continuity::new(None);
        c.contact();
        let now = triad_proto::clock::boot_ms();
        assert!(c.held(5).is_some(), "a term not judged yet holds");
        assert_eq!(c.step(&view(now + 1_500, 5, None)), None);
        assert_eq!(c.held(5), None);
        assert_eq!(c.step(&view(now + 2_000, 5, Some(50))), None, "acknowledged by a quorum");
        assert_eq!(c.held(5), None);
    }

    /// The bug of item 9: the old sites' controllers return together after a break-glass; dr's
    /// cut-off controller never acknowledges their leader.
    #[test]
    fn a_quorum_formed_after_an_absence_holds_until_every_voter_answers() {
        let c = Continuity::new(Some(1_000));
        let mut v = view(61_000, 7, None);
        assert_eq!(c.step(&v), Some(Todo::WriteCheck { term: 7 }));
        let why = c.held(7).expect("held");
        assert!(why.contains("elected after 60 s out of any working quorum"), "{why}");
        // Its quorum acknowledges it at once: that is no proof, and changes nothing.
        v.quorum_ack_ms = Some(20);
        assert_eq!(c.step(&v), Some(Todo::WriteCheck { term: 7 }));
        c.check_written(7, 40);
        v.matched = BTreeMap::from([(2, 40), (3, 12)]);
        assert_eq!(c.step(&v), None);
        let why = c.held(7).expect("still held: controller 3 has not acknowledged");
        assert!(why.contains("waiting for controller 3 to acknowledge entry 40"), "{why}");
        v.matched.insert(3, 41);
        c.step(&v);
        assert_eq!(c.held(7), None, "every voter answered");
    }

    #[test]
    fn an_operator_confirmation_lifts_the_hold_of_its_term_only() {
        let c = Continuity::new(None);
        let mut v = view(10_000, 3, Some(10));
        assert!(c.step(&v).is_some());
        v.confirmed_term = 2;
        c.step(&v);
        assert!(c.held(3).is_some(), "a confirmation for an earlier term");
        v.confirmed_term = 3;
        c.step(&v);
        assert_eq!(c.held(3), None);
    }

    #[test]
    fn a_leader_left_without_a_quorum_for_too_long_holds_when_it_regains_one() {
        let c = Continuity::new(None);
        c.contact();
        let now = triad_proto::clock::boot_ms();
        let mut v = view(now + 100, 4, Some(10));
        assert_eq!(c.step(&v), None);
        // Alone for six seconds (the others died), same term: no new election to judge.
        v.now_ms = now + 6_100;
        v.quorum_ack_ms = Some(6_000);
        assert_eq!(c.step(&v), Some(Todo::WriteCheck { term: 4 }));
        // Acknowledged again by the returning voter: still held until all answer.
        v.quorum_ack_ms = Some(5);
        assert_eq!(c.step(&v), Some(Todo::WriteCheck { term: 4 }));
        assert!(c.held(4).unwrap().contains("no quorum acknowledging it"));
        // Not leading any more: the term must be judged again should it lead once more.
        v.leader = false;
        c.step(&v);
        assert!(c.held(4).unwrap().contains("not judged"));
    }

    #[test]
    fn a_membership_of_one_is_its_own_quorum() {
        // dr after a break-glass: elected long after its last contact, then alone for good.
        let c = Continuity::new(Some(1_000));
        let mut v = View { voters: vec![1], ..view(61_000, 9, None) };
        assert_eq!(c.step(&v), Some(Todo::WriteCheck { term: 9 }), "held at its election, like any");
        c.check_written(9, 100);
        c.step(&v);
        assert_eq!(c.held(9), None, "every voter (itself) has the entry");
        v.now_ms += 60_000;
        assert_eq!(c.step(&v), None, "no acknowledgement to wait for: never a gap");
        assert_eq!(c.held(9), None);
    }

    #[test]
    fn the_absence_is_half_the_silence_break_glass_waits_for() {
        assert_eq!(absence_ms(600), 5_000);
        assert_eq!(absence_ms(4_000), 10_000);
    }
}
