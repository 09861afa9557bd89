//! The JSON number lexeme (RFC 8259 §6) with optional bounds.
//!
//! Digit counts are capped so every number a model can write parses with
//! `serde_json` (which rejects values beyond f64 range) and so a model cannot
//! loop forever on digits:
//! * unbounded `number`: ≤ 15 integer digits, ≤ 15 fraction digits, exponent
//!   of ≤ 2 digits;
//! * unbounded `integer`: ≤ 18 digits, no fraction or exponent;
//! * with `minimum`/`maximum`/`exclusive*`: no exponent; `integer` ≤ 18
//!   digits, `number` ≤ 13 integer and ≤ 6 fraction digits. Bounds are then
//!   enforced exactly on a scaled integer grid (value × 10⁶ for numbers):
//!   after every digit the set of values still reachable is an interval
//!   union that must meet `[lo, hi]`, so a number can always be finished.
//!
//! Deliberately absent: `multipleOf` (rejected by the schema compiler), and
//! fraction digits beyond the 6th when bounds are present.

/// Static description of one number lexeme.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NumKind {
    pub integer: bool,
    pub int_cap: u8,
    pub frac_cap: u8,
    pub exp_cap: u8,
    /// Inclusive bounds on the scaled value (value × 10^scale).
    pub bounds: Option<(i128, i128)>,
    pub scale: u8,
}

impl NumKind {
    pub fn free_number() -> NumKind {
        NumKind {
            integer: false,
            int_cap: 15,
            frac_cap: 15,
            exp_cap: 2,
            bounds: None,
            scale: 0,
        }
    }
    pub fn free_integer() -> NumKind {
        NumKind {
            integer: true,
            int_cap: 18,
            frac_cap: 0,
            exp_cap: 0,
            bounds: None,
            scale: 0,
        }
    }
    /// A bounded kind; `lo`/`hi` are already scaled (see [`scale_bound`]).
    pub fn bounded(integer: bool, lo: i128, hi: i128) -> NumKind {
        if integer {
            NumKind {
                integer,
                int_cap: 18,
                frac_cap: 0,
                exp_cap: 0,
                bounds: Some((lo, hi)),
                scale: 0,
            }
        } else {
            NumKind {
                integer,
                int_cap: 13,
                frac_cap: BOUNDED_SCALE,
                exp_cap: 0,
                bounds: Some((lo, hi)),
                scale: BOUNDED_SCALE,
            }
        }
    }
    /// Can any number of this kind be written at all?
    pub fn satisfiable(&self) -> bool {
        self.reachable_meets(&NumState::default())
    }

    fn pow10(e: u32) -> i128 {
        10i128.pow(e)
    }

    /// The set of scaled magnitudes reachable from `st`, as intervals, meets
    /// the bounds (taking the sign into account)?
    fn reachable_meets(&self, st: &NumState) -> bool {
        let Some((lo, hi)) = self.bounds else {
            return true;
        };
        let sc = Self::pow10(self.scale as u32);
        let frac_ok = !self.integer;
        let meets = |mlo: i128, mhi: i128, neg: Option<bool>| -> bool {
            // neg: None = either sign still possible.
            let pos = !matches!(neg, Some(true)) && mlo.max(lo) <= mhi.min(hi);
            let negv = !matches!(neg, Some(false)) && (-mhi).max(lo) <= (-mlo).min(hi);
            pos || negv
        };
        let int_top = |ni: u32| -> i128 { Self::pow10(self.int_cap as u32 - ni) };
        match st.stage {
            Stage::Start => meets(0, Self::pow10(self.int_cap as u32) * sc - 1, None),
            Stage::Minus => meets(0, Self::pow10(self.int_cap as u32) * sc - 1, Some(true)),
            Stage::Zero => {
                let top = if frac_ok { sc - 1 } else { 0 };
                meets(0, top, Some(st.neg))
            }
            Stage::Int => {
                let m = st.mag as i128;
                let ni = st.ni as u32;
                let _ = int_top;
                (0..=(self.int_cap as u32 - ni)).any(|j| {
                    let p = Self::pow10(j);
                    let a = m * p * sc;
                    let b = (m + 1) * p * sc - 1;
                    let b = if frac_ok { b } else { (m + 1) * p - 1 };
                    meets(a, b, Some(st.neg))
                })
            }
            Stage::Dot | Stage::Frac => {
                let nf = st.nf as u32;
                let step = Self::pow10(self.scale as u32 - nf);
                let a = st.mag as i128 * step;
                meets(a, a + step - 1, Some(st.neg))
            }
            // Exponents only exist without bounds.
            Stage::E | Stage::ESign | Stage::Exp => true,
        }
    }

    /// The exact scaled value of a finished number is within bounds?
    fn value_ok(&self, st: &NumState) -> bool {
        let Some((lo, hi)) = self.bounds else {
            return true;
        };
        let nf = st.nf as u32;
        let mag = st.mag as i128 * Self::pow10(self.scale as u32 - nf);
        let v = if st.neg { -mag } else { mag };
        lo <= v && v <= hi
    }

