//! Finding events by time without trusting the time index.
//!
//! The time index (`time` column family) is not signed. A reader that
//! answers "what was the state on 14 July" or "show me last night's events"
//! from the index alone can be led to the wrong events by anyone who can
//! edit the store. So a lookup takes the index's answer only when the events
//! on either side of it agree with it (two reads), and otherwise finds the
//! answer in the events themselves, by binary search over sequence numbers:
//! Sealgate's writer never lets a timestamp go backwards, so timestamps do
//! not decrease along the log. The caller is told that the index was wrong,
//! and where. (In a log whose timestamps do step back, written by another
//! tool and verified with a tolerance, an honest index can disagree with its
//! neighbours within that step, and the search then lands on one edge of it.)
//!
//! Verification by time does not use these lookups: it resolves a time
//! through the index and reports a disagreement as a failure
//! (`range_mismatch`), since there the damage is the finding.

use crate::error::{Error, Result};
use crate::failure::{Failure, FailureKind};
use crate::ledger::Ledger;
use crate::timestamp::Timestamp;

/// Where a time falls in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// The sequence number found; `None` when no event lies on that side of
    /// the time.
    pub seq: Option<u64>,
    /// Set when the time index gave an answer the events contradict: the
    /// event that shows it, and how. `seq` then comes from the events.
    pub index_damage: Option<Failure>,
}

impl Ledger {
    /// The first event at or after `ts`.
    pub fn locate_at_or_after(&self, ts: Timestamp) -> Result<Located> {
        match self.last_stored_seq()? {
            Some(last) => self.locate_after_in(ts, last),
            None => Ok(Located {
                seq: None,
                index_damage: None,
            }),
        }
    }

    /// [`Ledger::locate_at_or_after`] in a log that ends at `last`.
    fn locate_after_in(&self, ts: Timestamp, last: u64) -> Result<Located> {
        let indexed = match self.first_seq_at_or_after(ts) {
            Ok(seq) => Ok(seq),
            Err(Error::Malformed { reason, .. }) => Err(reason),
            Err(e) => return Err(e),
        };
        let damage = match &indexed {
            Ok(seq) => self.contradiction(ts, *seq, last)?,
            Err(reason) => Some(Failure::new(
                0,
                FailureKind::RangeMismatch,
                format!("the time index cannot be read: {reason}"),
            )),
        };
        match (damage, indexed) {
            (None, Ok(seq)) => Ok(Located {
                seq,
                index_damage: None,
            }),
            (damage, _) => Ok(Located {
                seq: self.search_at_or_after(ts, last)?,
                index_damage: damage,
            }),
        }
    }

    /// The last event at or before `ts`.
    pub fn locate_at_or_before(&self, ts: Timestamp) -> Result<Located> {
        let Some(last) = self.last_stored_seq()? else {
            return Ok(Located {
                seq: None,
                index_damage: None,
            });
        };
        let Some(next) = ts.as_nanos().checked_add(1).map(Timestamp::from_nanos) else {
            return Ok(Located {
                seq: Some(last),
                index_damage: None,
            });
        };
        let after = self.locate_after_in(next, last)?;
        Ok(Located {
            seq: match after.seq {
                Some(0) => None,
                Some(seq) => Some(seq - 1),
                None => Some(last),
            },
            index_damage: after.index_damage,
        })
    }

    /// What, if anything, shows that `indexed` is not the first event at or
    /// after `ts` in a log that ends at `last`.
    fn contradiction(&self, ts: Timestamp, indexed: Option<u64>, last: u64) -> Result<Option<Failure>> {
        let wrong = |seq: u64, how: String| {
            Some(Failure::new(
                seq,
                FailureKind::RangeMismatch,
                format!("the time index does not match the log: {how}"),
            ))
        };
        Ok(match indexed {
            Some(seq) if seq > last => wrong(
                last,
                format!("it resolves {ts} to seq {seq}, but the log ends at seq {last}"),
            ),
            Some(seq) => {
                let at = self.ts_at(seq, last)?;
                let before = if seq > 0 {
                    Some(self.ts_at(seq - 1, last)?)
                } else {
                    None
                };
                match before {
                    _ if at < ts => wrong(
                        seq,
                        format!("it resolves {ts} to seq {seq}, which is at {at}, before it"),
                    ),
                    Some(b) if b >= ts => wrong(
                        seq - 1,
                        format!(
                            "it resolves {ts} to seq {seq}, but seq {} is at {b}, not before it",
                            seq - 1
                        ),
                    ),
                    _ => None,
                }
            }
            None => {
                let at = self.ts_at(last, last)?;
                if at >= ts {
                    wrong(
                        last,
                        format!("it has no entry at or after {ts}, but seq {last} is at {at}"),
                    )
                } else {
                    None
                }
            }
        })
    }

    /// The first event at or after `ts` among `0..=last`, by binary search
    /// over the events' own timestamps.
    fn search_at_or_after(&self, ts: Timestamp, last: u64) -> Result<Option<u64>> {
        // The answer lies in lo..=hi, hi = last + 1 meaning none.
        let (mut lo, mut hi) = (0u64, last + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.ts_at(mid, last)? < ts {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok((lo <= last).then_some(lo))
    }

    /// The timestamp of the event at `seq`, which must be stored (the log
    /// runs to `last`).
    fn ts_at(&self, seq: u64, last: u64) -> Result<Timestamp> {
        match self.get(seq)? {
            Some(e) => Ok(e.event.ts),
            None => Err(Error::Damaged {
                path: self.path().to_path_buf(),
                reason: format!("no event at seq {seq}, inside the log (which ends at seq {last})"),
            }),
        }
    }
}
