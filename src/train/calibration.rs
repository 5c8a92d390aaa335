//! Choice of the calibration set that sets the quantisation ranges.
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// Direction of the prefrontal ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ranking {
    /// The k samples with the highest prefrontal Grad-CAM mass (the method as described).
    MostPrefrontal,
    /// The k samples with the lowest mass: what the published code does by accident (it sorts
    /// sigmoid(-mass) in descending order).
    LeastPrefrontal,
}

impl Ranking {
    pub fn name(self) -> &'static str {
        match self {
            Ranking::MostPrefrontal => "most-prefrontal",
            Ranking::LeastPrefrontal => "least-prefrontal",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CalibrationMethod {
    PrefrontalGradCam { k: usize, ranking: Ranking },
    Random { k: usize, seed: u64 },
    All,
}

impl CalibrationMethod {
    /// Contract name: "prefrontal-gradcam", "random", "all".
    pub fn name(&self) -> &'static str {
        match self {
            CalibrationMethod::PrefrontalGradCam { .. } => "prefrontal-gradcam",
            CalibrationMethod::Random { .. } => "random",
            CalibrationMethod::All => "all",
        }
    }

    /// Short label for reports, e.g. "prefrontal-most k=100".
    pub fn label(&self) -> String {
        match self {
            CalibrationMethod::PrefrontalGradCam { k, ranking } => {
                format!(
                    "prefrontal-{} k={k}",
                    ranking.name().trim_end_matches("-prefrontal")
                )
            }
            CalibrationMethod::Random { k, .. } => format!("random k={k}"),
            CalibrationMethod::All => "all".into(),
        }
    }

    /// Ranking name for the contract ("" when the method does not rank).
    pub fn ranking_name(&self) -> &'static str {
        match self {
            CalibrationMethod::PrefrontalGradCam { ranking, .. } => ranking.name(),
            _ => "",
        }
    }

    /// Indices into the training set. `prefrontal_mass[i]` is sample i's Grad-CAM mass over the
    /// region (only read by the prefrontal method). Ties keep the lower index first; k larger
    /// than the set takes everything.
    pub fn select(&self, n: usize, prefrontal_mass: &[f32]) -> Vec<usize> {
        match *self {
            CalibrationMethod::All => (0..n).collect(),
            CalibrationMethod::Random { k, seed } => {
                let mut idx: Vec<usize> = (0..n).collect();
                idx.shuffle(&mut StdRng::seed_from_u64(seed));
                idx.truncate(k.min(n));
                idx
            }
            CalibrationMethod::PrefrontalGradCam { k, ranking } => {
                let mut idx: Vec<usize> = (0..n).collect();
                idx.sort_by(|&a, &b| {
                    let order = prefrontal_mass[a].total_cmp(&prefrontal_mass[b]);
                    match ranking {
                        Ranking::MostPrefrontal => order.reverse(),
                        Ranking::LeastPrefrontal => order,
                    }
                    .then(a.cmp(&b))
                });
                idx.truncate(k.min(n));
                idx
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_prefrontal_picks_exactly_the_highest_masses() {
        // Masses are a permutation of 0..50 / 50: the top 10 are the ten indices holding
        // 40/50..49/50, known by construction.
        let mut masses: Vec<f32> = (0..50).map(|i| i as f32 / 50.0).collect();
        masses.shuffle(&mut StdRng::seed_from_u64(3));
        let expected_top: Vec<usize> = (40..50)
            .rev()
            .map(|v| masses.iter().position(|m| *m == v as f32 / 50.0).unwrap())
            .collect();
        let most = CalibrationMethod::PrefrontalGradCam {
            k: 10,
            ranking: Ranking::MostPrefrontal,
        }
        .select(50, &masses);
        assert_eq!(most, expected_top);
        let least = CalibrationMethod::PrefrontalGradCam {
            k: 10,
            ranking: Ranking::LeastPrefrontal,
        }
        .select(50, &masses);
        let expected_bottom: Vec<usize> = (0..10)
            .map(|v| masses.iter().position(|m| *m == v as f32 / 50.0).unwrap())
            .collect();
        assert_eq!(least, expected_bottom);
    }

    #[test]
    fn random_and_all_and_oversized_k() {
        let masses = vec![0.5f32; 20];
        let r = CalibrationMethod::Random { k: 5, seed: 1 }.select(20, &masses);
        assert_eq!(r.len(), 5);
        assert_eq!(
            r,
            CalibrationMethod::Random { k: 5, seed: 1 }.select(20, &masses)
        );
        let mut sorted = r.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 5);
        assert_eq!(
            CalibrationMethod::All.select(4, &masses[..4]),
            vec![0, 1, 2, 3]
        );
        let big = CalibrationMethod::PrefrontalGradCam {
            k: 100,
            ranking: Ranking::MostPrefrontal,
        };
        // Equal masses: index order.
        assert_eq!(big.select(3, &masses[..3]), vec![0, 1, 2]);
    }
}
