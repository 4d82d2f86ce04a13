//! The cron syntax CronJobs accept (kube-controller-manager reads it with the standard
//! five-field parser of robfig/cron v3): minute, hour, day of month, month, day of week,
//! each a comma list of `*`, `?`, `N`, `N-M`, any of them with `/STEP`, month and weekday
//! names; the `@yearly` … `@hourly` descriptors, `@every DURATION`, and a `TZ=`/`CRON_TZ=`
//! prefix. Error texts are the parser's, because the API server shows them in 422s.

/// Why a schedule does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty spec string")]
    Empty,
    #[error("expected exactly 5 fields, found {found}: [{fields}]")]
    FieldCount { found: usize, fields: String },
    #[error("failed to parse int from {expr}: strconv.Atoi: parsing {quoted}: {why}")]
    Int {
        expr: String,
        quoted: String,
        why: &'static str,
    },
    #[error("too many hyphens: {0}")]
    TooManyHyphens(String),
    #[error("too many slashes: {0}")]
    TooManySlashes(String),
    #[error("beginning of range ({start}) below minimum ({min}): {expr}")]
    BelowMinimum { start: u32, min: u32, expr: String },
    #[error("end of range ({end}) above maximum ({max}): {expr}")]
    AboveMaximum { end: u32, max: u32, expr: String },
    #[error("beginning of range ({start}) beyond end of range ({end}): {expr}")]
    Reversed { start: u32, end: u32, expr: String },
    #[error("step of range should be a positive number: {0}")]
    ZeroStep(String),
    #[error("unrecognized descriptor: {0}")]
    Descriptor(String),
    #[error("failed to parse duration {spec}: time: invalid duration {quoted}")]
    Duration { spec: String, quoted: String },
    #[error("provided bad location {0}: unknown time zone {0}")]
    Location(String),
}

/// A set of values of one field (bit `n` for value `n`), and whether it was written as `*`
/// or `?` (which changes how day of month and day of week combine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field {
    pub(crate) bits: u64,
    pub(crate) star: bool,
}

impl Field {
    pub(crate) fn has(self, v: u32) -> bool {
        v < 64 && self.bits & (1 << v) != 0
    }
}

/// The five fields of a cron line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fields {
    pub(crate) minute: Field,
    pub(crate) hour: Field,
    pub(crate) dom: Field,
    pub(crate) month: Field,
    pub(crate) dow: Field,
}

/// What a schedule says, before a time zone is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Spec {
    Fields(Fields),
    /// `@every`: a fixed delay in whole seconds (at least one).
    Every(u64),
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [(&'static str, u32)],
}

const MINUTE: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &[
        ("sun", 0),
        ("mon", 1),
        ("tue", 2),
        ("wed", 3),
        ("thu", 4),
        ("fri", 5),
        ("sat", 6),
    ],
};

/// Splits a leading `TZ=Zone ` or `CRON_TZ=Zone ` off `spec`.
pub(crate) fn split_zone(spec: &str) -> Result<(Option<&str>, &str), ParseError> {
    let spec = spec.trim();
    if !(spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=")) {
        return Ok((None, spec));
    }
    let eq = spec.find('=').unwrap_or(0);
    match spec.find(' ') {
        Some(space) if space > eq => Ok((Some(&spec[eq + 1..space]), spec[space..].trim())),
        _ => Err(ParseError::Location(spec[eq + 1..].to_string())),
    }
}

/// Parses what follows an optional time zone prefix.
pub(crate) fn parse_spec(spec: &str) -> Result<Spec, ParseError> {
    if spec.is_empty() {
        return Err(ParseError::Empty);
    }
    if spec.starts_with('@') {
        return descriptor(spec);
    }
    let parts: Vec<&str> = spec.split_whitespace().collect();
    if parts.len() != 5 {
        return Err(ParseError::FieldCount {
            found: parts.len(),
            fields: parts.join(" "),
        });
    }
    Ok(Spec::Fields(Fields {
        minute: field(parts[0], &MINUTE)?,
        hour: field(parts[1], &HOUR)?,
        dom: field(parts[2], &DOM)?,
        month: field(parts[3], &MONTH)?,
        dow: field(parts[4], &DOW)?,
    }))
}

