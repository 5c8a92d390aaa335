//! Grad-CAM of a class score w.r.t. conv3's activation, upsampled to the 9x9 grid, and the
//! share of it that falls on the prefrontal region.
//!
//! cam = relu(sum_c mean_hw(d score / d A_c) * A_c) on conv3's 4x4 output (after ReLU), then
//! upsampled to 9x9 bilinearly with the pooling geometry: 4x4 cell i covers grid rows 2i..2i+1,
//! so its centre sits at grid coordinate 2i + 0.5, and grid cell r samples the 4x4 map at
//! (r - 0.5) / 2 clamped to [0, 3] (row and column 8, dropped by the floor pooling, repeat the
//! edge). Each map is normalised to sum 1, so the prefrontal mass is the fraction of the
//! sample's class evidence located in the region (0 when the CAM is all zero).
use burn::module::Module;
use burn::tensor::{Tensor, TensorData};

use super::dataset::NUM_CLASSES;
use super::model::{cpu, input_tensor, to_vec, Cnn, CAM_SIDE};
use crate::features::{GRID, GRID_CELLS, INPUT_LEN};

/// Which class score to explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CamTarget {
    /// The model's predicted class (the method's default).
    Predicted,
    /// The labelled class.
    True,
}

/// Grad-CAM results for a set of samples.
#[derive(Debug, Clone, PartialEq)]
pub struct GradCam {
    /// N x 81 maps on the grid, each summing to 1 (or all 0).
    pub maps: Vec<f32>,
    /// Per sample, the sum of its map over the region cells.
    pub region_mass: Vec<f32>,
    /// The class each map explains.
    pub class: Vec<u8>,
}

impl GradCam {
    /// Mean map over all samples (81 values).
    pub fn mean_map(&self) -> Vec<f32> {
        let n = self.region_mass.len().max(1) as f32;
        let mut mean = vec![0.0f32; GRID_CELLS];
        for m in self.maps.chunks_exact(GRID_CELLS) {
            for (a, v) in mean.iter_mut().zip(m) {
                *a += v / n;
            }
        }
        mean
    }
}

/// Grad-CAM of every sample of `x` (normalised, N x INPUT_LEN). `y` is needed for
/// [`CamTarget::True`]. `region` lists grid cells (row * 9 + col).
pub fn grad_cam(
    model: &Cnn,
    x: &[f32],
    y: &[u8],
    target: CamTarget,
    region: &[usize],
    batch: usize,
) -> GradCam {
    let plain = model.valid();
    let device = cpu();
    let n = x.len() / INPUT_LEN;
    let mut out = GradCam {
        maps: Vec::with_capacity(n * GRID_CELLS),
        region_mass: Vec::with_capacity(n),
        class: Vec::with_capacity(n),
    };
    let batch = batch.max(1);
    for (b, chunk) in x.chunks(batch * INPUT_LEN).enumerate() {
        let bn = chunk.len() / INPUT_LEN;
        let a3 = plain.trunk(input_tensor(chunk, &device), None);
        // The activation as a gradient leaf; the head's weights stay constants.
        let leaf = a3.clone().autodiff().require_grad();
        let logits = plain.head(leaf.clone(), None, None);
        let classes: Vec<u8> = match target {
            CamTarget::Predicted => super::evaluate::predictions(&to_vec(logits.clone().inner())),
            CamTarget::True => y[b * batch..b * batch + bn].to_vec(),
        };
        let mut one_hot = vec![0.0f32; bn * NUM_CLASSES];
        for (i, c) in classes.iter().enumerate() {
            one_hot[i * NUM_CLASSES + *c as usize] = 1.0;
        }
        let mask: Tensor<2> =
            Tensor::from_data(TensorData::new(one_hot, [bn, NUM_CLASSES]), &leaf.device());
        let grads = (logits * mask).sum().backward();
        let grad = leaf
            .grad(&grads)
            .expect("the conv3 leaf has a gradient")
            .inner();
        let weights = grad.mean_dim(3).mean_dim(2); // [bn, 128, 1, 1]
        let cam = burn::tensor::activation::relu((a3 * weights).sum_dim(1)); // [bn, 1, 4, 4]
        let cam = to_vec(cam);
        for (i, small) in cam.chunks_exact(CAM_SIDE * CAM_SIDE).enumerate() {
            let map = normalise(upsample(small));
            out.region_mass.push(region.iter().map(|&c| map[c]).sum());
            out.maps.extend(map);
            out.class.push(classes[i]);
        }
    }
    out
}

