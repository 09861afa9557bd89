//! K-quants (Q2_K ... Q6_K, Q8_K): ggml's reference quantizers and the
//! dequantizers.
//!
//! The quantizers are searches (trying several candidate scales and keeping
//! the best by a weighted error), so byte-identical output needs the same
//! candidate order, the same tie rules (`<` vs `<=`) and the same float
//! evaluation order as ggml-quants.c. Each expression below is written in C's
//! left-to-right order with integer operands converted to f32 where C
//! converts them; comments name the ggml function each piece mirrors.
//!
//! Absent: the importance-matrix variants (`quantize_row_q4_K_impl` etc.,
//! used by llama-quantize only when given `--imatrix`) and `make_qkx3_quants`
//! / `make_qp_quants`, which only those use.

use crate::blocks::*;

/// ggml-quants.c `GROUP_MAX_EPS`.
const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml-quants.c `nearest_int`: adding 1.5 * 2^23 forces the FPU to round the
/// value to an integer (ties to even) in the low mantissa bits. Valid for
/// |x| <= 2^22 - 1, which every caller guarantees for finite inputs; for
/// other inputs it returns the same garbage ggml does.
#[inline(always)]
pub(crate) fn nearest_int(fval: f32) -> i32 {
    let val = fval + 12582912.0;
    (val.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// ggml-quants.c `make_qx_quants` with `qw == NULL` (the only form the
/// reference quantizers use). Writes `L[i] in 0..2*nmax` and returns the scale.
fn make_qx_quants(n: usize, nmax: i32, x: &[f32], l_out: &mut [i8], rmse_type: i32) -> f32 {
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &xi in &x[..n] {
        let ax = xi.abs();
        if ax > amax {
            amax = ax;
            max = xi;
        }
    }
    if amax < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let mut iscale = -(nmax as f32) / max;
    if rmse_type == 0 {
        for i in 0..n {
            let l = nearest_int(iscale * x[i]);
            l_out[i] = (nmax + l.clamp(-nmax, nmax - 1)) as i8;
        }
        return 1.0 / iscale;
    }
    let mut rmse_type = rmse_type;
    let mut return_early = false;
    if rmse_type < 0 {
        rmse_type = -rmse_type;
        return_early = true;
    }
    let weight = |xi: f32| -> f32 {
        match rmse_type {
            1 => xi * xi,
            2 => 1.0,
            3 => xi.abs(),
            _ => xi.abs().sqrt(),
        }
    };
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l_out[i] = (l + nmax) as i8;
        let w = weight(x[i]);
        let lf = l as f32;
        sumlx += w * x[i] * lf;
        suml2 += w * lf * lf;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    if return_early {
        return if suml2 > 0.0 { 0.5 * (scale + 1.0 / iscale) } else { 1.0 / iscale };
    }
    let mut best = scale * sumlx;
    for is in -9i32..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for i in 0..n {
            let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
            let w = weight(x[i]);
            let lf = l as f32;
            sumlx += w * x[i] * lf;
            suml2 += w * lf * lf;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for i in 0..n {
                let l = nearest_int(iscale * x[i]);
                l_out[i] = (nmax + l.clamp(-nmax, nmax - 1)) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// ggml-quants.c `make_q3_quants` (signed levels `-nmax..nmax-1`, stored
/// offset by `nmax`), with its coordinate-descent refinement when `do_rmse`.
fn make_q3_quants(n: usize, nmax: i32, x: &[f32], l_out: &mut [i8], do_rmse: bool) -> f32 {
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &xi in &x[..n] {
        let ax = xi.abs();
        if ax > amax {
            amax = ax;
            max = xi;
        }
    }
    if amax < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    if do_rmse {
        let mut sumlx = 0.0f32;
        let mut suml2 = 0.0f32;
        for i in 0..n {
            let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
            l_out[i] = l as i8;
            let w = x[i] * x[i];
            let lf = l as f32;
            sumlx += w * x[i] * lf;
            suml2 += w * lf * lf;
        }
        for _itry in 0..5 {
            let mut n_changed = 0;
            for i in 0..n {
                let w = x[i] * x[i];
                let li = l_out[i] as f32;
                let mut slx = sumlx - w * x[i] * li;
                if slx > 0.0 {
                    let mut sl2 = suml2 - w * li * li;
                    let new_l = nearest_int(x[i] * sl2 / slx).clamp(-nmax, nmax - 1);
                    if new_l != l_out[i] as i32 {
                        let nl = new_l as f32;
                        slx += w * x[i] * nl;
                        sl2 += w * nl * nl;
                        if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                            l_out[i] = new_l as i8;
                            sumlx = slx;
                            suml2 = sl2;
                            n_changed += 1;
                        }
                    }
                }
            }
            if n_changed == 0 {
                break;
            }
        }
        for li in &mut l_out[..n] {
            *li += nmax as i8;
        }
        return if suml2 > 0.0 { sumlx / suml2 } else { 0.0 };
    }
    for i in 0..n {
        let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l_out[i] = (l + nmax) as i8;
    }
    1.0 / iscale
}

/// ggml-quants.c `make_qkx2_quants`: asymmetric levels `0..=nmax` with a
/// min, found by trying `nstep + 1` candidate scales around `nmax/(max-min)`
/// and solving the weighted least squares for (scale, min) at each.
/// Returns the scale; `*the_min` receives `-min` (a non-negative offset).
#[allow(clippy::too_many_arguments)]
fn make_qkx2_quants(
    n: usize,
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l_out: &mut [u8],
    the_min: &mut f32,
    laux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> f32 {
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l_out[..n].fill(0);
        *the_min = -min;
        return 0.0;
    }
    let nmaxf = nmax as f32;
    let mut iscale = nmaxf / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l_out[i] = l as u8;
        let mut diff = scale * l as f32 + min - x[i];
        diff = if use_mad { diff.abs() } else { diff * diff };
        best_error += weights[i] * diff;
    }
    if nstep < 1 {
        *the_min = -min;
        return scale;
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmaxf) / (max - min);
        let mut sum_l = 0.0f32;
        let mut sum_l2 = 0.0f32;
        let mut sum_xl = 0.0f32;
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = l as u8;
            let w = weights[i];
            let lf = l as f32;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let dd = sum_w * sum_l2 - sum_l * sum_l;
        if dd > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / dd;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / dd;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let mut diff = this_scale * laux[i] as f32 + this_min - x[i];
                diff = if use_mad { diff.abs() } else { diff * diff };
                cur_error += weights[i] * diff;
            }
            if cur_error < best_error {
                l_out[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    scale
}

/// Packs 2-bit levels as Q2_K/Q3_K `qs` expect: byte `32h + l` of the
/// 128-element half h holds elements `128h + l + 32k` at bits `2k`.
fn pack_2bit(l: &[u8; QK_K], qs: &mut [u8; 64]) {
    for h in 0..2 {
        let j = 128 * h;
        for i in 0..32 {
            qs[32 * h + i] = l[j + i] | (l[j + i + 32] << 2) | (l[j + i + 64] << 4) | (l[j + i + 96] << 6);
        }
    }
}

pub fn quantize_q2_k(x: &[f32], y: &mut [BlockQ2_K]) {
    const Q4SCALE: f32 = 15.0;
    for (x, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut l = [0u8; QK_K];
        let mut laux = [0u8; 16];
        let mut weights = [0.0f32; 16];
        let mut mins = [0.0f32; 16];
        let mut scales = [0.0f32; 16];
        let mut max_scale = 0.0f32;
        let mut max_min = 0.0f32;
        for j in 0..16 {
            for i in 0..16 {
                weights[i] = x[16 * j + i].abs();
            }
            scales[j] = make_qkx2_quants(
                16,
                3,
                &x[16 * j..16 * j + 16],
                &weights,
                &mut l[16 * j..16 * j + 16],
                &mut mins[j],
                &mut laux,
                -0.5,
                0.1,
                15,
                true,
            );
            if scales[j] > max_scale {
                max_scale = scales[j];
            }
            if mins[j] > max_min {
                max_min = mins[j];
            }
        }
        if max_scale > 0.0 {
            let iscale = Q4SCALE / max_scale;
            for j in 0..16 {
                yb.scales[j] = nearest_int(iscale * scales[j]) as u8;
            }
            yb.d = F16::from_f32(max_scale / Q4SCALE);
        } else {
            yb.scales = [0; 16];
            yb.d = F16::from_f32(0.0);
        }
        if max_min > 0.0 {
            let iscale = Q4SCALE / max_min;
            for j in 0..16 {
                let lm = nearest_int(iscale * mins[j]);
                yb.scales[j] |= (lm << 4) as u8;
            }
            yb.dmin = F16::from_f32(max_min / Q4SCALE);
        } else {
            yb.dmin = F16::from_f32(0.0);
        }
        for j in 0..16 {
            let d = yb.d.to_f32() * (yb.scales[j] & 0xF) as f32;
            if d == 0.0 {
                // ggml keeps the levels make_qkx2_quants chose for this sub-block.
                continue;
            }
            let dm = yb.dmin.to_f32() * (yb.scales[j] >> 4) as f32;
            for ii in 0..16 {
                let li = nearest_int((x[16 * j + ii] + dm) / d).clamp(0, 3);
                l[16 * j + ii] = li as u8;
            }
        }
        pack_2bit(&l, &mut yb.qs);
    }
}

pub fn quantize_q3_k(x: &[f32], y: &mut [BlockQ3_K]) {
    for (x, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut l = [0i8; QK_K];
        let mut scales = [0.0f32; 16];
        let mut max_scale = 0.0f32;
        let mut amax = 0.0f32;
        for j in 0..16 {
            scales[j] = make_q3_quants(16, 4, &x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16], true);
            let scale = scales[j].abs();
            if scale > amax {
                amax = scale;
                max_scale = scales[j];
            }
        }
        yb.scales = [0; 12];
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            for j in 0..16 {
                // `int8_t l = nearest_int(...)`: truncated to 8 bits first.
                let mut lv = nearest_int(iscale * scales[j]) as i8;
                lv = lv.clamp(-32, 31) + 32;
                if j < 8 {
                    yb.scales[j] = (lv & 0xF) as u8;
                } else {
                    yb.scales[j - 8] |= ((lv & 0xF) << 4) as u8;
                }
                lv >>= 4;
                yb.scales[j % 4 + 8] |= (lv << (2 * (j / 4))) as u8;
            }
            yb.d = F16::from_f32(1.0 / iscale);
        } else {
            yb.d = F16::from_f32(0.0);
        }
        let sc = q3k_scales(&yb.scales);
        for j in 0..16 {
            let s = sc[j] as i8 as i32 - 32;
            let d = yb.d.to_f32() * s as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let li = nearest_int(x[16 * j + ii] / d).clamp(-4, 3);
                l[16 * j + ii] = (li + 4) as i8;
            }
        }
        yb.hmask = [0; 32];
        let mut lu = [0u8; QK_K];
        let mut m = 0usize;
        let mut hm = 1u8;
        for j in 0..QK_K {
            let mut v = l[j] as u8;
            if v > 3 {
                yb.hmask[m] |= hm;
                v -= 4;
            }
            lu[j] = v;
            m += 1;
            if m == QK_K / 8 {
                m = 0;
                hm <<= 1;
            }
        }
        pack_2bit(&lu, &mut yb.qs);
    }
}

/// Shared body of quantize_row_q4_K_ref / quantize_row_q5_K_ref up to the
/// final level choice: per 32-element sub-block weights `sqrt(mean x^2) + |x|`,
/// make_qkx2_quants, then 6-bit scales/mins relative to the largest.
fn kx_scales(x: &[f32], nmax: i32, rmin: f32, nstep: i32, l: &mut [u8; QK_K]) -> ([u8; 12], F16, F16) {
    let mut laux = [0u8; 32];
    let mut weights = [0.0f32; 32];
    let mut mins = [0.0f32; 8];
    let mut scales = [0.0f32; 8];
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, &v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        scales[j] =
            make_qkx2_quants(32, nmax, xs, &weights, &mut l[32 * j..32 * j + 32], &mut mins[j], &mut laux, rmin, 0.1, nstep, false);
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut packed = [0u8; 12];
    for j in 0..8 {
        // `uint8_t ls = nearest_int(...)`: truncation to 8 bits, then MIN(63).
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    (packed, F16::from_f32(max_scale / 63.0), F16::from_f32(max_min / 63.0))
}

/// Final level choice shared by Q4_K and Q5_K: requantize each sub-block with
/// the rounded 6-bit scale and min.
fn kx_levels(x: &[f32], packed: &[u8; 12], d: F16, dmin: F16, nmax: i32, l: &mut [u8; QK_K]) {
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, packed);
        let dd = d.to_f32() * sc as f32;
        if dd == 0.0 {
            continue;
        }
        let dm = dmin.to_f32() * m as f32;
        for ii in 0..32 {
            let li = nearest_int((x[32 * j + ii] + dm) / dd).clamp(0, nmax);
            l[32 * j + ii] = li as u8;
        }
    }
}

