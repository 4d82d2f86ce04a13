//! Resource quantities (`500m`, `1Gi`, `1e3`, `0.5`), parsed exactly.
//!
//! Upstream's `resource.Quantity` is an exact decimal, so `1` and `1000m` are the same
//! amount and compare equal. Here a quantity is a whole number of nano-units in an `i128`:
//! exact for every suffix (`1Ei` is about 1.2e27 nano-units, far inside the range), rounded
//! up below one nano-unit as upstream rounds, and saturating for absurdly large values.

/// An exact amount of a resource, in nano-units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Quantity {
    nanos: i128,
}

impl Quantity {
    pub const ZERO: Quantity = Quantity { nanos: 0 };

    /// Parses upstream's quantity grammar: an optionally signed decimal number followed by a
    /// binary suffix (`Ki` … `Ei`), a decimal suffix (`n`, `u`, `m`, `k`, `M` … `E`) or a
    /// decimal exponent (`e3`, `E-2`). Surrounding whitespace is ignored.
    pub fn parse(s: &str) -> Option<Quantity> {
        let s = s.trim();
        let (negative, rest) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, suffix) = rest.split_at(num_end);
        let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
        if (whole.is_empty() && frac.is_empty()) || frac.contains('.') {
            return None;
        }
        let (exp10, pow2): (i64, u32) = match suffix {
            "" => (0, 0),
            "n" => (-9, 0),
            "u" => (-6, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            "Ki" => (0, 10),
            "Mi" => (0, 20),
            "Gi" => (0, 30),
            "Ti" => (0, 40),
            "Pi" => (0, 50),
            "Ei" => (0, 60),
            exp if exp.starts_with(['e', 'E']) => (exp[1..].parse::<i32>().ok()?.into(), 0),
            _ => return None,
        };
        // value = mantissa * 10^scale * 2^pow2, in nano-units.
        let frac_len = i64::try_from(frac.len()).ok()?;
        let mut scale = exp10 + 9 - frac_len;
        let mut mantissa: u128 = 0;
        for d in whole.bytes().chain(frac.bytes()) {
            match mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(u128::from(d - b'0')))
            {
                Some(m) => mantissa = m,
                // More digits than 128 bits hold: drop this one and shift the scale.
                None => scale += 1,
            }
        }
        let mut magnitude = mantissa.saturating_mul(1u128 << pow2);
        if scale >= 0 {
            for _ in 0..scale {
                if magnitude == 0 || magnitude == u128::MAX {
                    break;
                }
                magnitude = magnitude.saturating_mul(10);
            }
        } else {
            let divisor = u32::try_from(-scale)
                .ok()
                .and_then(|e| 10u128.checked_pow(e));
            magnitude = match divisor {
                Some(d) => magnitude.div_ceil(d),
                // Less than one nano-unit: rounds up to one, as upstream rounds.
                None => u128::from(magnitude > 0),
            };
        }
        let nanos = i128::try_from(magnitude).unwrap_or(i128::MAX);
        Some(Quantity {
            nanos: if negative { -nanos } else { nanos },
        })
    }

    /// The amount as a floating-point number of whole units (for arithmetic where exactness
    /// does not matter: byte counts, CPU shares).
    pub fn as_f64(self) -> f64 {
        // Both operands are exact below 2^53, so the quotient is correctly rounded.
        self.nanos as f64 / 1e9
    }

    /// Upstream's `MilliValue`: the amount in thousandths of a unit, rounded up.
    pub fn milli_value(self) -> i128 {
        ceil_div(self.nanos, 1_000_000)
    }

    /// Upstream's `Value`: the amount in whole units, rounded up.
    pub fn value(self) -> i128 {
        ceil_div(self.nanos, 1_000_000_000)
    }

    /// A whole number of units.
    pub fn from_units(units: i128) -> Quantity {
        Quantity {
            nanos: units.saturating_mul(1_000_000_000),
        }
    }

    /// An amount of nano-units.
    pub fn from_nanos(nanos: i128) -> Quantity {
        Quantity { nanos }
    }

    /// The amount in nano-units.
    pub fn nanos(self) -> i128 {
        self.nanos
    }

    pub fn is_zero(self) -> bool {
        self.nanos == 0
    }

    pub fn is_positive(self) -> bool {
        self.nanos > 0
    }

    pub fn is_negative(self) -> bool {
        self.nanos < 0
    }

    /// The difference, saturating at the ends of the range.
    pub fn saturating_sub(self, other: Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos.saturating_sub(other.nanos),
        }
    }

    /// The sum, saturating at the ends of the range.
    pub fn saturating_add(self, other: Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos.saturating_add(other.nanos),
        }
    }
}

