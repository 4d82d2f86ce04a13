//! How upstream prints a quantity: `resource.Quantity.String()` (the canonical form, in the
//! format the quantity was written in) and Go's `%#v` of a `resource.Quantity`, which field
//! errors show as the invalid value of some kinds (a LimitRange's bounds).

use crate::quantity::Quantity;

/// The suffix family a quantity was written with; its canonical form keeps to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `Ki`, `Mi` … `Ei`.
    BinarySI,
    /// `n`, `u`, `m`, no suffix, `k`, `M` … `E`.
    DecimalSI,
    /// `e3`, `E-2`.
    DecimalExponent,
}

impl Format {
    fn go_name(self) -> &'static str {
        match self {
            Format::BinarySI => "BinarySI",
            Format::DecimalSI => "DecimalSI",
            Format::DecimalExponent => "DecimalExponent",
        }
    }
}

/// The number, fraction and suffix of a quantity's text, as upstream's parser splits it.
struct Parts<'a> {
    negative: bool,
    num: &'a str,
    denom: &'a str,
    /// Base-10 exponent (decimal) or base-2 exponent (binary) of the suffix.
    exponent: i32,
    format: Format,
}

fn split(text: &str) -> Option<Parts<'_>> {
    let s = text.trim();
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (num, after) = rest.split_at(num_end);
    let (denom, suffix) = match after.strip_prefix('.') {
        Some(f) => {
            let end = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
            f.split_at(end)
        }
        None => ("", after),
    };
    let (exponent, format) = match suffix {
        "" => (0, Format::DecimalSI),
        "n" => (-9, Format::DecimalSI),
        "u" => (-6, Format::DecimalSI),
        "m" => (-3, Format::DecimalSI),
        "k" => (3, Format::DecimalSI),
        "M" => (6, Format::DecimalSI),
        "G" => (9, Format::DecimalSI),
        "T" => (12, Format::DecimalSI),
        "P" => (15, Format::DecimalSI),
        "E" => (18, Format::DecimalSI),
        "Ki" => (10, Format::BinarySI),
        "Mi" => (20, Format::BinarySI),
        "Gi" => (30, Format::BinarySI),
        "Ti" => (40, Format::BinarySI),
        "Pi" => (50, Format::BinarySI),
        "Ei" => (60, Format::BinarySI),
        e if e.starts_with(['e', 'E']) => (e[1..].parse().ok()?, Format::DecimalExponent),
        _ => return None,
    };
    Some(Parts {
        negative,
        num: if num.is_empty() { "0" } else { num },
        denom,
        exponent,
        format,
    })
}

/// The format `text` was written in (`None` when it is no quantity).
pub fn format_of(text: &str) -> Option<Format> {
    Quantity::parse(text)?;
    split(text).map(|p| p.format)
}

/// Upstream's `Quantity.String()` of `text`: `1000m` is `1`, `0.5` is `500m`, `2048Ki` is
/// `2Mi`, `1536Mi` stays, `1e3` stays.
pub fn canonical(text: &str) -> Option<String> {
    Some(canonical_of(Quantity::parse(text)?, format_of(text)?))
}

const NANOS_PER_UNIT: u128 = 1_000_000_000;

/// The canonical text of `q` in `format` (`CanonicalizeBytes`): binary amounts that are
/// whole and at least 1024 in magnitude take the largest binary suffix that keeps them
/// whole, everything else the decimal suffix (or exponent) that is a multiple of three.
pub fn canonical_of(q: Quantity, format: Format) -> String {
    let nanos = q.nanos();
    if nanos == 0 {
        return "0".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let magnitude = nanos.unsigned_abs();
    let whole_binary = format == Format::BinarySI
        && magnitude >= 1024 * NANOS_PER_UNIT
        && magnitude.is_multiple_of(NANOS_PER_UNIT);
    if whole_binary {
        let mut amount = magnitude / NANOS_PER_UNIT;
        let mut power = 0;
        while amount.is_multiple_of(1024) && power < 6 {
            amount /= 1024;
            power += 1;
        }
        let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][power];
        return format!("{sign}{amount}{suffix}");
    }
    let mut amount = magnitude;
    let mut exponent: i32 = -9;
    while amount.is_multiple_of(10) {
        amount /= 10;
        exponent += 1;
    }
    match exponent.rem_euclid(3) {
        1 => {
            amount *= 10;
            exponent -= 1;
        }
        2 => {
            amount *= 100;
            exponent -= 2;
        }
        _ => {}
    }
    let suffix = match (format, exponent) {
        (Format::DecimalExponent, 0) => String::new(),
        (Format::DecimalExponent, e) => format!("e{e}"),
        (_, -9) => "n".into(),
        (_, -6) => "u".into(),
        (_, -3) => "m".into(),
        (_, 0) => String::new(),
        (_, 3) => "k".into(),
        (_, 6) => "M".into(),
        (_, 9) => "G".into(),
        (_, 12) => "T".into(),
        (_, 15) => "P".into(),
        (_, 18) => "E".into(),
        (_, e) => format!("e{e}"),
    };
    format!("{sign}{amount}{suffix}")
}