pub fn quantize_q4_k(x: &[f32], y: &mut [BlockQ4_K]) {
    for (x, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut l = [0u8; QK_K];
        let (packed, d, dmin) = kx_scales(x, 15, -1.0, 20, &mut l);
        yb.scales = packed;
        yb.d = d;
        yb.dmin = dmin;
        kx_levels(x, &packed, d, dmin, 15, &mut l);
        for c in 0..4 {
            for i in 0..32 {
                yb.qs[32 * c + i] = l[64 * c + i] | (l[64 * c + 32 + i] << 4);
            }
        }
    }
}

pub fn quantize_q5_k(x: &[f32], y: &mut [BlockQ5_K]) {
    for (x, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut l = [0u8; QK_K];
        let (packed, d, dmin) = kx_scales(x, 31, -0.5, 15, &mut l);
        yb.scales = packed;
        yb.d = d;
        yb.dmin = dmin;
        kx_levels(x, &packed, d, dmin, 31, &mut l);
        yb.qh = [0; 32];
        for c in 0..4 {
            let (m1, m2) = (1u8 << (2 * c), 2u8 << (2 * c));
            for i in 0..32 {
                let mut l1 = l[64 * c + i];
                if l1 > 15 {
                    l1 -= 16;
                    yb.qh[i] |= m1;
                }
                let mut l2 = l[64 * c + 32 + i];
                if l2 > 15 {
                    l2 -= 16;
                    yb.qh[i] |= m2;
                }
                yb.qs[32 * c + i] = l1 | (l2 << 4);
            }
        }
    }
}