/// `n / d` rounded towards positive infinity (`d > 0`).
fn ceil_div(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d > 0 {
        q + 1
    } else {
        q
    }
}

/// Parses a quantity to its value in whole units (`500m` → 0.5, `1Ki` → 1024).
pub fn parse_quantity(s: &str) -> Option<f64> {
    Quantity::parse(s).map(Quantity::as_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milli_and_whole_values_round_up() {
        let q = |s: &str| Quantity::parse(s).expect(s);
        assert_eq!(q("1100m").milli_value(), 1100);
        assert_eq!(q("1.1").milli_value(), 1100);
        assert_eq!(q("250u").milli_value(), 1);
        assert_eq!(q("1m").value(), 1);
        assert_eq!(q("1Ki").value(), 1024);
        assert_eq!(q("0").milli_value(), 0);
        assert_eq!(Quantity::from_units(3), q("3"));
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("500m"), Some(0.5));
        assert_eq!(parse_quantity("1Gi"), Some(1073741824.0));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("abc"), None);
        assert_eq!(parse_quantity("1Xi"), None);
        assert_eq!(parse_quantity("1Ki"), Some(1024.0));
        assert_eq!(parse_quantity("2e3"), Some(2000.0));
        assert_eq!(parse_quantity("1.5"), Some(1.5));
        assert_eq!(parse_quantity("bogus"), None);
        assert_eq!(parse_quantity("1Zi"), None);
        assert_eq!(parse_quantity("-0.5"), Some(-0.5));
        for bad in ["", "+", "-", ".", "1.2.3", "1e", "1 Gi", "Gi"] {
            assert_eq!(Quantity::parse(bad), None, "{bad:?}");
        }
    }

    /// `parse_quantity` once returned inf/NaN for huge exponents and mantissas, which the
    /// cgroup arithmetic then turned into panics or nonsense.
    #[test]
    fn parse_quantity_is_always_finite() {
        let long = "9".repeat(5000);
        let inputs = [
            "1e308",
            "1e309",
            "1e2147483647",
            "-1e2147483647",
            "1e-2147483648",
            "999999999999999999999999999999999999999999Ei",
            long.as_str(),
            "NaN",
            "inf",
            "-inf",
            "1e99999999999",
        ];
        for s in inputs {
            if let Some(v) = parse_quantity(s) {
                assert!(v.is_finite(), "{s:?} gave {v}");
            }
        }
        assert!(parse_quantity("1e309").is_some_and(|v| v > 1e20));
        assert_eq!(parse_quantity("NaN"), None);
        assert_eq!(parse_quantity("inf"), None);
    }

    #[test]
    fn equal_amounts_compare_equal() {
        let q = |s: &str| Quantity::parse(s).expect(s);
        assert_eq!(q("1"), q("1000m"));
        assert_eq!(q("1"), q("1.000"));
        assert_eq!(q("64Mi"), q("67108864"));
        assert_eq!(q("1k"), q("1e3"));
        assert_eq!(q("0.1"), q("100m"));
        assert_eq!(q("1n"), q("0.000000001"));
        assert!(q("1001m") > q("1"));
        assert!(q("0").is_zero() && q("-1m").is_negative() && q("1n").is_positive());
        assert_eq!(q("1").saturating_add(q("500m")), q("1.5"));
    }

    #[test]
    fn rounding_and_extremes() {
        let q = |s: &str| Quantity::parse(s).expect(s);
        // Below one nano-unit rounds up to one.
        assert_eq!(q("0.1n"), q("1n"));
        assert_eq!(q("1e-30"), q("1n"));
        assert!(q("1e40") > q("1Ei"));
        assert_eq!(q("1e40"), q("1e50"));
        assert!(q(&"9".repeat(60)).is_positive());
    }
}
