//! The shape arithmetic of a 2-D convolution, validated once.

/// Sizes and hyper-parameters of one `conv2d` call (NCHW input, OIHW weight).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Batch size.
    pub batch: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride (both axes).
    pub stride: usize,
    /// Zero padding (both axes).
    pub padding: usize,
    /// Dilation (both axes).
    pub dilation: usize,
    /// Groups: 1 (dense) or `c_in` (depthwise).
    pub groups: usize,
}

/// `(v / s, v % s)` without a division for the strides networks use (1 and 2): the phase-split
/// layouts compute it for every row and tap, where a 64-bit division costs tens of cycles.
#[inline(always)]
pub(crate) fn div_rem_stride(v: usize, s: usize) -> (usize, usize) {
    match s {
        1 => (v, 0),
        2 => (v >> 1, v & 1),
        _ => (v / s, v % s),
    }
}

/// Which algorithm family a geometry runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvKind {
    /// `groups == 1`: im2col (or the input itself for 1×1) and a GEMM.
    Dense,
    /// `groups == c_in == c_out`: a direct loop per channel plane.
    Depthwise,
}

impl ConvGeometry {
    /// Checks the geometry and returns the algorithm family, or a message saying what is wrong.
    pub fn validate(&self) -> Result<ConvKind, String> {
        let g = self;
        if g.stride == 0 || g.dilation == 0 {
            return Err(format!(
                "conv2d: stride {} and dilation {} must be positive",
                g.stride, g.dilation
            ));
        }
        if g.h == 0 || g.w == 0 {
            return Err(format!("conv2d: input plane {}×{} is empty", g.h, g.w));
        }
        if g.c_in == 0 || g.c_out == 0 || g.kh == 0 || g.kw == 0 {
            return Err(format!(
                "conv2d: channels ({}→{}) and kernel ({}×{}) must be positive",
                g.c_in, g.c_out, g.kh, g.kw
            ));
        }
        let eff_h = g.dilation * (g.kh - 1) + 1;
        let eff_w = g.dilation * (g.kw - 1) + 1;
        if g.h + 2 * g.padding < eff_h || g.w + 2 * g.padding < eff_w {
            return Err(format!(
                "conv2d: padded input {}×{} is smaller than the dilated kernel {eff_h}×{eff_w}",
                g.h + 2 * g.padding,
                g.w + 2 * g.padding
            ));
        }
        match g.groups {
            1 => Ok(ConvKind::Dense),
            n if n == g.c_in && n == g.c_out => Ok(ConvKind::Depthwise),
            n => Err(format!(
                "conv2d: groups {n} with {}→{} channels: only dense (1) and depthwise (groups = in = out) run here",
                g.c_in, g.c_out
            )),
        }
    }

    /// Output height.
    pub fn h_out(&self) -> usize {
        (self.h + 2 * self.padding - self.dilation * (self.kh - 1) - 1) / self.stride + 1
    }

    /// Output width.
    pub fn w_out(&self) -> usize {
        (self.w + 2 * self.padding - self.dilation * (self.kw - 1) - 1) / self.stride + 1
    }

    /// Output pixels per channel plane.
    pub fn p_out(&self) -> usize {
        self.h_out() * self.w_out()
    }

    /// Input pixels per channel plane.
    pub fn p_in(&self) -> usize {
        self.h * self.w
    }

    /// Rows of the im2col matrix (`c_in · kh · kw` for dense convs).
    pub fn k_dim(&self) -> usize {
        self.c_in / self.groups * self.kh * self.kw
    }

    /// Whether the conv is a 1×1, stride-1, unpadded one: the input is already the GEMM operand.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.padding == 0
    }

    /// Multiply-adds of the forward pass (each gradient costs the same), times two: FLOPs.
    pub fn flops(&self) -> f64 {
        2.0 * (self.batch * self.c_out * self.p_out() * self.k_dim()) as f64
    }

    /// The input range `[lo, hi)` of output positions `o` whose tap `k` lands inside `0..len`:
    /// `o * stride + k * dilation - padding ∈ [0, len)`.
    pub(crate) fn valid_outputs(&self, k: usize, len: usize, out_len: usize) -> (usize, usize) {
        let shift = k * self.dilation;
        // o*s + shift >= pad  ⇔  o >= ceil((pad - shift) / s)
        let lo = if shift >= self.padding {
            0
        } else {
            (self.padding - shift).div_ceil(self.stride)
        };
        // o*s + shift - pad <= len - 1  ⇔  o <= (len - 1 + pad - shift) / s
        let hi = if len + self.padding > shift {
            ((len - 1 + self.padding - shift) / self.stride + 1).min(out_len)
        } else {
            0
        };
        (lo.min(hi), hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stride_division_matches_the_operators() {
        for s in 1..6 {
            for v in 0..200 {
                assert_eq!(div_rem_stride(v, s), (v / s, v % s), "{v} / {s}");
            }
        }
    }

    fn geo(h: usize, k: usize, s: usize, p: usize, d: usize) -> ConvGeometry {
        ConvGeometry {
            batch: 1,
            c_in: 1,
            h,
            w: h,
            c_out: 1,
            kh: k,
            kw: k,
            stride: s,
            padding: p,
            dilation: d,
            groups: 1,
        }
    }

    #[test]
    fn output_sizes_follow_the_pytorch_formula() {
        assert_eq!(geo(28, 3, 1, 1, 1).h_out(), 28);
        assert_eq!(geo(28, 3, 2, 1, 1).h_out(), 14);
        assert_eq!(geo(7, 3, 2, 1, 1).h_out(), 4);
        assert_eq!(geo(7, 3, 1, 0, 2).h_out(), 3);
        assert_eq!(geo(5, 5, 1, 0, 1).h_out(), 1);
    }

    #[test]
    fn valid_output_ranges_match_brute_force() {
        for h in 1..9 {
            for k in 1..6 {
                for s in 1..4 {
                    for p in 0..3 {
                        for d in 1..3 {
                            let g = geo(h, k, s, p, d);
                            if g.validate().is_err() {
                                continue;
                            }
                            let out = g.h_out();
                            for tap in 0..k {
                                let inside: Vec<usize> = (0..out)
                                    .filter(|&o| {
                                        let i = (o * s + tap * d) as isize - p as isize;
                                        i >= 0 && (i as usize) < h
                                    })
                                    .collect();
                                let (lo, hi) = g.valid_outputs(tap, h, out);
                                assert_eq!(
                                    (lo..hi).collect::<Vec<_>>(),
                                    inside,
                                    "h{h} k{k} s{s} p{p} d{d} tap{tap}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn bad_geometries_are_reported() {
        assert!(geo(2, 5, 1, 0, 1).validate().is_err());
        assert!(geo(8, 3, 0, 0, 1).validate().is_err());
        let mut g = geo(8, 3, 1, 1, 1);
        g.c_in = 4;
        g.c_out = 8;
        g.groups = 2;
        assert!(g.validate().unwrap_err().contains("groups 2"));
        g.groups = 4;
        assert!(g.validate().is_err());
        g.c_out = 4;
        assert_eq!(g.validate(), Ok(ConvKind::Depthwise));
    }
}