    /// Feeds one byte. `Step::End` means the number finished *before* this
    /// byte, which the caller hands to the enclosing frame.
    pub fn step(&self, st: &mut NumState, b: u8) -> NumStep {
        let digit = b.is_ascii_digit();
        // Digits are only remembered when bounds need them, so equal
        // positions of unbounded numbers are equal states.
        let d = if self.bounds.is_some() {
            (b.wrapping_sub(b'0')) as u64
        } else {
            0
        };
        let next = match st.stage {
            Stage::Start => match b {
                b'-' => Some(NumState {
                    stage: Stage::Minus,
                    neg: true,
                    ..*st
                }),
                b'0' => Some(NumState {
                    stage: Stage::Zero,
                    ..*st
                }),
                b'1'..=b'9' => Some(NumState {
                    stage: Stage::Int,
                    ni: 1,
                    mag: d,
                    ..*st
                }),
                _ => None,
            },
            Stage::Minus => match b {
                b'0' => Some(NumState {
                    stage: Stage::Zero,
                    ..*st
                }),
                b'1'..=b'9' => Some(NumState {
                    stage: Stage::Int,
                    ni: 1,
                    mag: d,
                    ..*st
                }),
                _ => None,
            },
            Stage::Zero | Stage::Int => {
                if digit && st.stage == Stage::Int && st.ni < self.int_cap {
                    Some(NumState {
                        ni: st.ni + 1,
                        mag: st.mag.wrapping_mul(10).wrapping_add(d),
                        ..*st
                    })
                } else if b == b'.' && self.frac_cap > 0 {
                    Some(NumState {
                        stage: Stage::Dot,
                        ..*st
                    })
                } else if (b == b'e' || b == b'E') && self.exp_cap > 0 {
                    Some(NumState {
                        stage: Stage::E,
                        ..*st
                    })
                } else {
                    return self.end(st);
                }
            }
            Stage::Dot => {
                if digit {
                    Some(NumState {
                        stage: Stage::Frac,
                        nf: 1,
                        mag: st.mag.wrapping_mul(10).wrapping_add(d),
                        ..*st
                    })
                } else {
                    None
                }
            }
            Stage::Frac => {
                if digit && st.nf < self.frac_cap {
                    Some(NumState {
                        nf: st.nf + 1,
                        mag: st.mag.wrapping_mul(10).wrapping_add(d),
                        ..*st
                    })
                } else if (b == b'e' || b == b'E') && self.exp_cap > 0 {
                    Some(NumState {
                        stage: Stage::E,
                        ..*st
                    })
                } else {
                    return self.end(st);
                }
            }
            Stage::E => match b {
                b'+' | b'-' => Some(NumState {
                    stage: Stage::ESign,
                    ..*st
                }),
                b'0'..=b'9' => Some(NumState {
                    stage: Stage::Exp,
                    ne: 1,
                    ..*st
                }),
                _ => None,
            },
            Stage::ESign => digit.then_some(NumState {
                stage: Stage::Exp,
                ne: 1,
                ..*st
            }),
            Stage::Exp => {
                if digit && st.ne < self.exp_cap {
                    Some(NumState {
                        ne: st.ne + 1,
                        ..*st
                    })
                } else {
                    return self.end(st);
                }
            }
        };
        match next {
            Some(n) if self.reachable_meets(&n) => {
                *st = n;
                NumStep::Continue
            }
            _ => NumStep::Reject,
        }
    }

    fn end(&self, st: &NumState) -> NumStep {
        if self.can_end(st) {
            NumStep::End
        } else {
            NumStep::Reject
        }
    }

    /// The number may stop here.
    pub fn can_end(&self, st: &NumState) -> bool {
        matches!(
            st.stage,
            Stage::Zero | Stage::Int | Stage::Frac | Stage::Exp
        ) && self.value_ok(st)
    }
}

