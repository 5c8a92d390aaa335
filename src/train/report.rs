//! The training report: JSON (serde), a human summary, and an SVG with the confusion matrix of
//! the exported model and the mean Grad-CAM map on the 9x9 grid.
use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use super::calibration::CalibrationMethod;
use super::dataset::{Dataset, NUM_CLASSES};
use super::evaluate::Metrics;
use super::fit::{EpochStats, TrainOptions};
use crate::features::{GRID, GRID_CELLS};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSummary {
    pub description: String,
    pub sha256: String,
    pub train: usize,
    pub validation: usize,
    pub test: usize,
    pub train_class_counts: [usize; NUM_CLASSES],
    pub test_class_counts: [usize; NUM_CLASSES],
    pub filled_cells: Vec<usize>,
}

impl DatasetSummary {
    pub fn of(all: &Dataset, train: &Dataset, val: &Dataset, test: &Dataset) -> Self {
        DatasetSummary {
            description: all.description.clone(),
            sha256: all.sha256.clone(),
            train: train.len(),
            validation: val.len(),
            test: test.len(),
            train_class_counts: train.class_counts(),
            test_class_counts: test.class_counts(),
            filled_cells: all.filled_cells.clone(),
        }
    }
}

/// One calibration set's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationResult {
    pub label: String,
    pub method: CalibrationMethod,
    pub samples: usize,
    /// Mean prefrontal Grad-CAM mass of the chosen samples.
    pub mean_region_mass: f64,
    pub input_scale: f32,
    pub activation_scales: [f32; 5],
    /// Test metrics after calibration only.
    pub ptq: Metrics,
    /// Test metrics after QAT (when run).
    pub qat: Option<Metrics>,
    pub qat_seconds: Option<f64>,
    /// QAT epoch whose weights were kept (0: no epoch beat the calibrated starting point on
    /// validation, so the PTQ weights were kept).
    pub qat_best_epoch: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub dataset: DatasetSummary,
    pub fp32_options: TrainOptions,
    pub qat_options: TrainOptions,
    pub weight_bits: u32,
    pub range_estimator: String,
    pub fp32_history: Vec<EpochStats>,
    pub fp32_best_epoch: usize,
    pub fp32_seconds: f64,
    pub fp32_test: Metrics,
    pub gradcam_seconds: f64,
    pub region_cells: Vec<usize>,
    /// Mean normalised Grad-CAM map over the training set (81 values, row-major).
    pub mean_cam: Vec<f32>,
    pub mean_region_mass: f64,
    pub calibrations: Vec<CalibrationResult>,
    /// Label of the exported configuration.
    pub chosen: String,
    pub chosen_test: Metrics,
    pub total_seconds: f64,
}

impl TrainReport {
    /// Plain-text summary for the terminal and summary.txt.
    pub fn summary(&self) -> String {
        let d = &self.dataset;
        let pct = |m: &Metrics| format!("{:5.1}%", 100.0 * m.accuracy);
        let mut s = format!(
            "data: {}\n  train {} / validation {} / test {} samples; sha256 {}\n",
            d.description, d.train, d.validation, d.test, d.sha256
        );
        s += &format!(
            "fp32: {} epochs (best {}), {:.1} s; test accuracy {} macro-F1 {:.3}\n",
            self.fp32_history.len(),
            self.fp32_best_epoch,
            self.fp32_seconds,
            pct(&self.fp32_test),
            self.fp32_test.macro_f1
        );
        s += &format!(
            "Grad-CAM: {:.1} s; mean prefrontal mass {:.3} over cells {:?}\n",
            self.gradcam_seconds, self.mean_region_mass, self.region_cells
        );
        s += &format!(
            "int8 ({}-bit weights, {} ranges), test accuracy:\n  {:<26} {:>5} {:>7} {:>7} {:>8} {:>9}\n",
            self.weight_bits, self.range_estimator, "calibration set", "n", "mass", "PTQ", "QAT", "QAT kept"
        );
        for c in &self.calibrations {
            s += &format!(
                "  {:<26} {:>5} {:>7.3} {:>7} {:>8} {:>9}\n",
                c.label,
                c.samples,
                c.mean_region_mass,
                pct(&c.ptq),
                c.qat.as_ref().map(pct).unwrap_or_else(|| "-".into()),
                c.qat_best_epoch
                    .map(|e| format!("epoch {e}"))
                    .unwrap_or_else(|| "-".into())
            );
        }
        s += &format!(
            "exported: {}: test accuracy {} macro-F1 {:.3}; total {:.1} s\n",
            self.chosen,
            pct(&self.chosen_test),
            self.chosen_test.macro_f1,
            self.total_seconds
        );
        s
    }

