//! Resource quantities (`100m`, `1.5Gi`, `1e3`), exact.
//!
//! Kubernetes stores quantities as arbitrary-precision decimals rounded up to a nano-unit.
//! skiff keeps the same exactness with an `i128` count of nano-units: that holds every value
//! up to about 1.7·10²⁹ units (far past `E`, 10¹⁸), so sums of requests across a cluster
//! never lose precision, and comparisons are plain integer comparisons.
//!
//! Parsing follows Kubernetes' grammar:
//!
//! ```text
//! quantity ::= sign? number suffix
//! number   ::= digits | digits '.' digits? | '.' digits
//! suffix   ::= binary (Ki Mi Gi Ti Pi Ei) | decimal (n u m "" k M G T P E) | [eE] sign? digits
//! ```
//!
//! Fractions finer than one nano-unit are rounded up in magnitude (`0.1n` is `1n`, `-0.1n`
//! is `-1n`), as Kubernetes does: asking for some of a resource never becomes asking for none.
//!
//! Unlike Kubernetes, a [`Quantity`] does not remember the format it was written in; its
//! [`Display`](std::fmt::Display) form is canonical (see there).

use std::cmp::Ordering;
use std::fmt;
use std::ops::{Add, Neg, Sub};
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

/// The regular expression Kubernetes quotes when a quantity is malformed; kept verbatim so
/// users recognise the message.
const FORMAT_REGEX: &str = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$";

/// Nano-units per unit.
const NANO: i128 = 1_000_000_000;

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The input does not have the shape `<number><suffix>`.
    #[error(
        "invalid quantity {input:?}: quantities must match the regular expression '{FORMAT_REGEX}'"
    )]
    Format { input: String },
    /// The numeric part has more than one decimal point or no digits.
    #[error("invalid quantity {input:?}: unable to parse numeric part {number:?}")]
    Numeric { input: String, number: String },
    /// The suffix is not one Kubernetes knows.
    #[error("invalid quantity {input:?}: unable to parse quantity's suffix {suffix:?}")]
    Suffix { input: String, suffix: String },
    /// The value does not fit in skiff's range (about ±1.7e29 units).
    #[error("invalid quantity {input:?}: too large")]
    TooLarge { input: String },
}

impl QuantityError {
    /// Why the input was rejected, without repeating the input: for messages that name it
    /// already (a field error shows the value next to the reason).
    pub fn reason(&self) -> String {
        match self {
            QuantityError::Format { .. } => {
                format!("quantities must match the regular expression '{FORMAT_REGEX}'")
            }
            QuantityError::Numeric { number, .. } => {
                format!("unable to parse numeric part {number:?}")
            }
            QuantityError::Suffix { suffix, .. } => {
                format!("unable to parse quantity's suffix {suffix:?}")
            }
            QuantityError::TooLarge { .. } => "too large".to_string(),
        }
    }
}

/// An exact resource quantity, counted in nano-units (10⁻⁹ of the unit: cores, bytes, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Quantity {
    nanos: i128,
}

/// How a suffix scales the number in front of it: `2^binary · 10^decimal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scale {
    binary: u32,
    decimal: i64,
}

impl Quantity {
    /// The zero quantity.
    pub const fn zero() -> Quantity {
        Quantity { nanos: 0 }
    }

    /// A quantity of `nanos` nano-units.
    pub const fn from_nanos(nanos: i128) -> Quantity {
        Quantity { nanos }
    }

    /// A quantity of `milli` thousandths (`from_milli(250)` is `250m`, a quarter core).
    pub const fn from_milli(milli: i64) -> Quantity {
        Quantity {
            nanos: milli as i128 * 1_000_000,
        }
    }

    /// A quantity of whole units (`from_units(2)` is `2`, two cores or two bytes).
    pub const fn from_units(units: i64) -> Quantity {
        Quantity {
            nanos: units as i128 * NANO,
        }
    }

