//! Integer export: packing round trips, bit-exact reload of trained layers, corrupt files,
//! BatchNorm folding.

mod common;

use candle_core::{DType, Device, Module, ModuleT, Tensor};
use candle_nn::{Conv2dConfig, Optimizer, VarMap};
use common::{assert_same_values, rand_tensor};
use proptest::prelude::*;
use quarc_quant_core::export::*;
use quarc_quant_core::*;

proptest! {
    #[test]
    fn pack_unpack_round_trip(bits in 2u32..=8, codes in proptest::collection::vec(any::<u8>(), 0..100)) {
        let codes: Vec<u8> = codes.iter().map(|c| (u16::from(*c) % (1u16 << bits)) as u8).collect();
        let packed = pack_codes(&codes, bits).unwrap();
        prop_assert_eq!(packed.len(), packed_len(codes.len(), bits));
        prop_assert_eq!(unpack_codes(&packed, bits, codes.len()).unwrap(), codes);
    }
}

#[test]
fn packing_is_dense_for_2_and_4_bits() {
    assert_eq!(packed_len(10, 2), 3);
    assert_eq!(packed_len(10, 4), 5);
    assert_eq!(packed_len(10, 8), 10);
    assert_eq!(pack_codes(&[0xA, 0x5], 4).unwrap(), vec![0x5A]);
    assert!(pack_codes(&[4], 2).is_err());
    assert!(unpack_codes(&[0, 0], 2, 3).is_err());
}

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("quarc-export-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Builds a QConv2d and a QLinear, trains them a few steps, exports, reloads and compares.
fn trained_round_trip(w_cfg: QuantizerConfig, a_cfg: Option<QuantizerConfig>, tag: &str) {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let store = ParamStore::new(&varmap, DType::F32, &dev);
    let quant = LayerQuant {
        weight: w_cfg,
        activation: a_cfg,
    };
    let conv = QConv2d::new(
        3,
        6,
        3,
        Conv2dConfig {
            padding: 1,
            stride: 2,
            ..Default::default()
        },
        true,
        &quant,
        &store.pp("conv"),
    )
    .unwrap();
    let fc = QLinear::new(6, 4, true, &quant, &store.pp("fc")).unwrap();
    let x = rand_tensor(1, &[4, 3, 8, 8], 0.0, 1.0, DType::F32);
    conv.calibrate(&x).unwrap();
    let h = conv.forward_t(&x, false).unwrap().relu().unwrap().mean((2, 3)).unwrap();
    fc.calibrate(&h).unwrap();
    let mut opt = candle_nn::SGD::new(varmap.all_vars(), 0.05).unwrap();
    for _ in 0..3 {
        let h = conv.forward_t(&x, true).unwrap().relu().unwrap().mean((2, 3)).unwrap();
        let loss = fc.forward_t(&h, true).unwrap().sqr().unwrap().mean_all().unwrap();
        opt.backward_step(&loss).unwrap();
    }
    let path = temp(&format!("{tag}.safetensors"));
    let export = IntegerExport {
        layers: vec![
            export_conv2d("conv", &conv, None).unwrap(),
            export_linear("fc", &fc).unwrap(),
        ],
        config: Some(QatConfig::default()),
    };
    export.save(&path).unwrap();
    let loaded = IntegerExport::load(&path).unwrap();
    assert_eq!(loaded, export, "{tag}: file round trip");
    // Dequantized export == fake-quant forward, bit for bit: weights and whole layer outputs.
    let conv_e = loaded.layer("conv").unwrap();
    assert_same_values(
        &conv_e.dequantized_weight(&dev).unwrap(),
        &conv.quantized_weight(false).unwrap(),
        tag,
    );
    assert_same_values(&conv_e.forward(&x).unwrap(), &conv.forward_t(&x, false).unwrap(), tag);
    let h = conv.forward_t(&x, false).unwrap().relu().unwrap().mean((2, 3)).unwrap();
    let fc_e = loaded.layer("fc").unwrap();
    assert_same_values(&fc_e.forward(&h).unwrap(), &fc.forward_t(&h, false).unwrap(), tag);
    // Codes lie in range.
    for l in &loaded.layers {
        assert!(
            l.weight
                .codes
                .iter()
                .all(|&q| q >= l.weight.range.qn() && q <= l.weight.range.qp())
        );
    }
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn lsq_w2a2_round_trip_bit_exact() {
    trained_round_trip(
        QuantizerConfig::Lsq(LsqConfig::new(2, Signedness::Signed)),
        Some(QuantizerConfig::Lsq(LsqConfig::new(2, Signedness::Unsigned))),
        "lsq22",
    );
}

#[test]
fn lsq_w4_per_channel_and_int8_round_trip_bit_exact() {
    let per_channel = LsqConfig {
        granularity: Granularity::PerChannel { axis: 0 },
        ..LsqConfig::new(4, Signedness::Signed)
    };
    trained_round_trip(QuantizerConfig::Lsq(per_channel), None, "lsq4pc");
    trained_round_trip(
        QuantizerConfig::Uniform(UniformConfig {
            bits: 8,
            ..Default::default()
        }),
        Some(QuantizerConfig::Uniform(UniformConfig {
            bits: 8,
            signedness: Signedness::Unsigned,
            mode: Mode::Asymmetric,
            ..Default::default()
        })),
        "uniform8",
    );
    trained_round_trip(
        QuantizerConfig::LsqPlus(LsqPlusConfig {
            bits: 3,
            signedness: Signedness::Signed,
            ..Default::default()
        }),
        Some(QuantizerConfig::LsqPlus(LsqPlusConfig {
            bits: 4,
            ..Default::default()
        })),
        "lsqplus",
    );
}

#[test]
fn export_with_folded_batch_norm_matches_conv_then_bn() {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let store = ParamStore::new(&varmap, DType::F32, &dev);
    let quant = QatConfig::lsq(4, 4).unwrap().layer(LayerPosition::Middle);
    let conv = QConv2d::new(
        3,
        5,
        3,
        Conv2dConfig {
            padding: 1,
            ..Default::default()
        },
        false,
        &quant,
        &store.pp("c"),
    )
    .unwrap();
    let bn = candle_nn::BatchNorm::new(
        5,
        rand_tensor(2, &[5], -0.5, 0.5, DType::F32),
        rand_tensor(3, &[5], 0.5, 2.0, DType::F32),
        rand_tensor(4, &[5], 0.5, 1.5, DType::F32),
        rand_tensor(5, &[5], -0.5, 0.5, DType::F32),
        1e-5,
    )
    .unwrap();
    let x = rand_tensor(6, &[2, 3, 7, 7], 0.0, 1.0, DType::F32);
    conv.calibrate(&x).unwrap();
    let e = export_conv2d("c", &conv, Some(&bn)).unwrap();
    let reference = bn.forward_t(&conv.forward_t(&x, false).unwrap(), false).unwrap();
    let d = common::rel_diff(&e.forward(&x).unwrap(), &reference, 1e-6);
    assert!(d < 1e-5, "{d}");
    // The FP fold of the same conv matches conv + BN.
    let fp = candle_nn::Conv2d::new(conv.conv().weight().clone(), None, *conv.conv().config());
    let folded = fold_batch_norm(&fp, &bn).unwrap();
    let reference = bn.forward_t(&fp.forward(&x).unwrap(), false).unwrap();
    let d = common::rel_diff(&folded.forward(&x).unwrap(), &reference, 1e-6);
    assert!(d < 1e-5, "{d}");
    // Wrong channel count is a typed error.
    let bn3 = candle_nn::BatchNorm::new(
        3,
        Tensor::zeros(3, DType::F32, &dev).unwrap(),
        Tensor::ones(3, DType::F32, &dev).unwrap(),
        Tensor::ones(3, DType::F32, &dev).unwrap(),
        Tensor::zeros(3, DType::F32, &dev).unwrap(),
        1e-5,
    )
    .unwrap();
    assert!(matches!(fold_batch_norm(&fp, &bn3), Err(Error::ShapeMismatch { .. })));
}

#[test]
fn corrupt_and_missing_files_are_typed_errors() {
    // Its own folder: the other tests of this binary save into `temp`'s folder concurrently, and
    // their in-flight temp files must not count as leftovers of this one.
    let dir = temp("corrupt-and-missing");
    std::fs::create_dir_all(&dir).unwrap();
    let temp = |name: &str| dir.join(name);
    let missing = temp("does-not-exist.safetensors");
    assert!(matches!(IntegerExport::load(&missing), Err(Error::Io { .. })));
    let garbage = temp("garbage.safetensors");
    std::fs::write(&garbage, b"not a safetensors file at all").unwrap();
    assert!(matches!(
        IntegerExport::load(&garbage),
        Err(Error::CorruptExport { .. })
    ));
    // A valid safetensors file without our format tag.
    let plain = temp("plain.safetensors");
    Tensor::zeros(3, DType::F32, &Device::Cpu)
        .unwrap()
        .save_safetensors("t", &plain)
        .unwrap();
    assert!(matches!(IntegerExport::load(&plain), Err(Error::CorruptExport { .. })));
    // A truncated export.
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let store = ParamStore::new(&varmap, DType::F32, &dev);
    let fc = QLinear::new(
        4,
        2,
        false,
        &QatConfig::lsq(2, 2).unwrap().layer(LayerPosition::Middle),
        &store.pp("fc"),
    )
    .unwrap();
    fc.calibrate(&rand_tensor(1, &[3, 4], 0.0, 1.0, DType::F32)).unwrap();
    let good = temp("good.safetensors");
    IntegerExport {
        layers: vec![export_linear("fc", &fc).unwrap()],
        config: None,
    }
    .save(&good)
    .unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = temp("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
    assert!(matches!(IntegerExport::load(&cut), Err(Error::CorruptExport { .. })));
    // No temp files are left behind by the atomic writer.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty());
    // Exporting a full-precision layer is an error, not a silent no-op.
    let fp = QLinear::new(4, 2, false, &LayerQuant::full_precision(), &store.pp("fp")).unwrap();
    assert!(export_linear("fp", &fp).is_err());
}