/// Go's `%#v` of the `resource.Quantity` decoded from `text` after its `String()` ran, which
/// is how a field error shows a quantity given as the bad value:
/// `resource.Quantity{i:resource.int64Amount{value:500, scale:-3}, d:…, s:"500m", Format:"DecimalSI"}`.
/// `None` when upstream would keep the amount as an arbitrary-precision decimal (whose
/// pointer `%#v` prints), or `text` is no quantity.
pub fn go_debug(text: &str) -> Option<String> {
    let canonical = canonical(text)?;
    let p = split(text)?;
    let denom_len = i32::try_from(p.denom.len()).ok()?;
    let num_len = i32::try_from(p.num.len()).ok()?;
    // Upstream's fast path: the digits fit an int64 with room for the suffix.
    let (mantissa, precision, scale) = match p.format {
        Format::DecimalSI | Format::DecimalExponent => {
            (1i64, 18 - num_len - denom_len, p.exponent - denom_len)
        }
        Format::BinarySI if p.denom.is_empty() => (
            1i64 << p.exponent,
            15 - num_len - p.exponent * 3 / 10 - 1,
            0,
        ),
        Format::BinarySI => return None,
    };
    if precision < 0 || scale < -9 {
        return None;
    }
    let digits: i64 = format!("{}{}", p.num, p.denom).parse().ok()?;
    let value = digits.checked_mul(mantissa)?;
    let value = if p.negative { -value } else { value };
    Some(format!(
        "resource.Quantity{{i:resource.int64Amount{{value:{value}, scale:{scale}}}, d:resource.infDecAmount{{Dec:(*inf.Dec)(nil)}}, s:{canonical:?}, Format:{:?}}}",
        p.format.go_name()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms_follow_upstream() {
        let c = |s: &str| canonical(s).expect(s);
        assert_eq!(c("1000m"), "1");
        assert_eq!(c("0.5"), "500m");
        assert_eq!(c("1.5"), "1500m");
        assert_eq!(c("2000"), "2k");
        assert_eq!(c("1500"), "1500");
        assert_eq!(c("100Mi"), "100Mi");
        assert_eq!(c("2048Ki"), "2Mi");
        assert_eq!(c("1536Mi"), "1536Mi");
        assert_eq!(c("512"), "512");
        assert_eq!(c("1e3"), "1e3");
        assert_eq!(c("1000e0"), "1e3");
        assert_eq!(c("0"), "0");
        assert_eq!(c("0Gi"), "0");
        assert_eq!(c("-250m"), "-250m");
        assert_eq!(c("0.5Gi"), "512Mi");
        assert_eq!(c("1.5Ki"), "1536");
        assert_eq!(c("100n"), "100n");
        assert_eq!(canonical("lots"), None);
        let sum = Quantity::parse("1Gi")
            .expect("q")
            .saturating_add(Quantity::parse("1Gi").expect("q"));
        assert_eq!(canonical_of(sum, Format::BinarySI), "2Gi");
        assert_eq!(canonical_of(sum, Format::DecimalSI), "2147483648");
    }

    #[test]
    fn go_debug_shows_the_parsed_amount() {
        assert_eq!(
            go_debug("500m").as_deref(),
            Some("resource.Quantity{i:resource.int64Amount{value:500, scale:-3}, d:resource.infDecAmount{Dec:(*inf.Dec)(nil)}, s:\"500m\", Format:\"DecimalSI\"}")
        );
        assert_eq!(
            go_debug("1000m").as_deref(),
            Some("resource.Quantity{i:resource.int64Amount{value:1000, scale:-3}, d:resource.infDecAmount{Dec:(*inf.Dec)(nil)}, s:\"1\", Format:\"DecimalSI\"}")
        );
        assert_eq!(
            go_debug("1Gi").as_deref(),
            Some("resource.Quantity{i:resource.int64Amount{value:1073741824, scale:0}, d:resource.infDecAmount{Dec:(*inf.Dec)(nil)}, s:\"1Gi\", Format:\"BinarySI\"}")
        );
        assert_eq!(go_debug("0.5Gi"), None);
        assert_eq!(go_debug("nope"), None);
    }
}