/// 4x4 -> 9x9 with the pooling geometry (see the module docs).
fn upsample(small: &[f32]) -> Vec<f32> {
    let last = (CAM_SIDE - 1) as f32;
    let coord = |r: usize| ((r as f32 - 0.5) / 2.0).clamp(0.0, last);
    let mut out = vec![0.0f32; GRID_CELLS];
    for r in 0..GRID {
        let u = coord(r);
        let (r0, fr) = (u.floor() as usize, u.fract());
        let r1 = (r0 + 1).min(CAM_SIDE - 1);
        for c in 0..GRID {
            let v = coord(c);
            let (c0, fc) = (v.floor() as usize, v.fract());
            let c1 = (c0 + 1).min(CAM_SIDE - 1);
            let at = |i: usize, j: usize| small[i * CAM_SIDE + j];
            out[r * GRID + c] = (1.0 - fr) * ((1.0 - fc) * at(r0, c0) + fc * at(r0, c1))
                + fr * ((1.0 - fc) * at(r1, c0) + fc * at(r1, c1));
        }
    }
    out
}

fn normalise(mut map: Vec<f32>) -> Vec<f32> {
    let total: f32 = map.iter().sum();
    if total > 0.0 {
        map.iter_mut().for_each(|v| *v /= total);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::dataset::default_prefrontal_cells;

    #[test]
    fn upsampling_follows_the_pooling_geometry() {
        // A map that is 1 in the top-left 4x4 cell only: grid rows/cols 0-1 get weight 1 at
        // (0,0), (0,1), (1,0) and 0.75 * 0.75 style falloff beyond.
        let mut small = vec![0.0f32; 16];
        small[0] = 1.0;
        let up = upsample(&small);
        assert_eq!(up[0], 1.0); // (0,0) samples (0,0)
        assert!((up[1] - 0.75).abs() < 1e-6); // col 1 samples 0.25 -> 0.75
        assert!((up[GRID + 1] - 0.5625).abs() < 1e-6);
        assert!((up[2] - 0.25).abs() < 1e-6); // col 2 samples 0.75 -> 0.25
        assert_eq!(up[3], 0.0);
        // Row/column 8 repeat the last 4x4 row/column.
        let mut small = vec![0.0f32; 16];
        small[15] = 2.0;
        let up = upsample(&small);
        assert_eq!(up[8 * GRID + 8], 2.0);
        assert_eq!(up[7 * GRID + 7], 2.0);
    }

    #[test]
    fn cam_is_normalised_and_region_mass_is_its_share() {
        let model = Cnn::new(5, 0.0, &cpu());
        let x: Vec<f32> = (0..4 * INPUT_LEN)
            .map(|i| ((i * 37) % 17) as f32 / 8.0 - 1.0)
            .collect();
        let region = default_prefrontal_cells();
        let cam = grad_cam(&model, &x, &[0, 1, 2, 0], CamTarget::True, &region, 3);
        assert_eq!(cam.maps.len(), 4 * GRID_CELLS);
        assert_eq!(cam.class, vec![0, 1, 2, 0]);
        for (m, mass) in cam.maps.chunks_exact(GRID_CELLS).zip(&cam.region_mass) {
            let total: f32 = m.iter().sum();
            assert!(total == 0.0 || (total - 1.0).abs() < 1e-4);
            assert!(m.iter().all(|v| *v >= 0.0));
            let expect: f32 = region.iter().map(|&c| m[c]).sum();
            assert!((expect - mass).abs() < 1e-6);
        }
    }
}