fn all(b: &Bounds) -> Field {
    Field {
        bits: range_bits(b.min, b.max, 1),
        star: true,
    }
}

fn one(v: u32) -> Field {
    Field {
        bits: 1 << v,
        star: false,
    }
}

fn descriptor(spec: &str) -> Result<Spec, ParseError> {
    let at_midnight = |dom: Field, month: Field, dow: Field| {
        Spec::Fields(Fields {
            minute: one(0),
            hour: one(0),
            dom,
            month,
            dow,
        })
    };
    Ok(match spec {
        "@yearly" | "@annually" => at_midnight(one(1), one(1), all(&DOW)),
        "@monthly" => at_midnight(one(1), all(&MONTH), all(&DOW)),
        "@weekly" => at_midnight(all(&DOM), all(&MONTH), one(0)),
        "@daily" | "@midnight" => at_midnight(all(&DOM), all(&MONTH), all(&DOW)),
        "@hourly" => Spec::Fields(Fields {
            minute: one(0),
            hour: all(&HOUR),
            dom: all(&DOM),
            month: all(&MONTH),
            dow: all(&DOW),
        }),
        _ => match spec.strip_prefix("@every ") {
            Some(d) => Spec::Every(go_duration_seconds(d).ok_or_else(|| ParseError::Duration {
                spec: spec.to_string(),
                quoted: quote(d),
            })?),
            None => return Err(ParseError::Descriptor(spec.to_string())),
        },
    })
}

/// Go's `time.ParseDuration` for the units a schedule uses, rounded down to whole seconds
/// with a minimum of one (as the parser's constant-delay schedule does).
fn go_duration_seconds(text: &str) -> Option<u64> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        nanos += number * scale;
    }
    let secs = (nanos / 1e9).floor();
    (secs.is_finite() && secs < 1e15).then(|| (secs as u64).max(1))
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn field(text: &str, b: &Bounds) -> Result<Field, ParseError> {
    let mut out = Field {
        bits: 0,
        star: false,
    };
    for expr in text.split(',') {
        let f = range(expr, b)?;
        out.bits |= f.bits;
        out.star |= f.star;
    }
    Ok(out)
}

fn range(expr: &str, b: &Bounds) -> Result<Field, ParseError> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_high.len() == 1;
    let (start, mut end, mut star) = if low_high[0] == "*" || low_high[0] == "?" {
        (b.min, b.max, true)
    } else {
        let start = int_or_name(low_high[0], b)?;
        let end = match low_high.len() {
            1 => start,
            2 => int_or_name(low_high[1], b)?,
            _ => return Err(ParseError::TooManyHyphens(expr.to_string())),
        };
        (start, end, false)
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = int(range_and_step[1])?;
            // `N/STEP` runs from N to the field's maximum.
            if single {
                end = b.max;
            }
            if step > 1 {
                star = false;
            }
            step
        }
        _ => return Err(ParseError::TooManySlashes(expr.to_string())),
    };
    if start < b.min {
        return Err(ParseError::BelowMinimum {
            start,
            min: b.min,
            expr: expr.to_string(),
        });
    }
    if end > b.max {
        return Err(ParseError::AboveMaximum {
            end,
            max: b.max,
            expr: expr.to_string(),
        });
    }
    if start > end {
        return Err(ParseError::Reversed {
            start,
            end,
            expr: expr.to_string(),
        });
    }
    if step == 0 {
        return Err(ParseError::ZeroStep(expr.to_string()));
    }
    Ok(Field {
        bits: range_bits(start, end, step),
        star,
    })
}

fn range_bits(start: u32, end: u32, step: u32) -> u64 {
    (start..=end)
        .step_by(step as usize)
        .fold(0, |acc, v| acc | (1 << v))
}

fn int_or_name(expr: &str, b: &Bounds) -> Result<u32, ParseError> {
    let lower = expr.to_ascii_lowercase();
    match b.names.iter().find(|(n, _)| *n == lower) {
        Some((_, v)) => Ok(*v),
        None => int(expr),
    }
}

