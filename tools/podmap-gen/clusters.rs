//! The random embeddings of the podcasts without a real model: unit vectors scattered around
//! a few cluster centres, so that neighbours exist and search has something to find. Fast at
//! any dimension; the benchmarks use them.

use crate::rng::{mix, Rng};

/// Cluster centres per podcast.
const N_CLUSTERS: usize = 16;
/// Standard deviation of each coordinate's scatter around its centre (whose coordinates are
/// standard normal).
const NOISE: f64 = 0.8;

/// One of the clusters, at random: the theme of an episode, or of one of its items.
pub fn random_cluster(rng: &mut Rng) -> usize {
    rng.below(N_CLUSTERS as u64) as usize
}

/// Random unit vectors around `N_CLUSTERS` random centres, each a pure function of the seed,
/// the id it is made for and its cluster.
pub struct RandomEmbedder {
    dims: usize,
    seed: u64,
    centres: Vec<f64>,
}

impl RandomEmbedder {
    pub fn new(dims: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let centres = (0..dims * N_CLUSTERS).map(|_| rng.gauss()).collect();
        RandomEmbedder {
            dims,
            seed,
            centres,
        }
    }

    /// normalize(centre[cluster] + NOISE * noise), as f32.
    pub fn embed(&self, id: u64, cluster: usize) -> Vec<f32> {
        let mut rng = Rng::new(mix(self.seed, id));
        let centre = &self.centres[cluster * self.dims..(cluster + 1) * self.dims];
        let v: Vec<f64> = centre.iter().map(|c| c + NOISE * rng.gauss()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm == 0.0 {
            let mut out = vec![0.0f32; self.dims];
            out[0] = 1.0;
            return out;
        }
        v.iter().map(|x| (x / norm) as f32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_vectors() {
        let e = RandomEmbedder::new(64, 7);
        let v = e.embed(3, 5);
        let n: f64 = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        assert!((n - 1.0).abs() < 1e-5);
    }
}