pub fn quantize_q6_k(x: &[f32], y: &mut [BlockQ6_K]) {
    for (x, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut l = [0i8; QK_K];
        let mut scales = [0.0f32; 16];
        let mut max_scale = 0.0f32;
        let mut max_abs_scale = 0.0f32;
        for ib in 0..16 {
            let scale = make_qx_quants(16, 32, &x[16 * ib..16 * ib + 16], &mut l[16 * ib..16 * ib + 16], 1);
            scales[ib] = scale;
            let abs_scale = scale.abs();
            if abs_scale > max_abs_scale {
                max_abs_scale = abs_scale;
                max_scale = scale;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            *yb = BlockQ6_K::zeroed();
            continue;
        }
        let iscale = -128.0 / max_scale;
        yb.d = F16::from_f32(1.0 / iscale);
        for ib in 0..16 {
            yb.scales[ib] = nearest_int(iscale * scales[ib]).min(127) as i8;
        }
        for j in 0..16 {
            let d = yb.d.to_f32() * yb.scales[j] as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let li = nearest_int(x[16 * j + ii] / d).clamp(-32, 31);
                l[16 * j + ii] = (li + 32) as i8;
            }
        }
        for h in 0..2 {
            let (j, ql, qh) = (128 * h, 64 * h, 32 * h);
            for i in 0..32 {
                let lv = |k: usize| l[j + i + k] as u8;
                yb.ql[ql + i] = (lv(0) & 0xF) | ((lv(64) & 0xF) << 4);
                yb.ql[ql + i + 32] = (lv(32) & 0xF) | ((lv(96) & 0xF) << 4);
                yb.qh[qh + i] = (lv(0) >> 4) | ((lv(32) >> 4) << 2) | ((lv(64) >> 4) << 4) | ((lv(96) >> 4) << 6);
            }
        }
    }
}

