//! Rate rules as written in configuration and catalogs (`600/minute`, `10/second`, `off`):
//! the [`RateRule`] value and its parser. Plain data; the buckets that enforce a rule live in
//! `policy::rate_limit`.

use std::fmt;

/// Slack for floating-point rounding when a rule is printed.
const EPSILON: f64 = 1e-9;

/// How many requests a key may make: up to `burst` at once, refilled continuously at
/// `per_second` tokens per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateRule {
    pub burst: u32,
    pub per_second: f64,
}

impl RateRule {
    /// `n` requests per minute, all of which may come at once.
    pub fn per_minute(n: u32) -> RateRule {
        RateRule {
            burst: n,
            per_second: f64::from(n) / 60.0,
        }
    }

    /// Human-readable form for messages and logs, such as "10 per minute".
    pub fn describe(&self) -> String {
        self.to_string()
    }

    /// The refill rate, with a negative, NaN or infinite rate read as "never refills" (an
    /// infinite rate would make every check pass, which is never what a limit means).
    pub fn rate(&self) -> f64 {
        if self.per_second.is_finite() && self.per_second > 0.0 {
            self.per_second
        } else {
            0.0
        }
    }

    /// Whole seconds until a bucket holding `tokens` (less than one) under this rule has one
    /// token again: at least 1, rounded up; `u64::MAX` when the rule never refills. Shared by
    /// the in-process buckets and the shared ones (PostgreSQL, Redis), so every limiter
    /// advertises the same `Retry-After`.
    pub fn retry_after_secs(&self, tokens: f64) -> u64 {
        let rate = self.rate();
        if self.burst == 0 || rate == 0.0 {
            return u64::MAX;
        }
        let wait = (1.0 - tokens) / rate;
        // Float-to-int `as` saturates, so an enormous wait becomes u64::MAX.
        (wait - EPSILON).ceil().max(1.0) as u64
    }
}

/// Parses a limit as written in configuration and catalogs: `N/second`, `N/minute`,
/// `N/hour` (also `N/s`, `N/min`, `N/h`), or `off`. `Ok(None)` means no limit.
pub fn parse_rule(text: &str) -> Result<Option<RateRule>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let expected = || format!("`{text}` is not a rate: write N/second, N/minute, N/hour or off");
    let (count, unit) = text.split_once('/').ok_or_else(expected)?;
    let count: u32 = count.trim().parse().map_err(|_| expected())?;
    if count == 0 {
        return Err(format!(
            "`{text}`: the count must be at least 1 (or write off)"
        ));
    }
    let seconds = match unit.trim().to_ascii_lowercase().as_str() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        _ => return Err(expected()),
    };
    Ok(Some(RateRule {
        burst: count,
        per_second: f64::from(count) / seconds,
    }))
}

impl fmt::Display for RateRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let burst = self.burst;
        let rate = self.rate();
        if rate == 0.0 {
            return write!(f, "{burst} in total, never refilled");
        }
        let burst_f = f64::from(burst);
        let same = |refill: f64| (refill - burst_f).abs() <= EPSILON * burst_f.max(1.0);
        if same(rate) {
            write!(f, "{burst} per second")
        } else if same(rate * 60.0) {
            write!(f, "{burst} per minute")
        } else if same(rate * 3600.0) {
            write!(f, "{burst} per hour")
        } else {
            write!(f, "bursts of {burst}, refilling {rate} per second")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_from_text() {
        let cases: &[(&str, Result<Option<RateRule>, ()>)] = &[
            ("off", Ok(None)),
            ("OFF", Ok(None)),
            ("120/minute", Ok(Some(RateRule::per_minute(120)))),
            ("120/min", Ok(Some(RateRule::per_minute(120)))),
            (
                "10/second",
                Ok(Some(RateRule {
                    burst: 10,
                    per_second: 10.0,
                })),
            ),
            (
                "3600/hour",
                Ok(Some(RateRule {
                    burst: 3600,
                    per_second: 1.0,
                })),
            ),
            (
                " 5 / s ",
                Ok(Some(RateRule {
                    burst: 5,
                    per_second: 5.0,
                })),
            ),
            ("0/minute", Err(())),
            ("ten/minute", Err(())),
            ("10/fortnight", Err(())),
            ("10", Err(())),
            ("", Err(())),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_rule(text).map_err(|_| ()), *expected, "{text:?}");
        }
        assert_eq!(
            parse_rule("120/minute").unwrap().unwrap().to_string(),
            "120 per minute"
        );
    }

    #[test]
    fn rules_describe_themselves() {
        let cases = [
            (RateRule::per_minute(10), "10 per minute"),
            (RateRule::per_minute(1), "1 per minute"),
            (
                RateRule {
                    burst: 5,
                    per_second: 5.0,
                },
                "5 per second",
            ),
            (
                RateRule {
                    burst: 20,
                    per_second: 20.0 / 3600.0,
                },
                "20 per hour",
            ),
            (
                RateRule {
                    burst: 20,
                    per_second: 0.5,
                },
                "bursts of 20, refilling 0.5 per second",
            ),
            (
                RateRule {
                    burst: 3,
                    per_second: 0.0,
                },
                "3 in total, never refilled",
            ),
        ];
        for (rule, expected) in cases {
            assert_eq!(rule.describe(), expected, "{rule:?}");
            assert_eq!(rule.to_string(), expected);
        }
    }
}