    /// Parses Kubernetes' quantity syntax; see the module documentation for the grammar.
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        let format_err = || QuantityError::Format {
            input: s.to_string(),
        };
        // Split off the sign, then the number (digits and dots), then the suffix.
        let (negative, rest) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let number_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        let (number, suffix) = rest.split_at(number_len);
        if number.is_empty() {
            return Err(format_err());
        }
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        if frac_part.contains('.') || (int_part.is_empty() && frac_part.is_empty()) {
            return Err(QuantityError::Numeric {
                input: s.to_string(),
                number: number.to_string(),
            });
        }
        let scale = parse_suffix(suffix).ok_or_else(|| {
            // Distinguish "not even the right characters" from "right characters, wrong suffix",
            // the way Kubernetes' two messages do.
            let shaped = suffix
                .bytes()
                .all(|b| b"eEinumkKMGTP+-".contains(&b) || b.is_ascii_digit());
            if shaped {
                QuantityError::Suffix {
                    input: s.to_string(),
                    suffix: suffix.to_string(),
                }
            } else {
                format_err()
            }
        })?;
        let too_large = || QuantityError::TooLarge {
            input: s.to_string(),
        };
        let magnitude = scaled_magnitude(int_part, frac_part, scale).ok_or_else(too_large)?;
        let nanos = if negative { -magnitude } else { magnitude };
        Ok(Quantity { nanos })
    }

    /// Parses a k8s-openapi quantity (which is only a string).
    pub fn from_k8s(q: &K8sQuantity) -> Result<Quantity, QuantityError> {
        Quantity::parse(&q.0)
    }

    /// The k8s-openapi form, holding this quantity's canonical string.
    pub fn to_k8s(&self) -> K8sQuantity {
        K8sQuantity(self.to_string())
    }

    /// The exact value in nano-units.
    pub const fn nanos(&self) -> i128 {
        self.nanos
    }

    /// The value in thousandths, rounded away from zero as Kubernetes' `MilliValue()` does
    /// (`1n` is 1 milli, so a non-zero request never reads as zero).
    pub fn milli_value(&self) -> i128 {
        div_away_from_zero(self.nanos, 1_000_000)
    }

    /// The value in whole units, rounded away from zero as Kubernetes' `Value()` does
    /// (`100m` CPU is 1, `1.5` is 2, `-1.5` is -2).
    pub fn value(&self) -> i128 {
        div_away_from_zero(self.nanos, NANO)
    }

    /// Whether this is zero.
    pub const fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Whether this is below zero.
    pub const fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// The sum, or `None` when it leaves the representable range.
    pub fn checked_add(self, other: Quantity) -> Option<Quantity> {
        self.nanos
            .checked_add(other.nanos)
            .map(Quantity::from_nanos)
    }

    /// The difference, or `None` when it leaves the representable range.
    pub fn checked_sub(self, other: Quantity) -> Option<Quantity> {
        self.nanos
            .checked_sub(other.nanos)
            .map(Quantity::from_nanos)
    }

    /// The product with an integer (a per-pod amount times replicas), or `None` on overflow.
    pub fn checked_mul(self, factor: i64) -> Option<Quantity> {
        self.nanos
            .checked_mul(i128::from(factor))
            .map(Quantity::from_nanos)
    }
}

/// Saturating addition: sums of real resources are nowhere near the `i128` range, so
/// clamping is preferable to a panic in accounting code. Use
/// [`Quantity::checked_add`] to detect overflow instead.
impl Add for Quantity {
    type Output = Quantity;
    fn add(self, other: Quantity) -> Quantity {
        Quantity::from_nanos(self.nanos.saturating_add(other.nanos))
    }
}

/// Saturating subtraction; see [`Add`](#impl-Add-for-Quantity).
impl Sub for Quantity {
    type Output = Quantity;
    fn sub(self, other: Quantity) -> Quantity {
        Quantity::from_nanos(self.nanos.saturating_sub(other.nanos))
    }
}