/// ggml-quants.c `quantize_row_q8_K_ref` — also what ggml-cpu uses for
/// activations on every architecture. Note the all-zero block: ggml sets
/// `d = 0` and `qs = 0` but leaves `bsums` untouched (whatever the buffer
/// held); Hearth writes zeros there, which is what any consumer reads as
/// "sum of zero quants" anyway.
pub fn quantize_q8_k(x: &[f32], y: &mut [BlockQ8_K]) {
    for (x, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut max = 0.0f32;
        let mut amax = 0.0f32;
        for &v in x {
            let ax = v.abs();
            if ax > amax {
                amax = ax;
                max = v;
            }
        }
        if amax == 0.0 {
            *yb = BlockQ8_K::zeroed();
            continue;
        }
        let iscale = -127.0 / max;
        for j in 0..QK_K {
            let v = nearest_int(iscale * x[j]);
            yb.qs[j] = v.min(127) as i8;
        }
        for j in 0..16 {
            let sum: i32 = yb.qs[16 * j..16 * j + 16].iter().map(|&q| q as i32).sum();
            yb.bsums[j] = I16Le::new(sum as i16);
        }
        yb.d = F32Le::new(1.0 / iscale);
    }
}

pub fn dequantize_q2_k(x: &[BlockQ2_K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let min = b.dmin.to_f32();
        for idx in 0..QK_K {
            let (h, r) = (idx / 128, idx % 128);
            let (k, l) = (r / 32, r % 32);
            // Sub-block of 16: elements 16*is..16*is+16 use scales[is].
            let sc = b.scales[idx / 16];
            let dl = d * (sc & 0xF) as f32;
            let ml = min * (sc >> 4) as f32;
            let q = (b.qs[32 * h + l] >> (2 * k)) & 3;
            y[idx] = dl * q as f32 - ml;
        }
    }
}

