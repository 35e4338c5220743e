//! Integer export: packed codes (2- and 4-bit packed, wider one per byte), scales, offsets and
//! the configuration in a safetensors file written atomically, and the loader that validates
//! it. Also BatchNorm folding.

mod bn_fold;
mod file;
mod integer;
mod layer;
mod pack;

pub use bn_fold::fold_batch_norm;
pub use file::{ActivationGrid, FORMAT, IntegerExport, LayerExport, LayerKind};
pub use integer::IntegerTensor;
pub use layer::{export_conv2d, export_linear};
pub use pack::{codes_per_byte, pack_codes, packed_len, unpack_codes};
