//! The rules that turn a sale or a top-up into amounts: level discount,
//! points earned, top-up bonus, points taken back on a refund.

use rust_decimal::Decimal;

use super::money::{floor_points, round_half_up_cents, Money, Points, MAX_POINTS};
use crate::protocol::errno::Errno;

/// A membership level as stored in `levels`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Level {
    pub name: String,
    /// The share of the sale the member pays: 0.95 means 5 % off, 1 means none.
    pub discount: Decimal,
    /// Points per currency unit charged.
    pub points_rate: Decimal,
    pub limits: Limits,
}

/// A level's limits (protocol.md §6.2), each 2016 when passed; `None`: none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// No top-up or incoming transfer takes the balance above it.
    pub max_balance: Option<Money>,
    /// What one business day's debits (their balance legs) and outgoing
    /// transfers may take from a card.
    pub daily_debit: Option<Money>,
}

impl Level {
    /// A level outside `0 < discount <= 1`, `rate >= 0` is a configuration
    /// error: a debit on it is refused as internal rather than charging more
    /// than the sale or paying the member to shop.
    pub fn validate(&self) -> Result<(), Errno> {
        let ok = self.discount > Decimal::ZERO
            && self.discount <= Decimal::ONE
            && !self.points_rate.is_sign_negative();
        if ok {
            Ok(())
        } else {
            Err(Errno::Internal)
        }
    }
}

/// `(discount, charged)` for a sale: `charged = round_half_up(sale × level.discount)`
/// and `discount = sale − charged`, so the two always add up to the sale.
/// A sale, or a charge after discount, below 0.01 is 2010: a posting of
/// nothing would only earn or cost nothing and confuse the books.
pub fn debit_amounts(sale: Money, level: &Level) -> Result<(Money, Money), Errno> {
    level.validate()?;
    if sale.is_zero() {
        return Err(Errno::InvalidAmount);
    }
    let charged = Money::new(round_half_up_cents(sale.amount() * level.discount))?;
    if charged.is_zero() {
        return Err(Errno::InvalidAmount);
    }
    let discount = sale.checked_sub(charged).ok_or(Errno::Internal)?;
    Ok((discount, charged))
}

/// `floor(charged × rate)`. More than [`MAX_POINTS`] is 2010.
pub fn points_earned(charged: Money, level: &Level) -> Result<Points, Errno> {
    level.validate()?;
    let p = charged
        .amount()
        .checked_mul(level.points_rate)
        .and_then(floor_points)
        .ok_or(Errno::InvalidAmount)?;
    if p > MAX_POINTS {
        return Err(Errno::InvalidAmount);
    }
    Ok(p)
}

/// A top-up of at least `min_topup` earns `bonus` on top.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BonusRule {
    pub min_topup: Money,
    pub bonus: Money,
}

/// The bonus of the highest rule the top-up reaches (rules do not add up: a
/// top-up of 500 under rules "100 → 5" and "500 → 30" earns 30, not 35). Where
/// two rules share a threshold the larger bonus counts, so the order of the
/// configuration does not matter. No rule reached: no bonus.
pub fn topup_bonus(amount: Money, rules: &[BonusRule]) -> Money {
    rules
        .iter()
        .filter(|r| r.min_topup <= amount)
        .max_by(|a, b| (a.min_topup, a.bonus).cmp(&(b.min_topup, b.bonus)))
        .map_or(Money::ZERO, |r| r.bonus)
}

