//! Headroom's HTTP service.
