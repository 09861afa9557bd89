//! Prices and cost arithmetic.
//!
//! # Why integers, and why these units
//!
//! Prices are configured in USD per 1M tokens (how every provider publishes
//! them) and held as an integer number of **micro-dollars per 1M tokens**.
//! One micro-dollar per million tokens is exactly one **pico-dollar per
//! token**, so the cost of `n` tokens is `n * price` pico-dollars: one integer
//! multiplication, no division, no rounding anywhere. Sums over millions of
//! rows are exact and do not depend on the order rows are added in (f64 sums
//! do: two replicas adding the same rows in different orders could print
//! different savings), and tests can expect exact numbers.
//!
//! The resolution, 1 micro-dollar per 1M tokens, is far below any published
//! price (the cheapest are tens of thousands of micro-dollars per 1M), so
//! configured prices are represented exactly when they have at most six
//! decimals; a price with more is rejected rather than silently rounded.
//!
//! Arithmetic is done in `i128` (a `u32` token count times the largest
//! accepted price, 10^12 micro-dollars per 1M, is about 4.3e21, beyond `i64`);
//! a single row is stored as a 64-bit pico-dollar count, which caps one
//! request at about 9.2 million USD ([`LedgerError::CostOverflow`] past it).
//!
//! # What is deliberately absent
//! No currency other than USD, no cached-input or batch discounts, no
//! separate local prices for prompt and generated tokens (local cost is one
//! rate over both; it stands for electricity and is usually left at 0).

use std::collections::BTreeMap;
use std::fmt;

use hearth_api::{Route, Usage};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::LedgerError;
use crate::record::ModelName;

/// An amount of money in pico-dollars (1e-12 USD). Exact; see the module
/// docs for why. Row costs fit `i64`; sums use the full `i128`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PicoUsd(pub i128);

impl PicoUsd {
    pub const ZERO: PicoUsd = PicoUsd(0);
    const PER_USD: i128 = 1_000_000_000_000;

    pub fn pico(self) -> i128 {
        self.0
    }

    /// Approximate value in dollars, for display and JSON only.
    pub fn usd_f64(self) -> f64 {
        // Split before converting so that large sums keep their cents.
        let whole = self.0 / Self::PER_USD;
        let frac = self.0 % Self::PER_USD;
        whole as f64 + frac as f64 / Self::PER_USD as f64
    }

    pub(crate) fn to_i64(self) -> Result<i64, LedgerError> {
        i64::try_from(self.0).map_err(|_| LedgerError::CostOverflow)
    }

    pub fn checked_add(self, other: PicoUsd) -> Option<PicoUsd> {
        self.0.checked_add(other.0).map(PicoUsd)
    }
}

/// `$1.234567` — dollars to the micro-dollar, truncated toward zero. Exact
/// digits, not via f64.
impl fmt::Display for PicoUsd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let per = Self::PER_USD as u128;
        let micros = (abs % per) / 1_000_000;
        write!(f, "{sign}${}.{micros:06}", abs / per)
    }
}

/// A price in USD per 1M tokens, held as integer micro-dollars per 1M tokens
/// (= pico-dollars per token).
///
/// In configuration it is written as a number (`0.15`) or a decimal string
/// (`"0.15"`, parsed exactly); negative, non-finite, above 1,000,000 USD, or
/// with more than six decimals is an error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UsdPerMTok {
    micro_usd: u64,
}

impl UsdPerMTok {
    /// The largest accepted price: 1,000,000 USD per 1M tokens.
    pub const MAX_MICRO_USD: u64 = 1_000_000 * 1_000_000;

    pub const ZERO: UsdPerMTok = UsdPerMTok { micro_usd: 0 };

    pub fn from_micro_usd(micro_usd: u64) -> Result<UsdPerMTok, LedgerError> {
        if micro_usd > Self::MAX_MICRO_USD {
            return Err(LedgerError::invalid("price", "above 1,000,000 USD per 1M tokens"));
        }
        Ok(UsdPerMTok { micro_usd })
    }