/// Saturating negation.
impl Neg for Quantity {
    type Output = Quantity;
    fn neg(self) -> Quantity {
        Quantity::from_nanos(self.nanos.saturating_neg())
    }
}

impl std::iter::Sum for Quantity {
    fn sum<I: Iterator<Item = Quantity>>(iter: I) -> Quantity {
        iter.fold(Quantity::zero(), |a, b| a + b)
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Quantity, QuantityError> {
        Quantity::parse(s)
    }
}

impl TryFrom<&K8sQuantity> for Quantity {
    type Error = QuantityError;
    fn try_from(q: &K8sQuantity) -> Result<Quantity, QuantityError> {
        Quantity::from_k8s(q)
    }
}

impl From<Quantity> for K8sQuantity {
    fn from(q: Quantity) -> K8sQuantity {
        q.to_k8s()
    }
}

/// Decimal SI suffixes from the largest down, as powers of ten of a nano-unit.
const DECIMAL_SUFFIXES: [(&str, u32); 10] = [
    ("E", 27),
    ("P", 24),
    ("T", 21),
    ("G", 18),
    ("M", 15),
    ("k", 12),
    ("", 9),
    ("m", 6),
    ("u", 3),
    ("n", 0),
];

/// Binary suffixes from the largest down, as powers of 1024 of a unit.
const BINARY_SUFFIXES: [(&str, u32); 6] = [
    ("Ei", 6),
    ("Pi", 5),
    ("Ti", 4),
    ("Gi", 3),
    ("Mi", 2),
    ("Ki", 1),
];

/// The canonical form: a whole number followed by one suffix, never a fraction.
///
/// A whole number of units that is a multiple of 1024 (at least `1Ki`) is written with the
/// largest binary suffix that divides it exactly (`1Gi`, `1536Mi`, `1000Ki`), unless the
/// largest exact decimal SI suffix gives a smaller number (`1T` and `1E` are multiples of
/// 1024 too, but stay `1T` and `1E`); anything else uses that decimal suffix (`100m`, `1`,
/// `1k`, `1500m`, `5n`).
/// Kubernetes instead remembers whether the input was binary or decimal; skiff keeps one
/// rule so equal quantities always print alike. The output always parses back to the same
/// value.
impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let sign = if self.nanos < 0 { "-" } else { "" };
        let magnitude = self.nanos.unsigned_abs();
        let nano = NANO.unsigned_abs();
        let binary = divides(nano, magnitude)
            .then(|| {
                let units = magnitude / nano;
                BINARY_SUFFIXES.iter().find_map(|(suffix, power)| {
                    let unit = 1u128 << (10 * power);
                    divides(unit, units).then(|| (units / unit, *suffix))
                })
            })
            .flatten();
        // `n` divides everything, so there always is a decimal form.
        let decimal = DECIMAL_SUFFIXES.iter().find_map(|(suffix, power)| {
            let unit = 10u128.pow(*power);
            divides(unit, magnitude).then(|| (magnitude / unit, *suffix))
        });
        match (binary, decimal) {
            (Some((b, bs)), Some((d, _))) if b <= d => write!(f, "{sign}{b}{bs}"),
            (_, Some((d, ds))) => write!(f, "{sign}{d}{ds}"),
            (Some((b, bs)), None) => write!(f, "{sign}{b}{bs}"),
            (None, None) => write!(f, "{sign}{magnitude}n"),
        }
    }
}

impl serde::Serialize for Quantity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Quantity, D::Error> {
        let s = String::deserialize(deserializer)?;
        Quantity::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Interprets a suffix; `None` when it is not one Kubernetes accepts.
fn parse_suffix(suffix: &str) -> Option<Scale> {
    let decimal = |decimal| Some(Scale { binary: 0, decimal });
    let binary = |binary| Some(Scale { binary, decimal: 0 });
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Absurd exponents are clamped; they end as "too large" or as the smallest
            // non-zero value, exactly like the unclamped value would.
            let value = match exponent.parse::<i64>() {
                Ok(v) => v.clamp(-1_000_000, 1_000_000),
                Err(_) if exponent.starts_with('-') => -1_000_000,
                Err(_) => 1_000_000,
            };
            decimal(value)
        }
    }
}

