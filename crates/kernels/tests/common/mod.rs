//! Helpers shared by the convolution test binaries: seeded inputs, error norms and an f64
//! direct-loop reference.

#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use quarc_kernels::Conv2dParams;

/// max |a − b| / max(|b|_∞, 1e-3).
pub fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    rel_err_floor(a, b, 1e-3)
}

/// max |a − b|.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// max |a − b| / max(|b|_∞, `floor`).
pub fn rel_err_floor(a: &Tensor, b: &Tensor, floor: f32) -> f32 {
    let diff = max_abs_diff(a, b);
    let scale = b
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
        .max(floor);
    diff / scale
}

/// A seeded tensor of values uniform in (−scale, scale) (the CPU device cannot be seeded).
pub fn seeded(seed: u64, dims: &[usize], scale: f32) -> Tensor {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

/// A direct f64 loop: `(y, dx, dw)` for the loss `Σ y · upstream`, any groups.
pub fn naive(x: &Tensor, w: &Tensor, up: &Tensor, p: &Conv2dParams) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (n, ci, h, wd) = x.dims4().unwrap();
    let (co, cig, kh, kw) = w.dims4().unwrap();
    let (_, _, ho, wo) = up.dims4().unwrap();
    let f = |t: &Tensor| {
        t.flatten_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()
    };
    let (xs, ws, us) = (f(x), f(w), f(up));
    let (mut y, mut dx, mut dw) = (vec![0.0; n * co * ho * wo], vec![0.0; xs.len()], vec![0.0; ws.len()]);
    let cog = co / p.groups;
    for b in 0..n {
        for o in 0..co {
            let grp = o / cog;
            for oy in 0..ho {
                for ox in 0..wo {
                    let yi = ((b * co + o) * ho + oy) * wo + ox;
                    for c in 0..cig {
                        let cin = grp * cig + c;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * p.stride + ky * p.dilation) as isize - p.padding as isize;
                                let ix = (ox * p.stride + kx * p.dilation) as isize - p.padding as isize;
                                if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= wd {
                                    continue;
                                }
                                let xi = ((b * ci + cin) * h + iy as usize) * wd + ix as usize;
                                let wi = ((o * cig + c) * kh + ky) * kw + kx;
                                y[yi] += xs[xi] * ws[wi];
                                dx[xi] += ws[wi] * us[yi];
                                dw[wi] += xs[xi] * us[yi];
                            }
                        }
                    }
                }
            }
        }
    }
    (y, dx, dw)
}

/// max |a − b| / max(|b|_∞, 1e-3) against an f64 reference.
pub fn rel_err64(a: &Tensor, b: &[f64]) -> f64 {
    let a = a
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    assert_eq!(a.len(), b.len());
    let diff = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    diff / b.iter().map(|v| v.abs()).fold(1e-3, f64::max)
}
