//! [`Counters`]: every additive metric of one row in one value, used as the
//! *difference* type of the metrics arrangements.
//!
//! Differential dataflow accumulates the differences of equal records. With
//! `Counters` as the difference, an event becomes one update
//! `(key, time, counters)` and the arrangement itself sums impressions,
//! clicks, conversions, revenue and cost for the key: one record per key in
//! the trace instead of one per metric, and no per-event values to keep.

use differential_dataflow::difference::{Abelian, IsZero, Monoid, Multiply, Semigroup};
use serde::{Deserialize, Serialize};

use adflow::money::Micros;

/// The additive metrics of one key, or a change to them.
///
/// Arithmetic wraps on overflow (it never panics on data): sums of realistic
/// traffic stay many orders of magnitude below `i64::MAX` micros.
///
/// ```
/// use adflow_operators::metrics::Counters;
/// use differential_dataflow::difference::{Abelian, IsZero, Multiply, Semigroup};
///
/// let click = Counters { clicks: 1, cost_micros: 250_000, ..Counters::default() };
/// let mut total = click.multiply(&3);
/// assert_eq!((total.clicks, total.cost_micros), (3, 750_000));
/// let mut undo = total;
/// undo.negate();
/// total.plus_equals(&undo);
/// assert!(total.is_zero());
/// ```
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Counters {
    /// Impressions, valid or not.
    pub impressions: i64,
    /// Impressions whose event id is flagged invalid.
    pub invalid_impressions: i64,
    /// Clicks, valid or not.
    pub clicks: i64,
    /// Clicks whose event id is flagged invalid.
    pub invalid_clicks: i64,
    /// Credited conversions in millionths (1_000_000 is one conversion).
    pub conversions_micros: i64,
    /// Credited conversion revenue.
    pub revenue_micros: Micros,
    /// Billing cost: the cost of valid impressions and valid clicks.
    pub cost_micros: Micros,
}

impl Counters {
    /// Applies `op` field by field.
    fn zip_with(self, other: &Counters, op: impl Fn(i64, i64) -> i64) -> Counters {
        Counters {
            impressions: op(self.impressions, other.impressions),
            invalid_impressions: op(self.invalid_impressions, other.invalid_impressions),
            clicks: op(self.clicks, other.clicks),
            invalid_clicks: op(self.invalid_clicks, other.invalid_clicks),
            conversions_micros: op(self.conversions_micros, other.conversions_micros),
            revenue_micros: op(self.revenue_micros, other.revenue_micros),
            cost_micros: op(self.cost_micros, other.cost_micros),
        }
    }

    /// Multiplies every field by `factor` (wrapping).
    pub fn scaled(self, factor: i64) -> Counters {
        let factors = Counters {
            impressions: factor,
            invalid_impressions: factor,
            clicks: factor,
            invalid_clicks: factor,
            conversions_micros: factor,
            revenue_micros: factor,
            cost_micros: factor,
        };
        self.zip_with(&factors, i64::wrapping_mul)
    }
}

impl IsZero for Counters {
    #[inline]
    fn is_zero(&self) -> bool {
        *self == Counters::default()
    }
}

impl Semigroup for Counters {
    #[inline]
    fn plus_equals(&mut self, rhs: &Self) {
        *self = self.zip_with(rhs, i64::wrapping_add);
    }
}

impl Monoid for Counters {
    #[inline]
    fn zero() -> Self {
        Counters::default()
    }
}

impl Abelian for Counters {
    #[inline]
    fn negate(&mut self) {
        *self = self.scaled(-1);
    }
}

/// Scaling by a record's multiplicity, so that `explode` can turn an
/// `isize`-weighted collection into `Counters` updates.
impl Multiply<isize> for Counters {
    type Output = Counters;

    #[inline]
    fn multiply(self, rhs: &isize) -> Counters {
        // isize is at most 64 bits on every platform timely supports.
        self.scaled(i64::try_from(*rhs).unwrap_or(i64::MAX))
    }
}