/// The magnitude in nano-units of `int.frac · 2^binary · 10^decimal`, rounded up; `None`
/// when it does not fit.
///
/// Works on decimal digits so that any number of input digits is exact: the mantissa is
/// multiplied by the binary factor digit by digit, then the decimal point is placed, and
/// any non-zero digit after it rounds up.
fn scaled_magnitude(int: &str, frac: &str, scale: Scale) -> Option<i128> {
    // Significant digits (mantissa) and the power of ten they are scaled by.
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
    let first_nonzero = digits.iter().position(|d| *d != 0);
    let Some(first_nonzero) = first_nonzero else {
        return Some(0);
    };
    digits.drain(..first_nonzero);
    let mut exponent: i64 = scale.decimal + 9 - frac.len() as i64;
    while digits.last() == Some(&0) {
        digits.pop();
        exponent += 1;
    }
    // Multiply by 2^binary, ten bits at a time.
    for _ in 0..scale.binary / 10 {
        let mut carry = 0u32;
        for d in digits.iter_mut().rev() {
            let v = u32::from(*d) * 1024 + carry;
            *d = (v % 10) as u8;
            carry = v / 10;
        }
        while carry > 0 {
            digits.insert(0, (carry % 10) as u8);
            carry /= 10;
        }
    }
    // i128::MAX has 39 digits; anything longer is too large.
    let (whole, round_up) = if exponent >= 0 {
        if digits.len() as i64 + exponent > 39 {
            return None;
        }
        let zeros = usize::try_from(exponent).ok()?;
        digits.extend(std::iter::repeat_n(0, zeros));
        (&digits[..], false)
    } else {
        let drop = usize::try_from(-exponent).ok()?;
        if drop >= digits.len() {
            // Entirely below one nano-unit, and non-zero: round up to 1n.
            return Some(1);
        }
        let keep = digits.len() - drop;
        // Trailing zeros were stripped, so the dropped digits are non-zero.
        (&digits[..keep], true)
    };
    let mut value: i128 = 0;
    for d in whole {
        value = value.checked_mul(10)?.checked_add(i128::from(*d))?;
    }
    if round_up {
        value = value.checked_add(1)?;
    }
    Some(value)
}

/// Whether `unit` divides `value` (spelled without `is_multiple_of`, which is newer than
/// the workspace's minimum Rust).
fn divides(unit: u128, value: u128) -> bool {
    value.checked_rem(unit) == Some(0)
}

