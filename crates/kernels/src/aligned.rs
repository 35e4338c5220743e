//! A zeroed `f32` buffer whose first value sits on a 64-byte boundary (one cache line, one
//! AVX-512 vector). The allocator only promises 16 bytes: a scratch buffer read as 16-float
//! vectors then starts at a random offset in its line, and every vector load straddles two lines
//! or none depending on where the allocation happened to land.

use std::ops::{Deref, DerefMut};

/// Floats per cache line.
const LINE: usize = 16;

/// `len` zeroed values starting at a 64-byte boundary.
#[derive(Default)]
pub(crate) struct Lines {
    data: Vec<f32>,
    start: usize,
    len: usize,
}

impl Lines {
    /// A buffer of `len` zeros.
    pub(crate) fn zeroed(len: usize) -> Self {
        let data = vec![0.0f32; len + LINE];
        // `align_offset` may decline (`usize::MAX`); the buffer is then merely unaligned
        let start = data.as_ptr().align_offset(LINE * 4).min(LINE);
        Self { data, start, len }
    }
}

impl Deref for Lines {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        &self.data[self.start..self.start + self.len]
    }
}

impl DerefMut for Lines {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.data[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_a_line_and_holds_zeros() {
        for len in [0, 1, 17, 100] {
            let mut b = Lines::zeroed(len);
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|v| *v == 0.0));
            if len > 0 {
                assert_eq!(b.as_ptr() as usize % 64, 0);
                b[len - 1] = 1.0;
                assert_eq!(b[len - 1], 1.0);
            }
        }
    }
}