/// Converts a JSON Schema bound to the scaled grid. `ceil` picks rounding
/// direction for values between grid points; the result saturates far
/// outside any reachable value.
pub(crate) fn scale_bound(n: &serde_json::Number, scale: u8, ceil: bool) -> i128 {
    const SAT: i128 = 10i128.pow(30);
    if let Some(i) = n.as_i64() {
        return (i as i128).saturating_mul(10i128.pow(scale as u32));
    }
    if let Some(u) = n.as_u64() {
        return (u as i128).saturating_mul(10i128.pow(scale as u32));
    }
    let Some(f) = n.as_f64() else { return 0 };
    // The shortest round-trip decimal form, e.g. "1.5e-3", read exactly.
    let s = format!("{f:e}");
    let (mant, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mant.starts_with('-');
    let mant = mant.trim_start_matches('-');
    let (ip, fp) = mant.split_once('.').unwrap_or((mant, ""));
    let digits = format!("{ip}{fp}");
    let mut m: i128 = 0;
    for c in digits.bytes() {
        m = m.saturating_mul(10).saturating_add((c - b'0') as i128);
    }
    // value = m × 10^(exp - len(fp)); scaled = m × 10^(e2)
    let e2 = exp - fp.len() as i32 + scale as i32;
    let mag_floor;
    let exact;
    if e2 >= 0 {
        if e2 > 30 {
            mag_floor = SAT;
        } else {
            mag_floor = m.saturating_mul(10i128.pow(e2 as u32)).min(SAT);
        }
        exact = true;
    } else {
        let d = -e2;
        if d > 38 {
            mag_floor = 0;
            exact = m == 0;
        } else {
            let p = 10i128.pow(d as u32);
            mag_floor = m / p;
            exact = m % p == 0;
        }
    }
    // Signed floor / ceil.
    if !neg {
        if ceil && !exact {
            mag_floor + 1
        } else {
            mag_floor
        }
    } else if !ceil && !exact {
        -mag_floor - 1
    } else {
        -mag_floor
    }
}

/// Scale used for bounded non-integer numbers (six fraction digits).
pub(crate) const BOUNDED_SCALE: u8 = 6;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) enum Stage {
    #[default]
    Start,
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    E,
    ESign,
    Exp,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct NumState {
    pub stage: Stage,
    pub neg: bool,
    pub ni: u8,
    pub nf: u8,
    pub ne: u8,
    /// Integer and fraction digits read so far, as one integer (meaningful
    /// only for bounded kinds, whose digit caps keep it below 10¹⁹).
    pub mag: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NumStep {
    Continue,
    End,
    Reject,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(k: &NumKind, s: &str) -> bool {
        let mut st = NumState::default();
        for &b in s.as_bytes() {
            if k.step(&mut st, b) != NumStep::Continue {
                return false;
            }
        }
        k.can_end(&st)
    }

    #[test]
    fn free_numbers() {
        let k = NumKind::free_number();
        for ok in ["0", "-0", "12", "1.5", "-3.25e10", "1E+2", "0.0001"] {
            assert!(run(&k, ok), "{ok}");
        }
        for bad in ["01", "-", "1.", ".5", "1e", "+1", "1e123"] {
            assert!(!run(&k, bad), "{bad}");
        }
        let i = NumKind::free_integer();
        assert!(run(&i, "-42") && !run(&i, "4.2") && !run(&i, "1e3"));
        assert!(!run(&i, "1234567890123456789"), "19 digits exceed the cap");
    }

    #[test]
    fn integer_bounds() {
        let n = |v: i64| serde_json::Number::from(v);
        let k = NumKind::bounded(
            true,
            scale_bound(&n(10), 0, true),
            scale_bound(&n(250), 0, false),
        );
        assert!(run(&k, "10") && run(&k, "250") && run(&k, "99"));
        assert!(!run(&k, "9") && !run(&k, "251") && !run(&k, "-10"));
        // Liveness: after "2", "25" and "250" are still possible, "26" is not.
        let mut st = NumState::default();
        assert_eq!(k.step(&mut st, b'2'), NumStep::Continue);
        let mut s2 = st;
        assert_eq!(
            k.step(&mut s2, b'6'),
            NumStep::Continue,
            "26 itself is in range"
        );
        assert_eq!(k.step(&mut s2, b'0'), NumStep::Reject, "260 is not");
        assert_eq!(k.step(&mut st, b'-'), NumStep::Reject);
        assert!(!NumKind::bounded(true, 5, 4).satisfiable());
    }

    #[test]
    fn float_bounds() {
        let f = |v: f64| serde_json::Number::from_f64(v).unwrap();
        let lo = scale_bound(&f(0.5), BOUNDED_SCALE, true);
        let hi = scale_bound(&f(1.25), BOUNDED_SCALE, false);
        assert_eq!((lo, hi), (500_000, 1_250_000));
        let k = NumKind::bounded(false, lo, hi);
        assert!(run(&k, "0.5") && run(&k, "1") && run(&k, "1.25") && run(&k, "0.75"));
        assert!(!run(&k, "0.4") && !run(&k, "1.26") && !run(&k, "2") && !run(&k, "1e0"));
        // exclusive maximum 1.0 → hi = 999_999
        assert_eq!(scale_bound(&f(1.0), BOUNDED_SCALE, true) - 1, 999_999);
        assert_eq!(scale_bound(&f(-0.1), BOUNDED_SCALE, false), -100_000);
        assert_eq!(scale_bound(&f(0.1234567), BOUNDED_SCALE, true), 123_457);
        assert_eq!(scale_bound(&f(-0.1234567), BOUNDED_SCALE, true), -123_456);
        assert_eq!(scale_bound(&f(-0.1234567), BOUNDED_SCALE, false), -123_457);
    }
}
