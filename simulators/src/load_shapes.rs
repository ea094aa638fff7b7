//! Typical daily load shapes per customer class, 96 quarter-hours, peak 1.0.
//!
//! Shapes are piecewise-linear through hourly anchor values drawn from published
//! distribution-network load curves of their class: residential peaks in the
//! evening, commercial through office hours, industrial over the day shift.

/// A customer class of a synthetic transformer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CustomerClass {
    /// Housing: evening peak, higher at weekends in the day.
    Residential,
    /// Offices and shops: office-hours plateau, lower at weekends.
    Commercial,
    /// Factories: day shift with a lunch dip, much lower at weekends.
    Industrial,
}

impl CustomerClass {
    /// Every class.
    pub const ALL: [CustomerClass; 3] = [
        CustomerClass::Residential,
        CustomerClass::Commercial,
        CustomerClass::Industrial,
    ];

    fn anchors(self, weekend: bool) -> [f64; 25] {
        use CustomerClass::*;
        match (self, weekend) {
            (Residential, false) => [
                0.45, 0.38, 0.34, 0.32, 0.32, 0.35, 0.45, 0.62, 0.64, 0.55, 0.50, 0.52, 0.58, 0.54,
                0.50, 0.50, 0.55, 0.66, 0.82, 0.95, 1.00, 0.97, 0.85, 0.65, 0.45,
            ],
            (Residential, true) => [
                0.48, 0.40, 0.35, 0.33, 0.32, 0.33, 0.38, 0.50, 0.62, 0.68, 0.70, 0.72, 0.75, 0.70,
                0.65, 0.63, 0.66, 0.74, 0.86, 0.96, 1.00, 0.96, 0.86, 0.68, 0.48,
            ],
            (Commercial, false) => [
                0.30, 0.28, 0.27, 0.27, 0.27, 0.29, 0.34, 0.48, 0.72, 0.90, 0.97, 1.00, 0.95, 0.93,
                0.98, 1.00, 0.97, 0.92, 0.82, 0.70, 0.60, 0.50, 0.40, 0.34, 0.30,
            ],
            (Commercial, true) => [
                0.30, 0.28, 0.27, 0.27, 0.27, 0.28, 0.30, 0.38, 0.52, 0.64, 0.70, 0.73, 0.72, 0.70,
                0.72, 0.73, 0.70, 0.66, 0.60, 0.54, 0.48, 0.42, 0.36, 0.32, 0.30,
            ],
            (Industrial, false) => [
                0.42, 0.40, 0.40, 0.40, 0.41, 0.45, 0.60, 0.85, 0.97, 1.00, 1.00, 0.95, 0.78, 0.90,
                0.99, 1.00, 0.97, 0.88, 0.70, 0.58, 0.52, 0.48, 0.45, 0.43, 0.42,
            ],
            (Industrial, true) => [
                0.38, 0.37, 0.36, 0.36, 0.36, 0.37, 0.40, 0.46, 0.52, 0.55, 0.55, 0.54, 0.50, 0.52,
                0.54, 0.54, 0.52, 0.48, 0.44, 0.42, 0.40, 0.39, 0.38, 0.38, 0.38,
            ],
        }
    }

    /// The 96-point shape of a weekday or a weekend day.
    pub fn shape(self, weekend: bool) -> [f64; 96] {
        let anchors = self.anchors(weekend);
        std::array::from_fn(|q| {
            let hour = q / 4;
            let frac = (q % 4) as f64 / 4.0;
            anchors[hour] * (1.0 - frac) + anchors[hour + 1] * frac
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_peak_at_one_and_stay_positive() {
        for class in CustomerClass::ALL {
            for weekend in [false, true] {
                let s = class.shape(weekend);
                let max = s.iter().copied().fold(f64::MIN, f64::max);
                let min = s.iter().copied().fold(f64::MAX, f64::min);
                assert!(min > 0.2, "{class:?} {weekend}");
                assert!(max <= 1.0 && max > 0.5, "{class:?} {weekend}");
            }
        }
        let res = CustomerClass::Residential.shape(false);
        let peak = res
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert!(
            (72..=88).contains(&peak),
            "residential peaks in the evening, at {peak}"
        );
    }
}