pub fn dequantize_q3_k(x: &[BlockQ3_K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d_all = b.d.to_f32();
        let sc = q3k_scales(&b.scales);
        for idx in 0..QK_K {
            let (h, r) = (idx / 128, idx % 128);
            let (k, l) = (r / 32, r % 32);
            let dl = d_all * (sc[idx / 16] as i32 - 32) as f32;
            let low = ((b.qs[32 * h + l] >> (2 * k)) & 3) as i32;
            // hmask bit (4h + k) of byte l; a clear bit means "subtract 4".
            let high = if b.hmask[l] & (1 << (4 * h + k)) != 0 { 0 } else { 4 };
            y[idx] = dl * (low - high) as f32;
        }
    }
}

pub fn dequantize_q4_k(x: &[BlockQ4_K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let min = b.dmin.to_f32();
        for c in 0..4 {
            let (sc1, m1) = scale_min_k4(2 * c, &b.scales);
            let (sc2, m2) = scale_min_k4(2 * c + 1, &b.scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            for l in 0..32 {
                let q = b.qs[32 * c + l];
                y[64 * c + l] = d1 * (q & 0xF) as f32 - m1;
                y[64 * c + 32 + l] = d2 * (q >> 4) as f32 - m2;
            }
        }
    }
}

pub fn dequantize_q5_k(x: &[BlockQ5_K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let min = b.dmin.to_f32();
        for c in 0..4 {
            let (sc1, m1) = scale_min_k4(2 * c, &b.scales);
            let (sc2, m2) = scale_min_k4(2 * c + 1, &b.scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
            for l in 0..32 {
                let q = b.qs[32 * c + l];
                let h1 = if b.qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if b.qh[l] & u2 != 0 { 16 } else { 0 };
                y[64 * c + l] = d1 * ((q & 0xF) + h1) as f32 - m1;
                y[64 * c + 32 + l] = d2 * ((q >> 4) + h2) as f32 - m2;
            }
        }
    }
}

/// The 256 six-bit values (0..64) of a Q6_K block in element order.
#[inline(always)]
pub(crate) fn q6k_values(b: &BlockQ6_K) -> [u8; QK_K] {
    let mut v = [0u8; QK_K];
    for h in 0..2 {
        let (ql, qh) = (&b.ql[64 * h..64 * h + 64], &b.qh[32 * h..32 * h + 32]);
        for l in 0..32 {
            v[128 * h + l] = (ql[l] & 0xF) | ((qh[l] & 3) << 4);
            v[128 * h + l + 32] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
            v[128 * h + l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            v[128 * h + l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
    }
    v
}

pub fn dequantize_q6_k(x: &[BlockQ6_K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (idx, q) in q6k_values(b).into_iter().enumerate() {
            // ggml: `d * sc[is] * q` = (d * sc) * q.
            y[idx] = d * b.scales[idx / 16] as f32 * (q as i32 - 32) as f32;
        }
    }
}

pub fn dequantize_q8_k(x: &[BlockQ8_K], y: &mut [f32]) {
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.get();
        for (o, &q) in y.iter_mut().zip(b.qs.iter()) {
            *o = d * q as f32;
        }
    }
}

use bytemuck::Zeroable;

/// The 256 signed 3-bit values (-4..4) of a Q3_K block in element order.
#[inline(always)]
pub(crate) fn q3k_values(b: &BlockQ3_K) -> [i8; QK_K] {
    let mut v = [0i8; QK_K];
    for (idx, o) in v.iter_mut().enumerate() {
        let (h, r) = (idx / 128, idx % 128);
        let (k, l) = (r / 32, r % 32);
        let low = ((b.qs[32 * h + l] >> (2 * k)) & 3) as i8;
        let high = if b.hmask[l] & (1 << (4 * h + k)) != 0 { 0 } else { 4 };
        *o = low - high;
    }
    v
}

/// The 256 two-bit values (0..4) of a Q2_K block in element order.
#[inline(always)]
pub(crate) fn q2k_values(b: &BlockQ2_K) -> [u8; QK_K] {
    let mut v = [0u8; QK_K];
    for (idx, o) in v.iter_mut().enumerate() {
        let (h, r) = (idx / 128, idx % 128);
        let (k, l) = (r / 32, r % 32);
        *o = (b.qs[32 * h + l] >> (2 * k)) & 3;
    }
    v
}

/// The 256 five-bit values (0..32) of a Q5_K block in element order.
#[inline(always)]
pub(crate) fn q5k_values(b: &BlockQ5_K) -> [u8; QK_K] {
    let mut v = [0u8; QK_K];
    for c in 0..4 {
        for l in 0..32 {
            let q = b.qs[32 * c + l];
            v[64 * c + l] = (q & 0xF) | (((b.qh[l] >> (2 * c)) & 1) << 4);
            v[64 * c + 32 + l] = (q >> 4) | (((b.qh[l] >> (2 * c + 1)) & 1) << 4);
        }
    }
    v
}

/// The 256 four-bit values (0..16) of a Q4_K block in element order.
#[inline(always)]
pub(crate) fn q4k_values(b: &BlockQ4_K) -> [u8; QK_K] {
    let mut v = [0u8; QK_K];
    for c in 0..4 {
        for l in 0..32 {
            let q = b.qs[32 * c + l];
            v[64 * c + l] = q & 0xF;
            v[64 * c + 32 + l] = q >> 4;
        }
    }
    v
}