    /// From a float as a config parser hands it over. Accepts the float
    /// nearest to a number with at most six decimals (`0.15` is really
    /// 0.1499999999999999944…; its distance to 150000 µ$ is 6e-12 µ$).
    pub fn from_usd(usd: f64) -> Result<UsdPerMTok, LedgerError> {
        if !usd.is_finite() {
            return Err(LedgerError::invalid("price", "not a finite number"));
        }
        if usd < 0.0 {
            return Err(LedgerError::invalid("price", "negative"));
        }
        let micros = usd * 1e6;
        if micros > Self::MAX_MICRO_USD as f64 {
            return Err(LedgerError::invalid("price", "above 1,000,000 USD per 1M tokens"));
        }
        let rounded = micros.round();
        // A 6-decimal price times 1e6 lands within a few ulps (relative
        // ~4e-16) of a whole number; the tolerance is thousands of ulps but
        // always below 0.01 µ$, so a 7th decimal (≥ 0.1 µ$ off) is caught.
        let tolerance = (rounded * 1e-12).clamp(1e-9, 1e-2);
        if (micros - rounded).abs() > tolerance {
            return Err(LedgerError::invalid("price", "more than six decimals (finer than 1 micro-dollar per 1M tokens)"));
        }
        Self::from_micro_usd(rounded as u64)
    }

    /// Exact decimal parse: `"2.5"`, `"0.000150"`, `"10"`.
    pub fn parse(s: &str) -> Result<UsdPerMTok, LedgerError> {
        let s = s.trim();
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, f),
            None => (s, ""),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(LedgerError::invalid("price", "empty"));
        }
        if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LedgerError::invalid("price", "expected a non-negative decimal number such as 0.15"));
        }
        if frac.len() > 6 {
            return Err(LedgerError::invalid("price", "more than six decimals (finer than 1 micro-dollar per 1M tokens)"));
        }
        let int = int.trim_start_matches('0');
        if int.len() > 7 {
            return Err(LedgerError::invalid("price", "above 1,000,000 USD per 1M tokens"));
        }
        let whole: u64 = if int.is_empty() { 0 } else { int.parse().map_err(|_| LedgerError::invalid("price", "bad integer part"))? };
        let mut micro_frac: u64 = 0;
        for (i, b) in frac.bytes().enumerate() {
            micro_frac += u64::from(b - b'0') * 10u64.pow(5 - i as u32);
        }
        Self::from_micro_usd(whole * 1_000_000 + micro_frac)
    }

    pub fn micro_usd(self) -> u64 {
        self.micro_usd
    }

    /// Cost of `tokens` tokens at this price: exactly `tokens * micro_usd`
    /// pico-dollars.
    pub fn cost(self, tokens: u64) -> PicoUsd {
        PicoUsd(i128::from(tokens) * i128::from(self.micro_usd))
    }
}

impl fmt::Display for UsdPerMTok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}", self.micro_usd / 1_000_000, self.micro_usd % 1_000_000)
    }
}

impl Serialize for UsdPerMTok {
    /// As a number in USD: the shortest float that reads back to the same
    /// micro-dollar count.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.micro_usd as f64 / 1e6)
    }
}

impl<'de> Deserialize<'de> for UsdPerMTok {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            U(u64),
            F(f64),
            S(String),
        }
        let r = match Repr::deserialize(d)? {
            Repr::U(u) => u.checked_mul(1_000_000).ok_or(LedgerError::invalid("price", "too large")).and_then(UsdPerMTok::from_micro_usd),
            Repr::F(f) => UsdPerMTok::from_usd(f),
            Repr::S(s) => UsdPerMTok::parse(&s),
        };
        r.map_err(serde::de::Error::custom)
    }
}

/// What one cloud model costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudPrice {
    /// USD per 1M prompt tokens.
    pub input_per_mtok: UsdPerMTok,
    /// USD per 1M completion tokens.
    pub output_per_mtok: UsdPerMTok,
}

impl CloudPrice {
    pub fn cost(&self, usage: Usage) -> PicoUsd {
        PicoUsd(
            self.input_per_mtok.cost(u64::from(usage.prompt_tokens)).0
                + self.output_per_mtok.cost(u64::from(usage.completion_tokens)).0,
        )
    }
}

