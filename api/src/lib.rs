//! The HTTP face of Headroom (filled by the HTTP service issue): the axum router of
//! the workflow API (`shared/spec/api.md`), bearer-token authentication by role, the
//! OpenAPI document, and the capacity-map page whose sources live in `api/web/`.
