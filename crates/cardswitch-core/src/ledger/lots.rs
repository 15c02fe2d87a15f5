//! Points kept as lots, so that points can expire by the date they were earned;
//! and a count card's visits of a service, kept the same way (a lot with a
//! `service`: see [`super::visits`]).
//!
//! A card's `points` is the sum of `points_left` over its points lots. A lot whose
//! `expires_at` is at or before `now` is expired: it no longer counts for
//! spending, and an expiry posting (see [`expire`]) zeroes it; until that
//! posting its points still sit in the card's total.

use chrono::{DateTime, Months, Utc};

use super::money::Points;
use crate::protocol::errno::Errno;

/// Instants are UTC, kept to the millisecond as the store does.
pub type Ts = DateTime<Utc>;

pub type LotId = i64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lot {
    pub id: LotId,
    /// Points left, or for a lot of visits, visits left.
    pub points_left: Points,
    /// `None`: never expires.
    pub expires_at: Option<Ts>,
    /// `None`: a lot of points; else the service its visits are of.
    pub service: Option<String>,
}

impl Lot {
    /// A lot of points (no service).
    pub fn points(id: LotId, points_left: Points, expires_at: Option<Ts>) -> Lot {
        Lot {
            id,
            points_left,
            expires_at,
            service: None,
        }
    }

    pub fn is_points(&self) -> bool {
        self.service.is_none()
    }

    pub fn is_live(&self, now: Ts) -> bool {
        self.points_left > 0
            && match self.expires_at {
                None => true,
                Some(e) => e > now,
            }
    }
}

/// Points taken from, or given back to, an existing lot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LotTake {
    pub lot_id: LotId,
    pub points: Points,
}

/// A lot to create; the store assigns its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLot {
    /// Points, or for a lot of visits, visits.
    pub points: Points,
    pub expires_at: Option<Ts>,
    /// `None`: a lot of points; else the service its visits are of.
    pub service: Option<String>,
}

impl NewLot {
    pub fn points(points: Points, expires_at: Option<Ts>) -> NewLot {
        NewLot {
            points,
            expires_at,
            service: None,
        }
    }
}

/// What a card's lots hold, expired ones not yet posted included: its
/// points, and its visits (the lots of visits of every service); the card's
/// `points` and `visits` must equal them.
pub fn totals(lots: &[Lot]) -> (Points, i64) {
    lots.iter().fold((0, 0), |(p, v), l| match l.is_points() {
        true => (p + l.points_left, v),
        false => (p, v + l.points_left),
    })
}

/// Points that can be spent now.
pub fn live_points(lots: &[Lot], now: Ts) -> Points {
    lots.iter()
        .filter(|l| l.is_points() && l.is_live(now))
        .map(|l| l.points_left)
        .sum()
}

/// Takes `n` points from the live lots, the soonest to expire first, lots
/// without expiry last, ties by lot id (oldest first): the customer always
/// loses the fewest points to expiry. Not enough live points: 2005, and
/// nothing is taken. A negative `n` is 2010.
pub fn spend(lots: &[Lot], n: Points, now: Ts) -> Result<Vec<LotTake>, Errno> {
    if n < 0 {
        return Err(Errno::InvalidAmount);
    }
    if live_points(lots, now) < n {
        return Err(Errno::InsufficientPoints);
    }
    let live: Vec<&Lot> = lots
        .iter()
        .filter(|l| l.is_points() && l.is_live(now))
        .collect();
    Ok(take_soonest(live, n))
}

/// `n` units from `live` (holding at least `n`), the soonest to expire
/// first, lots without expiry last, ties by lot id.
pub(super) fn take_soonest(mut live: Vec<&Lot>, n: Points) -> Vec<LotTake> {
    live.sort_by_key(|l| (l.expires_at.is_none(), l.expires_at, l.id));
    let mut left = n;
    let mut takes = Vec::new();
    for l in live {
        if left == 0 {
            break;
        }
        let t = left.min(l.points_left);
        takes.push(LotTake {
            lot_id: l.id,
            points: t,
        });
        left -= t;
    }
    takes
}