    /// report.json, summary.txt and report.svg in `dir` (created if missing).
    pub fn write_all(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(self)?)?;
        std::fs::write(dir.join("summary.txt"), self.summary())?;
        self.write_svg(&dir.join("report.svg"))
    }

    /// Confusion matrix (left) and mean Grad-CAM map on the grid with the region outlined (right).
    pub fn write_svg(&self, path: &Path) -> anyhow::Result<()> {
        let draw = || -> Result<(), Box<dyn std::error::Error>> {
            let root = SVGBackend::new(path, (940, 470)).into_drawing_area();
            root.fill(&WHITE)?;
            let (left, right) = root.split_horizontally(470);
            let font = ("sans-serif", 15).into_font();
            let title = ("sans-serif", 18).into_font();

            let cm = &self.chosen_test.confusion;
            left.draw(&Text::new(
                format!("confusion (rows true, cols predicted): {}", self.chosen),
                (10, 10),
                title.clone(),
            ))?;
            let (x0, y0, cell) = (110, 80, 110);
            for (t, row) in cm.iter().enumerate() {
                let total = row.iter().sum::<usize>().max(1) as f64;
                for (p, count) in row.iter().enumerate() {
                    let share = *count as f64 / total;
                    let shade = (255.0 * (1.0 - 0.8 * share)) as u8;
                    let (x, y) = (x0 + p as i32 * cell, y0 + t as i32 * cell);
                    left.draw(&Rectangle::new(
                        [(x, y), (x + cell, y + cell)],
                        RGBColor(shade, shade, 255).filled(),
                    ))?;
                    left.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], BLACK))?;
                    left.draw(&Text::new(
                        format!("{count} ({:.0}%)", 100.0 * share),
                        (x + 12, y + cell / 2 - 8),
                        font.clone(),
                    ))?;
                }
                left.draw(&Text::new(
                    crate::CLASSES[t].to_string(),
                    (10, y0 + t as i32 * cell + cell / 2 - 8),
                    font.clone(),
                ))?;
                left.draw(&Text::new(
                    crate::CLASSES[t].to_string(),
                    (x0 + t as i32 * cell + 20, y0 - 25),
                    font.clone(),
                ))?;
            }

            right.draw(&Text::new(
                "mean Grad-CAM (training set); region outlined",
                (10, 10),
                title,
            ))?;
            let max = self
                .mean_cam
                .iter()
                .fold(0.0f32, |m, v| m.max(*v))
                .max(1e-12);
            let (x0, y0, cell) = (30, 50, 44);
            for c in 0..GRID_CELLS {
                let (r, col) = ((c / GRID) as i32, (c % GRID) as i32);
                let v = self.mean_cam.get(c).copied().unwrap_or(0.0) / max;
                let (x, y) = (x0 + col * cell, y0 + r * cell);
                let filled = self.dataset.filled_cells.contains(&c);
                let color = if filled {
                    RGBColor(255, (255.0 * (1.0 - v)) as u8, (255.0 * (1.0 - v)) as u8)
                } else {
                    RGBColor(225, 225, 225)
                };
                right.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    color.filled(),
                ))?;
                let border = if self.region_cells.contains(&c) {
                    ShapeStyle::from(&BLACK).stroke_width(3)
                } else {
                    ShapeStyle::from(&RGBColor(160, 160, 160)).stroke_width(1)
                };
                right.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], border))?;
            }
            root.present()?;
            Ok(())
        };
        draw().map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
    }
}
