//! Selectors: the [`Selector`] trait, budgets, and one built-in per file.

mod base;
mod class_balanced;
mod random;
mod stratified;
mod top_k;

pub use base::{Budget, Direction, SelectContext, Selection, Selector};
pub use class_balanced::ClassBalanced;
pub use random::RandomSelector;
pub use stratified::Stratified;
pub use top_k::TopK;