/// Points to take back for a refund of `refund`, when `already_refunded` of the
/// original `charged` was refunded before and `already_taken` of its `earned`
/// points were taken back.
///
/// The cumulative take-back after this refund is
/// `floor((already_refunded + refund) × earned / charged)`, so it grows in
/// proportion, never passes `earned`, and a refund that completes the charge
/// takes back exactly all of it however it was split. (The proportion is
/// computed on the cumulative amount rather than on this refund alone: flooring
/// each part separately would leave points behind after a full refund in
/// parts.) The caller has checked `already_refunded + refund <= charged`.
pub fn refund_points(
    refund: Money,
    already_refunded: Money,
    charged: Money,
    earned: Points,
    already_taken: Points,
) -> Points {
    if charged.is_zero() || earned <= 0 {
        return 0;
    }
    // In integer cents, so no division ever rounds the proportion.
    let total = i128::from(already_refunded.cents()) + i128::from(refund.cents());
    let charged = i128::from(charged.cents());
    let target = if total >= charged {
        earned
    } else {
        i64::try_from(total * i128::from(earned) / charged).unwrap_or(earned)
    };
    (target.min(earned) - already_taken).clamp(0, (earned - already_taken).max(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn m(s: &str) -> Money {
        Money::new(Decimal::from_str(s).unwrap()).unwrap()
    }

    fn level(discount: &str, rate: &str) -> Level {
        Level {
            name: "gold".into(),
            discount: Decimal::from_str(discount).unwrap(),
            points_rate: Decimal::from_str(rate).unwrap(),
            limits: Default::default(),
        }
    }

    #[test]
    fn discount_examples() {
        let l = level("0.95", "1");
        assert_eq!(debit_amounts(m("100.00"), &l), Ok((m("5.00"), m("95.00"))));
        // 0.95 × 0.10 = 0.095 → 0.10 half-up: no discount on a dime.
        assert_eq!(debit_amounts(m("0.10"), &l), Ok((m("0.00"), m("0.10"))));
        assert_eq!(debit_amounts(m("0"), &l), Err(Errno::InvalidAmount));
        let tiny = level("0.1", "1");
        assert_eq!(debit_amounts(m("0.04"), &tiny), Err(Errno::InvalidAmount));
        assert_eq!(debit_amounts(m("0.05"), &tiny), Ok((m("0.04"), m("0.01"))));
        assert_eq!(
            debit_amounts(m("1"), &level("1.1", "0")),
            Err(Errno::Internal)
        );
    }

    #[test]
    fn points_floor() {
        assert_eq!(points_earned(m("9.99"), &level("1", "1")), Ok(9));
        assert_eq!(points_earned(m("10.00"), &level("1", "0.5")), Ok(5));
        assert_eq!(points_earned(m("10.00"), &level("1", "0")), Ok(0));
        assert_eq!(
            points_earned(Money::MAX, &level("1", "10")),
            Err(Errno::InvalidAmount)
        );
    }

    #[test]
    fn bonus_highest_reached() {
        let rules = vec![
            BonusRule {
                min_topup: m("500"),
                bonus: m("30"),
            },
            BonusRule {
                min_topup: m("100"),
                bonus: m("5"),
            },
            BonusRule {
                min_topup: m("100"),
                bonus: m("6"),
            },
        ];
        assert_eq!(topup_bonus(m("99.99"), &rules), Money::ZERO);
        assert_eq!(topup_bonus(m("100"), &rules), m("6"));
        assert_eq!(topup_bonus(m("499.99"), &rules), m("6"));
        assert_eq!(topup_bonus(m("500"), &rules), m("30"));
        assert_eq!(topup_bonus(m("500"), &[]), Money::ZERO);
    }

    #[test]
    fn refund_points_examples() {
        // charged 10, earned 3: two halves take 1 then 2, all 3 in the end.
        assert_eq!(refund_points(m("5"), m("0"), m("10"), 3, 0), 1);
        assert_eq!(refund_points(m("5"), m("5"), m("10"), 3, 1), 2);
        assert_eq!(refund_points(m("10"), m("0"), m("10"), 3, 0), 3);
        assert_eq!(refund_points(m("0.01"), m("0"), m("10"), 3, 0), 0);
    }

    proptest! {
        #[test]
        fn discount_plus_charged_is_sale(cents in 1i64..10_000_000_000, pct in 1u32..=100, rate in 0u32..500) {
            let l = Level {
                name: "x".into(),
                discount: Decimal::new(pct.into(), 2),
                points_rate: Decimal::new(rate.into(), 2),
                limits: Default::default(),
            };
            let sale = Money::from_cents(cents).unwrap();
            if let Ok((disc, charged)) = debit_amounts(sale, &l) {
                prop_assert_eq!(disc.amount() + charged.amount(), sale.amount());
                prop_assert_eq!(charged.amount(), round_half_up_cents(sale.amount() * l.discount));
                prop_assert!(charged <= sale);
                let p = points_earned(charged, &l).unwrap();
                prop_assert!(Decimal::from(p) <= charged.amount() * l.points_rate);
                prop_assert!(Decimal::from(p + 1) > charged.amount() * l.points_rate);
            } else {
                prop_assert!(round_half_up_cents(sale.amount() * l.discount).is_zero());
            }
        }

        #[test]
        fn refunds_in_parts_take_back_exactly_all(
            charged in 1i64..1_000_000, earned in 0i64..100_000,
            cuts in proptest::collection::vec(1i64..1_000_000, 0..6),
        ) {
            let charged_m = Money::from_cents(charged).unwrap();
            let mut refunded = 0i64;
            let mut taken = 0i64;
            let mut parts: Vec<i64> = cuts.into_iter().map(|c| c % charged + 1).collect();
            parts.push(charged);
            for p in parts {
                let part = p.min(charged - refunded);
                if part == 0 { break; }
                let t = refund_points(
                    Money::from_cents(part).unwrap(), Money::from_cents(refunded).unwrap(),
                    charged_m, earned, taken);
                prop_assert!(t >= 0);
                refunded += part;
                taken += t;
                prop_assert!(taken <= earned);
                // Never more than the proportion of what was refunded so far.
                prop_assert!(Decimal::from(taken) * Decimal::from(charged)
                    <= Decimal::from(earned) * Decimal::from(refunded));
            }
            prop_assert_eq!(refunded, charged);
            prop_assert_eq!(taken, earned);
        }
    }
}