/// Integer division rounding away from zero.
fn div_away_from_zero(value: i128, divisor: i128) -> i128 {
    let quotient = value / divisor;
    match (value % divisor).cmp(&0) {
        Ordering::Greater => quotient + 1,
        Ordering::Less => quotient - 1,
        Ordering::Equal => quotient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        match Quantity::parse(s) {
            Ok(q) => q,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn parses_decimal_suffixes() {
        assert_eq!(q("1").nanos(), NANO);
        assert_eq!(q("100m").nanos(), 100_000_000);
        assert_eq!(q("5n").nanos(), 5);
        assert_eq!(q("7u").nanos(), 7_000);
        assert_eq!(q("1k"), Quantity::from_units(1000));
        assert_eq!(q("2M"), Quantity::from_units(2_000_000));
        assert_eq!(q("3G"), Quantity::from_units(3_000_000_000));
        assert_eq!(q("1T"), Quantity::from_units(1_000_000_000_000));
        assert_eq!(q("1P"), Quantity::from_units(1_000_000_000_000_000));
        assert_eq!(q("1E"), Quantity::from_units(1_000_000_000_000_000_000));
    }

    #[test]
    fn parses_binary_suffixes() {
        assert_eq!(q("1Ki"), Quantity::from_units(1024));
        assert_eq!(q("1Gi"), q("1024Mi"));
        assert_eq!(q("1.5Gi"), Quantity::from_units(1536 * 1024 * 1024));
        assert_eq!(q("1Ei"), Quantity::from_units(1 << 60));
        assert_eq!(q("128Mi"), Quantity::from_units(128 << 20));
    }

    #[test]
    fn parses_exponents() {
        assert_eq!(q("1e3"), q("1k"));
        assert_eq!(q("1E3"), q("1k"));
        assert_eq!(q("1e+3"), q("1k"));
        assert_eq!(q("5E-2"), q("50m"));
        assert_eq!(q("12e0"), q("12"));
    }

    #[test]
    fn parses_fractions_and_signs() {
        assert_eq!(q("0.5"), q("500m"));
        assert_eq!(q(".5"), q("500m"));
        assert_eq!(q("1."), q("1"));
        assert_eq!(q("+1"), q("1"));
        assert_eq!(q("-1").nanos(), -NANO);
        assert!(q("-1").is_negative());
        assert_eq!(q("0"), Quantity::zero());
        assert_eq!(q("-0"), Quantity::zero());
        assert_eq!(q("000123"), q("123"));
        assert_eq!(q("0e999999999999999999999"), Quantity::zero());
    }

    #[test]
    fn rounds_sub_nano_fractions_up_in_magnitude() {
        assert_eq!(q("0.1n").nanos(), 1);
        assert_eq!(q("1.0000000001").nanos(), NANO + 1);
        assert_eq!(q("-0.1n").nanos(), -1);
        assert_eq!(q("1e-30").nanos(), 1);
        assert_eq!(q("1e-99999999999999999999").nanos(), 1);
        // 1e-12 Ei = 1152921.504606846976, rounded up at the ninth decimal.
        assert_eq!(q("0.000000000001Ei").nanos(), 1_152_921_504_606_847);
        // Many digits stay exact.
        assert_eq!(
            q("0.1234567890123456789012345678901234567890123").nanos(),
            123_456_790
        );
    }

    #[test]
    fn orders_and_compares() {
        assert!(q("100m") < q("1"));
        assert!(q("1Gi") > q("1G"));
        assert!(q("-1") < q("0"));
        assert_eq!(q("1000m"), q("1"));
        assert_eq!(q("1Mi").cmp(&q("1024Ki")), Ordering::Equal);
    }

    #[test]
    fn rejects_malformed_input() {
        for bad in [
            "", "Mi", "1.2.3", "1Mx", "1iM", "abc", "1 ", " 1", "1Kii", "--1", "+", "-", ".", "1e",
            "1e+", "1e3.5", "1K", "1mi", "1 Mi", "0x10", "1,5", "∞",
        ] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn error_messages_name_input_and_reason() {
        let err = Quantity::parse("Mi").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid quantity \"Mi\": quantities must match the regular expression \
             '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
        assert!(matches!(
            Quantity::parse("1.2.3"),
            Err(QuantityError::Numeric { .. })
        ));
        assert!(matches!(
            Quantity::parse("1iM"),
            Err(QuantityError::Suffix { .. })
        ));
        assert!(matches!(
            Quantity::parse("1Mx"),
            Err(QuantityError::Format { .. })
        ));
        assert!(matches!(
            Quantity::parse(""),
            Err(QuantityError::Format { .. })
        ));
        let err = Quantity::parse("1e100").unwrap_err();
        assert_eq!(
            err,
            QuantityError::TooLarge {
                input: "1e100".into()
            }
        );
        assert_eq!(err.to_string(), "invalid quantity \"1e100\": too large");
        assert!(matches!(
            Quantity::parse("1e99999999999999999999"),
            Err(QuantityError::TooLarge { .. })
        ));
        assert!(matches!(
            Quantity::parse(&"9".repeat(60)),
            Err(QuantityError::TooLarge { .. })
        ));
    }

    #[test]
    fn accepts_the_largest_values() {
        // 1.7e29 units is the ceiling; 100000000E (1e26) is far below it.
        assert_eq!(q("100000000E"), Quantity::from_nanos(10i128.pow(35)));
        assert!(Quantity::parse("1000000000000P").is_ok());
        assert!(Quantity::parse("1000000000000000E").is_err());
    }

    #[test]
    fn values_round_away_from_zero() {
        assert_eq!(q("100m").value(), 1);
        assert_eq!(q("1").value(), 1);
        assert_eq!(q("1.5").value(), 2);
        assert_eq!(q("-1.5").value(), -2);
        assert_eq!(q("1Gi").value(), 1 << 30);
        assert_eq!(q("1n").milli_value(), 1);
        assert_eq!(q("1.5").milli_value(), 1500);
        assert_eq!(q("-1n").milli_value(), -1);
        assert_eq!(q("0").value(), 0);
    }

    #[test]
    fn displays_canonically() {
        for (input, shown) in [
            ("0", "0"),
            ("100m", "100m"),
            ("1", "1"),
            ("1000m", "1"),
            ("0.5", "500m"),
            ("1.5", "1500m"),
            ("1e3", "1k"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("1Gi", "1Gi"),
            ("1024Mi", "1Gi"),
            ("1.5Gi", "1536Mi"),
            ("128Mi", "128Mi"),
            ("2048", "2Ki"),
            ("1024000", "1000Ki"),
            ("1M", "1M"),
            ("500M", "500M"),
            ("-1", "-1"),
            ("-1.5Gi", "-1536Mi"),
            ("5n", "5n"),
            ("1.000000001", "1000000001n"),
            ("12u", "12u"),
            ("1Ei", "1Ei"),
            ("1E", "1E"),
            ("1T", "1T"),
            ("4096000", "4000Ki"),
            ("1Ti", "1Ti"),
        ] {
            assert_eq!(q(input).to_string(), shown, "display of {input}");
            assert_eq!(q(shown), q(input), "{shown} re-parses to {input}");
        }
    }

    #[test]
    fn arithmetic() {
        assert_eq!(q("100m").checked_add(q("900m")), Some(q("1")));
        assert_eq!(q("1").checked_sub(q("1.5")), Some(q("-500m")));
        assert_eq!(q("1Mi").checked_mul(3), Some(q("3Mi")));
        assert_eq!(q("100m") + q("200m"), q("300m"));
        assert_eq!(q("1") - q("250m"), q("750m"));
        assert_eq!(-q("1"), q("-1"));
        let max = Quantity::from_nanos(i128::MAX);
        assert_eq!(max.checked_add(q("1n")), None);
        assert_eq!(max + q("1"), max);
        assert_eq!(
            Quantity::from_nanos(i128::MIN) - q("1"),
            Quantity::from_nanos(i128::MIN)
        );
        let total: Quantity = ["100m", "200m", "1"].iter().map(|s| q(s)).sum();
        assert_eq!(total, q("1300m"));
        assert_eq!(Quantity::from_milli(250), q("250m"));
        assert_eq!(Quantity::from_units(-3), q("-3"));
    }

    #[test]
    fn converts_to_and_from_k8s() {
        let k = K8sQuantity("1.5Gi".into());
        assert_eq!(Quantity::from_k8s(&k), Ok(q("1536Mi")));
        assert_eq!(q("0.5").to_k8s(), K8sQuantity("500m".into()));
        assert!(Quantity::from_k8s(&K8sQuantity("lots".into())).is_err());
    }

    #[test]
    fn serde_round_trip() {
        let json = serde_json::to_string(&q("1.5Gi")).unwrap_or_default();
        assert_eq!(json, "\"1536Mi\"");
        let back: Result<Quantity, _> = serde_json::from_str(&json);
        assert_eq!(back.ok(), Some(q("1.5Gi")));
        let bad: Result<Quantity, _> = serde_json::from_str("\"1Mx\"");
        assert!(bad.is_err());
    }
}
