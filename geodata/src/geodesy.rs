//! Distances on the WGS84 ellipsoid.
//!
//! Connection searches measure hundreds of metres to a few kilometres. Over such
//! distances the ellipsoid is, to well under a millimetre, a plane scaled by the
//! local radii of curvature at the mid-latitude, which costs a few multiplications;
//! longer distances fall back to Karney's geodesic (`geo::Geodesic`).

use geo::{Distance, Geodesic, Point};

use crate::model::LonLat;

/// WGS84 semi-major axis, metres.
const A: f64 = 6_378_137.0;
/// WGS84 flattening.
const F: f64 = 1.0 / 298.257_223_563;
/// First eccentricity squared.
const E2: f64 = F * (2.0 - F);
/// Mean Earth radius, metres (for the spatial index's unit sphere).
pub const MEAN_EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Beyond this the local-plane formula gives way to the full geodesic.
const LOCAL_LIMIT_M: f64 = 20_000.0;

/// Geodesic distance between two positions, metres.
pub fn distance_m(a: LonLat, b: LonLat) -> f64 {
    let local = local_distance_m(a, b);
    if local <= LOCAL_LIMIT_M {
        local
    } else {
        Geodesic.distance(Point::new(a.lon, a.lat), Point::new(b.lon, b.lat))
    }
}

fn local_distance_m(a: LonLat, b: LonLat) -> f64 {
    let phi = ((a.lat + b.lat) * 0.5).to_radians();
    local_distance_with_mid_latitude(a, b, phi.sin(), phi.cos())
}

/// The local-plane distance given the sine and cosine of the mid-latitude.
#[inline]
fn local_distance_with_mid_latitude(a: LonLat, b: LonLat, sin: f64, cos: f64) -> f64 {
    let w2 = 1.0 - E2 * sin * sin;
    let w = w2.sqrt();
    let prime_vertical = A / w;
    let meridian = A * (1.0 - E2) / (w2 * w);
    let mut dlon = b.lon - a.lon;
    if dlon > 180.0 {
        dlon -= 360.0;
    } else if dlon < -180.0 {
        dlon += 360.0;
    }
    let east = prime_vertical * cos * dlon.to_radians();
    let north = meridian * (b.lat - a.lat).to_radians();
    (east * east + north * north).sqrt()
}

/// A position prepared for many distance computations: the sine and cosine of half
/// its latitude give the mid-latitude of any pair by the angle-sum identities, so a
/// distance costs no trigonometric call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prepared {
    /// The position.
    pub position: LonLat,
    sin_half_lat: f64,
    cos_half_lat: f64,
}

impl Prepared {
    /// Prepares a position.
    pub fn new(position: LonLat) -> Self {
        let half = (position.lat * 0.5).to_radians();
        Self {
            position,
            sin_half_lat: half.sin(),
            cos_half_lat: half.cos(),
        }
    }

    /// Geodesic distance to another prepared position, metres; equal to
    /// [`distance_m`] up to rounding.
    #[inline]
    pub fn distance_m(&self, other: &Prepared) -> f64 {
        let sin = self.sin_half_lat * other.cos_half_lat + self.cos_half_lat * other.sin_half_lat;
        let cos = self.cos_half_lat * other.cos_half_lat - self.sin_half_lat * other.sin_half_lat;
        let local = local_distance_with_mid_latitude(self.position, other.position, sin, cos);
        if local <= LOCAL_LIMIT_M {
            local
        } else {
            distance_m(self.position, other.position)
        }
    }
}

/// Distances from one point to many, for spatial queries.
///
/// The radii of curvature are taken at the query's latitude rather than at each
/// pair's mid-latitude, which saves a square root and a division per point. Over a
/// distance `d` at latitude difference `dphi` that changes the result by about
/// `d * dphi / 100`: 3 mm at 2 km, 0.3 m at 20 km. [`QueryMetric::within`] decides
/// points that close to the radius with the exact formula.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QueryMetric {
    from: Prepared,
    east_m_per_rad: f64,
    north_m_per_rad: f64,
}

impl QueryMetric {
    /// Distances from `from`.
    pub fn new(from: LonLat) -> Self {
        let phi = from.lat.to_radians();
        let sin = phi.sin();
        let w2 = 1.0 - E2 * sin * sin;
        let w = w2.sqrt();
        Self {
            from: Prepared::new(from),
            east_m_per_rad: A / w,
            north_m_per_rad: A * (1.0 - E2) / (w2 * w),
        }
    }

    /// Approximate distance to `to`, metres (see the type's docs for the error).
    #[inline]
    pub fn distance_m(&self, to: &Prepared) -> f64 {
        let (a, b) = (&self.from, to);
        let cos_mid = a.cos_half_lat * b.cos_half_lat - a.sin_half_lat * b.sin_half_lat;
        let mut dlon = b.position.lon - a.position.lon;
        if dlon.abs() > 180.0 {
            dlon -= 360.0 * dlon.signum();
        }
        let east = self.east_m_per_rad * cos_mid * dlon.to_radians();
        let north = self.north_m_per_rad * (b.position.lat - a.position.lat).to_radians();
        let local = (east * east + north * north).sqrt();
        if local <= LOCAL_LIMIT_M {
            local
        } else {
            distance_m(a.position, b.position)
        }
    }