/// The expired lots of points that still hold some, and how many: what an
/// expiry posting takes.
pub fn expire(lots: &[Lot], now: Ts) -> Vec<LotTake> {
    expired(lots.iter().filter(|l| l.is_points()), now)
}

pub(super) fn expired<'a>(lots: impl Iterator<Item = &'a Lot>, now: Ts) -> Vec<LotTake> {
    lots.filter(|l| l.points_left > 0 && l.expires_at.is_some_and(|e| e <= now))
        .map(|l| LotTake {
            lot_id: l.id,
            points: l.points_left,
        })
        .collect()
}

/// Expiry of a lot earned at `now`: `months` calendar months later (the end of
/// a shorter month is clamped: Jan 31 + 1 month = Feb 28/29), or never when
/// `months` is `None`.
pub fn lot_expiry(now: Ts, months: Option<u32>) -> Option<Ts> {
    let m = months?;
    truncate_ms(now)
        .checked_add_months(Months::new(m))
        .or(Some(DateTime::<Utc>::MAX_UTC))
}

pub fn truncate_ms(ts: Ts) -> Ts {
    DateTime::from_timestamp_millis(ts.timestamp_millis()).unwrap_or(ts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(ms: i64) -> Ts {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    fn lot(id: LotId, p: Points, exp: Option<i64>) -> Lot {
        Lot::points(id, p, exp.map(at))
    }

    #[test]
    fn spend_order_and_expiry() {
        let lots = vec![
            lot(1, 10, None),
            lot(2, 5, Some(2_000)),
            lot(3, 7, Some(1_000)),
            lot(4, 100, Some(500)),
        ];
        let now = at(500);
        assert_eq!(live_points(&lots, now), 22);
        assert_eq!(
            spend(&lots, 14, now),
            Ok(vec![
                LotTake {
                    lot_id: 3,
                    points: 7
                },
                LotTake {
                    lot_id: 2,
                    points: 5
                },
                LotTake {
                    lot_id: 1,
                    points: 2
                },
            ])
        );
        assert_eq!(spend(&lots, 23, now), Err(Errno::InsufficientPoints));
        assert_eq!(spend(&lots, 0, now), Ok(vec![]));
        assert_eq!(spend(&lots, -1, now), Err(Errno::InvalidAmount));
        assert_eq!(
            expire(&lots, now),
            vec![LotTake {
                lot_id: 4,
                points: 100
            }]
        );
        assert_eq!(expire(&lots, at(499)), vec![]);
    }

    #[test]
    fn expiry_months() {
        let jan31 = at(1_769_817_600_123); // 2026-01-31T00:00:00.123Z
        let e = lot_expiry(jan31, Some(1)).unwrap();
        assert_eq!(e.to_rfc3339(), "2026-02-28T00:00:00.123+00:00");
        assert_eq!(lot_expiry(jan31, None), None);
    }

    proptest! {
        #[test]
        fn spend_takes_exactly_n_from_live_lots(
            specs in proptest::collection::vec((0i64..50, proptest::option::of(0i64..100)), 0..8),
            now in 0i64..100, n in 0i64..300,
        ) {
            let lots: Vec<Lot> = specs.iter().enumerate()
                .map(|(i, (p, e))| lot(i as LotId, *p, *e)).collect();
            let now = at(now);
            match spend(&lots, n, now) {
                Ok(takes) => {
                    prop_assert_eq!(takes.iter().map(|t| t.points).sum::<i64>(), n);
                    for t in &takes {
                        let l = lots.iter().find(|l| l.id == t.lot_id).unwrap();
                        prop_assert!(l.is_live(now));
                        prop_assert!(t.points > 0 && t.points <= l.points_left);
                    }
                }
                Err(e) => {
                    prop_assert_eq!(e, Errno::InsufficientPoints);
                    prop_assert!(live_points(&lots, now) < n);
                }
            }
            let expired: i64 = expire(&lots, now).iter().map(|t| t.points).sum();
            let total: i64 = lots.iter().map(|l| l.points_left).sum();
            prop_assert_eq!(expired + live_points(&lots, now), total);
        }
    }
}
