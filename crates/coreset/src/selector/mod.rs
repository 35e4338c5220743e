//! Selectors: the [`Selector`] trait, budgets, and one built-in per file.

mod base;
mod class_balanced;
mod random;
mod rs2;
mod stratified;
mod top_k;

pub use base::{Budget, Direction, SelectContext, Selection, Selector};
pub use class_balanced::ClassBalanced;
pub use random::RandomSelector;
pub use rs2::Rs2;
pub use stratified::Stratified;
pub use top_k::TopK;
