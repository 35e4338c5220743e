//! `relu(a + b)` as one op: the end of a residual block.
//!
//! Composed, candle runs it as two nodes: the sum and the ReLU, each a pass that allocates its
//! output, and a backward of five passes (the ReLU's `x ≥ 0` mask, its conversion to f32, the
//! product with the gradient, and one accumulation per node). The fused op makes one forward pass
//! and one backward pass (`g · [a + b ≥ 0]`, the mask recomputed from the inputs exactly as the
//! forward rounded them), with the same f32 arithmetic as candle's `add`, `relu` and relu
//! gradient, so values and gradients are bit-identical to the composed op (tested). Off the CPU,
//! or for other dtypes and strided inputs, [`add_relu`] is the composed op.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};

use crate::storage::f32_slice;

/// Elements per parallel task (large enough that the split costs nothing).
const CHUNK: usize = 1 << 15;

/// `relu(a + b)`, differentiable in both; the fused CPU op where it applies, else composed.
pub fn add_relu(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let fused = a.device().is_cpu()
        && a.shape() == b.shape()
        && [a, b].iter().all(|t| t.dtype() == DType::F32 && t.is_contiguous());
    if fused {
        a.apply_op2(b, AddRelu)
    } else {
        add_relu_reference(a, b)
    }
}

/// The composed reference: candle's `(a + b).relu()`.
pub fn add_relu_reference(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    (a + b)?.relu()
}

struct AddRelu;

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "add-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (a, b) = (
            f32_slice(s1, l1, self.name(), "a")?,
            f32_slice(s2, l2, self.name(), "b")?,
        );
        if a.len() != b.len() {
            candle_core::bail!("{}: {} and {} elements", self.name(), a.len(), b.len());
        }
        let out = crate::fresh::map2(a, b, CHUNK, |a, b| (a + b).max(0.0));
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = a.apply_op3_no_bwd(b, &grad.contiguous()?, &ReluMaskGrad)?;
        Ok((Some(g.clone()), Some(g)))
    }
}

/// `g · [a + b ≥ 0]` (candle's relu gradient: the mask as 1.0 / 0.0 times the gradient).
struct ReluMaskGrad;

impl CustomOp3 for ReluMaskGrad {
    fn name(&self) -> &'static str {
        "add-relu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (a, b, g) = (
            f32_slice(s1, l1, name, "a")?,
            f32_slice(s2, l2, name, "b")?,
            f32_slice(s3, l3, name, "grad")?,
        );
        if g.len() != a.len() || b.len() != a.len() {
            candle_core::bail!(
                "{name}: gradient of {} elements for inputs of {} and {}",
                g.len(),
                a.len(),
                b.len()
            );
        }
        let out = crate::fresh::map3(a, b, g, CHUNK, |a, b, g| g * if a + b >= 0.0 { 1.0 } else { 0.0 });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    use super::*;

    /// The bits of every value, with `−0.0` read as `+0.0`: the composed backward multiplies a
    /// negative gradient by a zero mask (`−0.0`) where the fused kernel writes `+0.0`.
    fn bits(t: &Tensor) -> Vec<u32> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|v| (v + 0.0).to_bits())
            .collect()
    }

    /// Values and both gradients equal the composed op's bit for bit, exact zeros of `a + b`
    /// (where the gradient passes) included, over several parallel chunks.
    #[test]
    fn fused_matches_composed_bit_for_bit() {
        let dev = Device::Cpu;
        let n = 3 * CHUNK + 17;
        let a0 = Tensor::randn(0f32, 1.0, n, &dev).unwrap();
        // b = −a on every 5th element: a + b is exactly 0 there
        let flip = Tensor::from_iter((0..n).map(|i| if i % 5 == 0 { -1.0f32 } else { 0.0 }), &dev).unwrap();
        let noise = Tensor::randn(0f32, 1.0, n, &dev).unwrap();
        let keep = Tensor::from_iter((0..n).map(|i| if i % 5 == 0 { 0.0f32 } else { 1.0 }), &dev).unwrap();
        let b0 = ((&a0 * &flip).unwrap() + (&noise * &keep).unwrap()).unwrap();
        let upstream = Tensor::randn(0f32, 1.0, n, &dev).unwrap();
        let run = |f: fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>| {
            let (a, b) = (Var::from_tensor(&a0).unwrap(), Var::from_tensor(&b0).unwrap());
            let y = f(a.as_tensor(), b.as_tensor()).unwrap();
            let grads = (&y * &upstream).unwrap().sum_all().unwrap().backward().unwrap();
            (bits(&y), bits(grads.get(&a).unwrap()), bits(grads.get(&b).unwrap()))
        };
        let (fused, composed) = (run(add_relu), run(add_relu_reference));
        assert_eq!(fused, composed);
        // the zeros passed the gradient: at i = 0, a + b = 0 and da = upstream
        let da: Vec<f32> = fused.1.iter().map(|v| f32::from_bits(*v)).collect();
        assert_eq!(da[0], upstream.get(0).unwrap().to_scalar::<f32>().unwrap());
    }

    #[test]
    fn strided_or_f64_inputs_take_the_composed_op() {
        let dev = Device::Cpu;
        let a = Tensor::new(&[[1.0f32, -2.0], [3.0, -4.0]], &dev).unwrap();
        let y = add_relu(&a.t().unwrap(), &a).unwrap();
        assert_eq!(y.to_vec2::<f32>().unwrap(), vec![vec![2.0, 1.0], vec![1.0, 0.0]]);
        let y = add_relu(&a.to_dtype(DType::F64).unwrap(), &a.to_dtype(DType::F64).unwrap()).unwrap();
        assert_eq!(y.to_vec2::<f64>().unwrap(), vec![vec![2.0, 0.0], vec![6.0, 0.0]]);
    }
}