/// The ledger's price list (`[ledger.prices]` in Hearth's config):
///
/// ```toml
/// local_per_mtok = 0.0            # optional: electricity, per 1M tokens in+out
/// all_cloud_model = "gpt-4o-mini" # optional when exactly one cloud model is listed
/// [cloud."gpt-4o-mini"]
/// input_per_mtok = 0.15
/// output_per_mtok = 0.60
/// ```
///
/// Cloud models are looked up by the exact name recorded in
/// [`crate::LedgerRecord::model`] (the upstream model name).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    #[serde(default)]
    pub cloud: BTreeMap<String, CloudPrice>,
    /// Cost of local inference per 1M tokens (prompt + completion); 0 unless
    /// the user wants to count electricity.
    #[serde(default)]
    pub local_per_mtok: UsdPerMTok,
    /// The cloud model the all-cloud counterfactual is priced at: what every
    /// request would have cost had the router sent everything to the cloud.
    /// When absent and `cloud` lists exactly one model, that one is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_cloud_model: Option<String>,
}

impl Prices {
    /// The model the counterfactual is priced at, if any.
    pub fn counterfactual_model(&self) -> Option<&str> {
        match &self.all_cloud_model {
            Some(m) => Some(m.as_str()),
            None if self.cloud.len() == 1 => self.cloud.keys().next().map(String::as_str),
            None => None,
        }
    }

    /// What one attempt cost: local tokens at the local rate, cloud tokens at
    /// the model's price. `None` for a cloud model without a price.
    pub fn attempt_cost(&self, route: Route, model: &ModelName, usage: Usage) -> Option<PicoUsd> {
        match route {
            Route::Local => Some(self.local_per_mtok.cost(u64::from(usage.prompt_tokens) + u64::from(usage.completion_tokens))),
            Route::Cloud => self.cloud.get(model.as_str()).map(|p| p.cost(usage)),
        }
    }

