//! The README's main command (until the quickstart lands): build a 2-bit `QConv2d` + `QLinear`,
//! calibrate, train weights and LSQ step sizes for a few steps on seeded synthetic data,
//! export integer codes to safetensors, load them back and check the dequantized export
//! against the fake-quant forward bit for bit.
//!
//! `cargo run --release --example qat_export [-- OUT_DIR]` (default `runs/qat_export`).

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Conv2dConfig, Optimizer, VarMap};
use quarc::quant_core::export::{IntegerExport, export_conv2d, export_linear};
use quarc::quant_core::{LayerPosition, ParamStore, QConv2d, QLinear, QatConfig, check_gradients};

/// SplitMix64: a seeded, portable stream for the synthetic data and initial weights.
struct Rng(u64);
impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    }
    fn tensor(&mut self, shape: &[usize], lo: f32, hi: f32, dev: &Device) -> candle_core::Result<Tensor> {
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| lo + (hi - lo) * self.next_f32()).collect();
        Tensor::from_vec(v, shape, dev)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    quarc_harness::init_logging(); // RUST_LOG=info|debug|trace prints the library's events
    let out_dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "runs/qat_export".into()));
    std::fs::create_dir_all(&out_dir)?;
    let dev = Device::Cpu;
    let mut rng = Rng(42);

    // Seeded full-precision weights, inserted before the layers are built (they pick them up).
    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().unwrap();
        let k = (1.0f32 / 27.0).sqrt();
        data.insert(
            "conv.weight".into(),
            Var::from_tensor(&rng.tensor(&[16, 3, 3, 3], -k, k, &dev)?)?,
        );
        data.insert("conv.bias".into(), Var::from_tensor(&rng.tensor(&[16], -k, k, &dev)?)?);
        let k = (1.0f32 / 16.0).sqrt();
        data.insert(
            "fc.weight".into(),
            Var::from_tensor(&rng.tensor(&[10, 16], -k, k, &dev)?)?,
        );
        data.insert("fc.bias".into(), Var::from_tensor(&rng.tensor(&[10], -k, k, &dev)?)?);
    }
    let store = ParamStore::new(&varmap, DType::F32, &dev);
    let qat = QatConfig::lsq(2, 2)?;
    let layer = qat.layer(LayerPosition::Middle);
    let conv = QConv2d::new(
        3,
        16,
        3,
        Conv2dConfig {
            padding: 1,
            stride: 2,
            ..Default::default()
        },
        true,
        &layer,
        &store.pp("conv"),
    )?;
    let fc = QLinear::new(16, 10, true, &layer, &store.pp("fc"))?;

    // A synthetic 10-class task: the label is the argmax of a fixed linear map of the image.
    let x = rng.tensor(&[256, 3, 16, 16], 0.0, 1.0, &dev)?;
    let proj = rng.tensor(&[3 * 16 * 16, 10], -1.0, 1.0, &dev)?;
    let y = x.flatten_from(1)?.matmul(&proj)?.argmax(1)?;
    let forward = |train: bool| -> Result<Tensor, Box<dyn std::error::Error>> {
        let h = conv.forward_t(&x, train)?.relu()?.mean((2, 3))?;
        Ok(fc.forward_t(&h, train)?)
    };

    // Calibrate before the first forward (LSQ init 2·mean|x|/√Qp), then train.
    conv.calibrate(&x)?;
    fc.calibrate(&conv.forward_t(&x, false)?.relu()?.mean((2, 3))?)?;
    let step_of = |name: &str| -> candle_core::Result<f32> {
        varmap.data().lock().unwrap()[name]
            .as_tensor()
            .to_vec1::<f32>()
            .map(|v| v[0])
    };
    println!(
        "W2A2 QConv2d(3→16) + QLinear(16→10), {} trainable tensors",
        varmap.all_vars().len()
    );
    println!(
        "step sizes after calibration: conv.wq {:.5}  conv.aq {:.5}",
        step_of("conv.wq.step")?,
        step_of("conv.aq.step")?
    );
    let mut opt = candle_nn::SGD::new(varmap.all_vars(), 0.05)?;
    for step in 0..30 {
        let loss = candle_nn::loss::cross_entropy(&forward(true)?, &y)?;
        let grads = loss.backward()?;
        check_gradients(&varmap, &grads)?;
        opt.step(&grads)?;
        if step % 10 == 0 || step == 29 {
            println!(
                "step {step:>2}  loss {:.4}  conv.wq.step {:.5}",
                loss.to_scalar::<f32>()?,
                step_of("conv.wq.step")?
            );
        }
    }

    // Integer export, atomically written, then loaded back.
    let path = out_dir.join("model.int.safetensors");
    let export = IntegerExport {
        layers: vec![export_conv2d("conv", &conv, None)?, export_linear("fc", &fc)?],
        config: Some(qat),
    };
    export.save(&path)?;
    let loaded = IntegerExport::load(&path)?;
    let mut exact = true;
    for (name, fake) in [
        ("conv", conv.quantized_weight(false)?),
        ("fc", fc.quantized_weight(false)?),
    ] {
        let w = loaded.layer(name).ok_or("missing layer")?.dequantized_weight(&dev)?;
        exact &= w.flatten_all()?.to_vec1::<f32>()? == fake.flatten_all()?.to_vec1::<f32>()?;
    }
    let h = conv.forward_t(&x, false)?.relu()?.mean((2, 3))?;
    let logits_export = loaded.layers[1].forward(&loaded.layers[0].forward(&x)?.relu()?.mean((2, 3))?)?;
    exact &=
        logits_export.flatten_all()?.to_vec1::<f32>()? == fc.forward_t(&h, false)?.flatten_all()?.to_vec1::<f32>()?;
    let acc = logits_export
        .argmax(1)?
        .eq(&y)?
        .to_dtype(DType::F32)?
        .mean_all()?
        .to_scalar::<f32>()?;
    let fp32_bytes = (16 * 27 + 16 + 160 + 10) * 4;
    println!(
        "exported {} ({} bytes; fp32 weights would be {fp32_bytes} bytes); train accuracy of the integer model {:.1}%",
        path.display(),
        std::fs::metadata(&path)?.len(),
        100.0 * acc
    );
    println!(
        "dequantized export == fake-quant forward, bit for bit: {}",
        if exact { "yes" } else { "NO" }
    );
    if !exact {
        return Err("export mismatch".into());
    }
    Ok(())
}
