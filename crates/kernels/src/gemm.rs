//! A safe, bounds-checked front to the `gemm` crate's single-threaded f32 kernel.
//!
//! Every convolution algorithm in this crate reduces to `C (+)= A·B` on row/column-strided
//! views of slices; this module is the only place that calls into `gemm`'s raw-pointer API.

/// A read-only strided matrix view: element `(r, c)` is `data[r * rs + c * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows × cols` matrix with row stride `cols`.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols, 1)
    }

    /// A view with explicit strides (in elements).
    pub fn strided(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// Rows of the view.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns of the view.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Whether consecutive columns are adjacent (`cs == 1`).
    pub(crate) fn has_unit_column_stride(&self) -> bool {
        self.cs == 1
    }

    /// Element `(r, c)`.
    ///
    /// # Panics
    /// When `(r, c)` lies outside the slice.
    pub(crate) fn at(&self, r: usize, c: usize) -> f32 {
        self.data[r * self.rs + c * self.cs]
    }

    /// `len` values of row `r` from column `c0`, where columns are adjacent.
    ///
    /// # Panics
    /// When the column stride is not 1 or the values lie outside the slice.
    pub(crate) fn row_part(&self, r: usize, c0: usize, len: usize) -> &'a [f32] {
        assert_eq!(self.cs, 1, "row_part: columns are not adjacent");
        let start = r * self.rs + c0;
        &self.data[start..start + len]
    }

    fn last_index(&self) -> Option<usize> {
        if self.rows == 0 || self.cols == 0 {
            return None;
        }
        Some((self.rows - 1) * self.rs + (self.cols - 1) * self.cs)
    }
}

/// `dst (+)= a · b` where `dst` is row-major `a.rows × b.cols` with row stride `dst_rs`.
///
/// With `accumulate`, the product is added to `dst`; otherwise `dst` is overwritten.
/// Runs on the calling thread: callers parallelise over images or channels.
///
/// # Panics
/// When the shapes disagree or a view reaches past its slice (a bug in this crate, never
/// reachable from user input: the convolution front validates shapes first).
pub fn matmul(dst: &mut [f32], dst_rs: usize, a: MatRef<'_>, b: MatRef<'_>, accumulate: bool) {
    assert_eq!(a.cols, b.rows, "gemm: inner dimensions differ");
    let (m, n, k) = (a.rows, b.cols, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst_rs >= n, "gemm: destination row stride too small");
    assert!((m - 1) * dst_rs + n <= dst.len(), "gemm: destination too small");
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_rs..r * dst_rs + n].fill(0.0);
            }
        }
        return;
    }
    for v in [&a, &b] {
        let last = v.last_index().unwrap_or(0);
        assert!(last < v.data.len(), "gemm: operand view out of bounds");
    }
    // SAFETY: the asserts above keep every index the kernel touches — `dst[r*dst_rs + c]`
    // for r < m, c < n, and the two operands' `(r, c)` within their dims — inside the
    // slices, which are borrowed for the duration of the call (`dst` exclusively).
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_product_matches_hand_computation() {
        // [1 2 3; 4 5 6] · [1 0; 0 1; 1 1] = [4 5; 10 11]
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let mut c = [0.0f32; 4];
        matmul(
            &mut c,
            2,
            MatRef::row_major(&a, 2, 3),
            MatRef::row_major(&b, 3, 2),
            false,
        );
        assert_eq!(c, [4.0, 5.0, 10.0, 11.0]);
        matmul(
            &mut c,
            2,
            MatRef::row_major(&a, 2, 3),
            MatRef::row_major(&b, 3, 2),
            true,
        );
        assert_eq!(c, [8.0, 10.0, 20.0, 22.0]);
    }

    #[test]
    fn transposed_views_and_row_stride() {
        // aᵀ·a for a = [1 2; 3 4] is [10 14; 14 20]; dst has a padded row stride of 3.
        let a = [1.0, 2.0, 3.0, 4.0];
        let mut c = [-1.0f32; 5];
        let v = MatRef::row_major(&a, 2, 2);
        matmul(&mut c, 3, v.t(), v, false);
        assert_eq!(c, [10.0, 14.0, -1.0, 14.0, 20.0]);
    }

    #[test]
    fn empty_inner_dimension_zeroes_or_keeps() {
        let mut c = [5.0f32; 4];
        matmul(
            &mut c,
            2,
            MatRef::row_major(&[], 2, 0),
            MatRef::row_major(&[], 0, 2),
            true,
        );
        assert_eq!(c, [5.0; 4]);
        matmul(
            &mut c,
            2,
            MatRef::row_major(&[], 2, 0),
            MatRef::row_major(&[], 0, 2),
            false,
        );
        assert_eq!(c, [0.0; 4]);
    }
}