    /// The distance to `to` when it is at most `radius_m`, decided exactly.
    #[inline]
    pub fn within(&self, to: &Prepared, radius_m: f64) -> Option<f64> {
        let d = self.distance_m(to);
        if (d - radius_m).abs() <= 2e-5 * radius_m + 0.01 {
            let exact = self.from.distance_m(to);
            return (exact <= radius_m).then_some(exact);
        }
        (d <= radius_m).then_some(d)
    }
}

/// A position on a sphere of the mean Earth radius, metres from the centre. Chord
/// length between such points grows monotonically with the distance along the
/// surface, so a 3-d index over them answers radius queries anywhere on Earth.
pub fn to_sphere(p: LonLat) -> [f64; 3] {
    let (lat, lon) = (p.lat.to_radians(), p.lon.to_radians());
    let r = MEAN_EARTH_RADIUS_M;
    [
        r * lat.cos() * lon.cos(),
        r * lat.cos() * lon.sin(),
        r * lat.sin(),
    ]
}

/// The chord on the mean sphere that spans a surface distance, metres.
pub fn chord_for_distance_m(distance_m: f64) -> f64 {
    let half_angle = (distance_m / (2.0 * MEAN_EARTH_RADIUS_M)).min(std::f64::consts::FRAC_PI_2);
    2.0 * MEAN_EARTH_RADIUS_M * half_angle.sin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_formula_matches_karney_geodesic_within_a_millimetre() {
        let origins = [
            LonLat::new(11.812, 53.4247),
            LonLat::new(117.21, 31.82),
            LonLat::new(-70.6, -33.4),
            LonLat::new(179.99, 0.0),
        ];
        for origin in origins {
            for (dx, dy) in [
                (0.01, 0.0),
                (0.0, 0.01),
                (0.02, -0.015),
                (-0.05, 0.04),
                (0.02, 0.0),
            ] {
                let other = LonLat::new(origin.lon + dx, origin.lat + dy);
                let exact = Geodesic.distance(
                    Point::new(origin.lon, origin.lat),
                    Point::new(other.lon, other.lat),
                );
                let fast = distance_m(origin, other);
                assert!(
                    (exact - fast).abs() < 1e-3,
                    "{origin:?} -> {other:?}: {exact} vs {fast}"
                );
            }
        }
    }

    #[test]
    fn prepared_positions_give_the_same_distances() {
        let a = LonLat::new(11.812, 53.4247);
        for b in [
            LonLat::new(11.83, 53.41),
            LonLat::new(11.0, 53.0),
            LonLat::new(-11.0, -53.0),
        ] {
            let d = Prepared::new(a).distance_m(&Prepared::new(b));
            assert!((d - distance_m(a, b)).abs() < 1e-6 * d.max(1.0), "{d}");
        }
    }

    #[test]
    fn query_metric_is_within_millimetres_over_two_kilometres() {
        for origin in [
            LonLat::new(11.812, 53.4247),
            LonLat::new(117.21, 31.82),
            LonLat::new(20.0, -65.0),
        ] {
            let metric = QueryMetric::new(origin);
            for (dx, dy) in [(0.02, 0.0), (0.0, 0.018), (-0.015, 0.012), (0.01, -0.017)] {
                let other = LonLat::new(origin.lon + dx, origin.lat + dy);
                let exact = distance_m(origin, other);
                let fast = metric.distance_m(&Prepared::new(other));
                assert!(
                    exact < 2_500.0 && (exact - fast).abs() < 5e-3,
                    "{exact} vs {fast}"
                );
                let p = Prepared::new(other);
                // Decided exactly right at the radius, either side.
                assert!(
                    metric
                        .within(&p, exact + 1e-6)
                        .is_some_and(|d| (d - exact).abs() < 1e-6)
                );
                assert_eq!(metric.within(&p, exact - 1e-6), None);
            }
        }
    }

    #[test]
    fn long_distances_use_the_full_geodesic() {
        let a = LonLat::new(0.0, 0.0);
        let b = LonLat::new(1.0, 1.0);
        let exact = Geodesic.distance(Point::new(0.0, 0.0), Point::new(1.0, 1.0));
        assert_eq!(distance_m(a, b), exact);
    }

    #[test]
    fn chord_grows_with_distance() {
        let mut last = 0.0;
        for d in [1.0, 10.0, 1000.0, 1e5, 1e7] {
            let c = chord_for_distance_m(d);
            assert!(c > last && c <= d);
            last = c;
        }
    }
}
