//! Amounts of money and points.
//!
//! Rounding rule of the whole ledger: amounts of money are rounded to 0.01
//! half-up (half away from zero, which is half-up for the non-negative amounts
//! the ledger computes with); points are floored, so rounding never gives a
//! customer a point the rate did not earn. No float is ever involved.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};

use crate::protocol::errno::Errno;

/// Points on a card: a whole number, never negative on a card or a lot.
pub type Points = i64;

/// The largest point total a card may hold: the 12 digits of the wire grammar
/// `-?[0-9]{1,12}`, so every total can also be sent as a points delta.
pub const MAX_POINTS: Points = 999_999_999_999;

/// A non-negative amount of money with exactly two decimals that fits the
/// `NUMERIC(14,2)` of the cards table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(Decimal);

impl Money {
    pub const ZERO: Money = Money(Decimal::from_parts(0, 0, 0, false, 2));
    /// 999,999,999,999.99: the largest `NUMERIC(14,2)` and the largest wire amount.
    pub const MAX: Money = Money(Decimal::from_parts(0x107A_3FFF, 0x5AF3, 0, false, 2));

    /// Validates an amount: not negative, at most [`Money::MAX`], and no
    /// non-zero digit beyond the cent. An amount with a third decimal is refused
    /// rather than rounded: a client asking for 1.005 asked for something the
    /// ledger cannot post, and guessing which way it meant is worse.
    pub fn new(amount: Decimal) -> Result<Money, Errno> {
        if amount.is_sign_negative() && !amount.is_zero() {
            return Err(Errno::InvalidAmount);
        }
        if amount.normalize().scale() > 2 {
            return Err(Errno::InvalidAmount);
        }
        let mut d = amount.abs();
        d.rescale(2);
        if d > Money::MAX.0 {
            return Err(Errno::InvalidAmount);
        }
        Ok(Money(d))
    }

    /// Whole cents, for tests and constants.
    pub fn from_cents(cents: i64) -> Result<Money, Errno> {
        Money::new(Decimal::new(cents, 2))
    }

    pub fn amount(self) -> Decimal {
        self.0
    }

    /// Whole cents: exact, since the scale is always 2.
    pub fn cents(self) -> i64 {
        // Every Money is at most 10^14 cents, far inside i64.
        self.0.mantissa() as i64
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// `None` when the sum would pass [`Money::MAX`].
    pub fn checked_add(self, other: Money) -> Option<Money> {
        Money::new(self.0 + other.0).ok()
    }

    /// `None` when the difference would be negative.
    pub fn checked_sub(self, other: Money) -> Option<Money> {
        Money::new(self.0 - other.0).ok()
    }

    /// Applies a signed delta of scale 2; `None` when the result leaves
    /// `0..=MAX`.
    pub fn checked_apply(self, delta: Decimal) -> Option<Money> {
        Money::new(self.0 + delta).ok()
    }
}

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Rounds to 0.01, halves away from zero, and always returns scale 2.
pub fn round_half_up_cents(d: Decimal) -> Decimal {
    let mut r = d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    r.rescale(2);
    r
}

/// Floors a point amount; `None` when it does not fit an `i64`.
pub fn floor_points(d: Decimal) -> Option<Points> {
    d.floor().to_i64()
}

/// A signed money delta with scale 2, as posted.
pub fn delta(d: Decimal) -> Decimal {
    let mut r = d;
    r.rescale(2);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn bounds() {
        assert_eq!(Money::MAX.to_string(), "999999999999.99");
        assert_eq!(Money::ZERO.to_string(), "0.00");
        assert!(Money::new(d("999999999999.99")).is_ok());
        assert_eq!(Money::new(d("1000000000000.00")), Err(Errno::InvalidAmount));
        assert_eq!(Money::new(d("-0.01")), Err(Errno::InvalidAmount));
        assert_eq!(Money::new(d("1.005")), Err(Errno::InvalidAmount));
        assert_eq!(Money::new(d("1.500")).unwrap().to_string(), "1.50");
        assert_eq!(Money::new(d("-0")).unwrap(), Money::ZERO);
        assert_eq!(Money::new(d("7")).unwrap().amount().scale(), 2);
        assert_eq!(Money::MAX.checked_add(Money::from_cents(1).unwrap()), None);
        assert_eq!(Money::ZERO.checked_sub(Money::from_cents(1).unwrap()), None);
    }

    #[test]
    fn half_up() {
        assert_eq!(round_half_up_cents(d("0.005")), d("0.01"));
        assert_eq!(round_half_up_cents(d("0.0049999")), d("0.00"));
        assert_eq!(round_half_up_cents(d("2.675")), d("2.68"));
        assert_eq!(round_half_up_cents(d("9.5")).to_string(), "9.50");
        assert_eq!(floor_points(d("9.99")), Some(9));
    }

    proptest! {
        #[test]
        fn rounding_is_half_up_to_the_cent(milli in 0i64..10_000_000_000) {
            // A value in thousandths: the third digit decides, 5 goes up.
            let r = round_half_up_cents(Decimal::new(milli, 3));
            let expect = if milli % 10 >= 5 { milli / 10 + 1 } else { milli / 10 };
            prop_assert_eq!(r, Decimal::new(expect, 2));
            prop_assert_eq!(r.scale(), 2);
        }

        #[test]
        fn cents_round_trip(cents in 0i64..=99_999_999_999_999) {
            let m = Money::from_cents(cents).unwrap();
            prop_assert_eq!(m.amount(), Decimal::new(cents, 2));
            prop_assert_eq!(Money::new(m.amount()).unwrap(), m);
            prop_assert_eq!(m.cents(), cents);
        }
    }
}