    /// What these tokens would have cost on the counterfactual cloud model.
    /// `None` when there is no such model or it has no price.
    ///
    /// Token counts come from whichever tokenizer answered; a local model's
    /// tokenizer differs from the cloud model's, so for local rows this is an
    /// estimate (documented in the report).
    pub fn all_cloud_cost(&self, usage: Usage) -> Option<PicoUsd> {
        let m = self.counterfactual_model()?;
        self.cloud.get(m).map(|p| p.cost(usage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> u64 {
        UsdPerMTok::parse(s).unwrap().micro_usd()
    }

    #[test]
    fn parse_exact_decimals() {
        assert_eq!(p("0.15"), 150_000);
        assert_eq!(p("2.5"), 2_500_000);
        assert_eq!(p("10"), 10_000_000);
        assert_eq!(p(".5"), 500_000);
        assert_eq!(p("0.000001"), 1);
        assert_eq!(p("000075.000000"), 75_000_000);
        assert_eq!(p("1000000"), UsdPerMTok::MAX_MICRO_USD);
        for bad in ["", ".", "-1", "1e3", "0.0000001", "1,5", "1000000.000001", "99999999", "abc", "1.2.3"] {
            assert!(UsdPerMTok::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn float_prices_round_to_the_micro_dollar_or_are_rejected() {
        assert_eq!(UsdPerMTok::from_usd(0.15).unwrap().micro_usd(), 150_000);
        assert_eq!(UsdPerMTok::from_usd(0.075).unwrap().micro_usd(), 75_000);
        assert_eq!(UsdPerMTok::from_usd(0.1 + 0.2).unwrap().micro_usd(), 300_000);
        assert_eq!(UsdPerMTok::from_usd(999_999.999_999).unwrap().micro_usd(), 999_999_999_999);
        assert!(UsdPerMTok::from_usd(0.000_000_5).is_err());
        assert!(UsdPerMTok::from_usd(1.000_000_1).is_err());
        assert!(UsdPerMTok::from_usd(999_999.999_999_9).is_err());
        assert!(UsdPerMTok::from_usd(-0.1).is_err());
        assert!(UsdPerMTok::from_usd(f64::NAN).is_err());
        assert!(UsdPerMTok::from_usd(f64::INFINITY).is_err());
        assert!(UsdPerMTok::from_usd(1e6 + 1.0).is_err());
    }

    #[test]
    fn serde_accepts_numbers_and_strings_and_round_trips() {
        let prices: Prices = serde_json::from_str(
            r#"{"local_per_mtok": "0.02", "cloud": {"gpt-x": {"input_per_mtok": 2.5, "output_per_mtok": 10}}}"#,
        )
        .unwrap();
        assert_eq!(prices.local_per_mtok.micro_usd(), 20_000);
        let gx = prices.cloud["gpt-x"];
        assert_eq!((gx.input_per_mtok.micro_usd(), gx.output_per_mtok.micro_usd()), (2_500_000, 10_000_000));
        assert_eq!(prices.counterfactual_model(), Some("gpt-x"));
        let back: Prices = serde_json::from_str(&serde_json::to_string(&prices).unwrap()).unwrap();
        assert_eq!(back, prices);
        assert!(serde_json::from_str::<Prices>(r#"{"cloud": {"m": {"input_per_mtok": -1, "output_per_mtok": 1}}}"#).is_err());
        assert!(serde_json::from_str::<Prices>(r#"{"local_per_mtk": 1}"#).is_err(), "typo must not pass silently");
        assert_eq!(serde_json::from_str::<Prices>("{}").unwrap().local_per_mtok, UsdPerMTok::ZERO);
    }

    #[test]
    fn costs_are_exact_integers() {
        let mut prices = Prices::default();
        prices.cloud.insert(
            "gpt-x".into(),
            CloudPrice { input_per_mtok: UsdPerMTok::parse("2.5").unwrap(), output_per_mtok: UsdPerMTok::parse("10").unwrap() },
        );
        prices.local_per_mtok = UsdPerMTok::parse("0.02").unwrap();
        let gx = ModelName::new("gpt-x").unwrap();
        let u = Usage { prompt_tokens: 1000, completion_tokens: 200 };
        // 1000 * 2.5e6 + 200 * 1e7 = 4.5e9 pico = $0.0045
        assert_eq!(prices.attempt_cost(Route::Cloud, &gx, u), Some(PicoUsd(4_500_000_000)));
        // 1200 * 20_000 = 24e6 pico
        assert_eq!(prices.attempt_cost(Route::Local, &gx, u), Some(PicoUsd(24_000_000)));
        assert_eq!(prices.attempt_cost(Route::Cloud, &ModelName::new("other").unwrap(), u), None);
        assert_eq!(prices.all_cloud_cost(u), Some(PicoUsd(4_500_000_000)));
        // One token at $0.15/M is 0.15 µ$ = 150_000 pico: nothing lost.
        assert_eq!(UsdPerMTok::parse("0.15").unwrap().cost(1), PicoUsd(150_000));
        // Largest inputs do not overflow the i128 arithmetic.
        let max = UsdPerMTok::from_micro_usd(UsdPerMTok::MAX_MICRO_USD).unwrap();
        assert_eq!(max.cost(u64::from(u32::MAX)).0, 4_294_967_295i128 * 1_000_000_000_000);
        assert!(max.cost(u64::from(u32::MAX)).to_i64().is_err());
    }

    #[test]
    fn no_counterfactual_without_a_clear_model() {
        let mut prices = Prices::default();
        let cp = CloudPrice { input_per_mtok: UsdPerMTok::ZERO, output_per_mtok: UsdPerMTok::ZERO };
        prices.cloud.insert("a".into(), cp);
        prices.cloud.insert("b".into(), cp);
        assert_eq!(prices.counterfactual_model(), None);
        assert_eq!(prices.all_cloud_cost(Usage::default()), None);
        prices.all_cloud_model = Some("b".into());
        assert_eq!(prices.counterfactual_model(), Some("b"));
        prices.all_cloud_model = Some("unpriced".into());
        assert_eq!(prices.all_cloud_cost(Usage::default()), None);
    }

    #[test]
    fn display() {
        assert_eq!(PicoUsd(4_500_000_000).to_string(), "$0.004500");
        assert_eq!(PicoUsd(-1_234_567_000_000).to_string(), "-$1.234567");
        assert_eq!(PicoUsd(999_999).to_string(), "$0.000000");
        assert_eq!(UsdPerMTok::parse("0.15").unwrap().to_string(), "0.150000");
        assert!((PicoUsd(1_500_000_000_000).usd_f64() - 1.5).abs() < 1e-12);
    }
}