/// Go's `strconv.Atoi` with the parser's wording; negative numbers cannot reach here
/// (a `-` separates a range).
fn int(expr: &str) -> Result<u32, ParseError> {
    let err = |why| ParseError::Int {
        expr: expr.to_string(),
        quoted: quote(expr),
        why,
    };
    let digits = expr.strip_prefix('+').unwrap_or(expr);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(err("invalid syntax"));
    }
    // Values past a field's range are reported as such, not as overflow.
    digits
        .parse::<u64>()
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX).min(1 << 20))
        .map_err(|_| err("value out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(spec: &str) -> Fields {
        match parse_spec(spec) {
            Ok(Spec::Fields(f)) => f,
            other => panic!("{spec}: {other:?}"),
        }
    }

    #[test]
    fn fields_lists_ranges_steps_and_names() {
        let f = fields("*/15 9-17 1,15 jan-MAR mon-fri");
        assert_eq!(f.minute.bits, 1 | 1 << 15 | 1 << 30 | 1 << 45);
        assert!(!f.minute.star);
        assert_eq!(f.hour.bits, range_bits(9, 17, 1));
        assert_eq!(f.dom.bits, 1 << 1 | 1 << 15);
        assert_eq!(f.month.bits, 1 << 1 | 1 << 2 | 1 << 3);
        assert_eq!(f.dow.bits, range_bits(1, 5, 1));
        let g = fields("5/20 * ? * *");
        assert_eq!(g.minute.bits, 1 << 5 | 1 << 25 | 1 << 45);
        assert!(g.hour.star && g.dom.star && g.dow.star);
        assert!(fields("*/1 * * * *").minute.star);
    }

    #[test]
    fn descriptors() {
        let w = fields("@weekly");
        assert_eq!((w.minute.bits, w.hour.bits, w.dow.bits), (1, 1, 1));
        assert!(w.dom.star);
        assert_eq!(fields("@hourly").hour.bits, range_bits(0, 23, 1));
        assert_eq!(fields("@annually"), fields("@yearly"));
        assert_eq!(parse_spec("@every 1h30m"), Ok(Spec::Every(5400)));
        assert_eq!(parse_spec("@every 10ms"), Ok(Spec::Every(1)));
    }

    #[test]
    fn errors_read_as_the_parser_writes_them() {
        let msg = |s: &str| parse_spec(s).map(|_| ()).expect_err(s).to_string();
        assert_eq!(msg(""), "empty spec string");
        assert_eq!(msg("* * *"), "expected exactly 5 fields, found 3: [* * *]");
        assert_eq!(
            msg("x * * * *"),
            "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"
        );
        assert_eq!(
            msg("60 * * * *"),
            "end of range (60) above maximum (59): 60"
        );
        assert_eq!(
            msg("* * 0 * *"),
            "beginning of range (0) below minimum (1): 0"
        );
        assert_eq!(
            msg("* 5-2 * * *"),
            "beginning of range (5) beyond end of range (2): 5-2"
        );
        assert_eq!(
            msg("*/0 * * * *"),
            "step of range should be a positive number: */0"
        );
        assert_eq!(msg("1-2-3 * * * *"), "too many hyphens: 1-2-3");
        assert_eq!(msg("1/2/3 * * * *"), "too many slashes: 1/2/3");
        assert_eq!(msg("* * * * 7"), "end of range (7) above maximum (6): 7");
        assert_eq!(msg("@fortnightly"), "unrecognized descriptor: @fortnightly");
        assert_eq!(
            msg("@every soon"),
            "failed to parse duration @every soon: time: invalid duration \"soon\""
        );
    }

    #[test]
    fn zone_prefix() {
        assert_eq!(
            split_zone("CRON_TZ=Europe/Paris 0 * * * *"),
            Ok((Some("Europe/Paris"), "0 * * * *"))
        );
        assert_eq!(split_zone(" 0 * * * * "), Ok((None, "0 * * * *")));
        assert!(split_zone("TZ=UTC").is_err());
    }
}
