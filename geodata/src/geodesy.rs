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
    let sin = phi.sin();
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
    let east = prime_vertical * phi.cos() * dlon.to_radians();
    let north = meridian * (b.lat - a.lat).to_radians();
    east.hypot(north)
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
