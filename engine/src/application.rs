//! A connection request as the workflow system sends it (`shared/spec/api.md`),
//! and its validation: every rule broken names its field.

use std::borrow::Cow;

use headroom_geodata::GenerationSource;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// Customer class of an application.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum CustomerClass {
    /// Factories.
    Industrial,
    /// Offices and shops.
    Commercial,
    /// Housing.
    Residential,
    /// Charging stations.
    EvCharging,
    /// Public services.
    Public,
    /// Anything else.
    Other,
}

/// How many independent supplies the customer needs (GB/T 29328).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Importance {
    /// One supply.
    #[default]
    Normal,
    /// Two circuits from different busbar sections.
    Important,
    /// Two independent sources: different substations.
    Critical,
}

/// What a connection request connects (`shared/spec/planning.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ApplicationKind {
    /// A customer drawing power.
    #[default]
    Load,
    /// A generator exporting power: PV, wind, storage.
    Generation,
}

/// A validated connection request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Application {
    /// The workflow system's id.
    pub id: String,
    /// Load or generation.
    #[serde(default)]
    pub kind: ApplicationKind,
    /// For generation, what it generates from (default `pv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "pv"))]
    pub source: Option<GenerationSource>,
    /// Longitude, WGS84.
    pub lon: f64,
    /// Latitude, WGS84.
    pub lat: f64,
    /// Requested demand, kW; for generation, the export at the point of
    /// connection (kW, AC).
    pub demand_kw: f64,
    /// Power factor in (0, 1]: lagging for a load; for generation, below 1 the
    /// generator absorbs reactive power (which holds its voltage rise down).
    pub power_factor: f64,
    /// Supply voltage asked for, kV (`None`: decided from demand).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voltage_kv: Option<f64>,
    /// Customer class.
    pub customer_class: CustomerClass,
    /// Supplies needed.
    pub importance: Importance,
    /// 96 quarter-hour factors of `demand_kw` for a typical day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<Vec<f64>>,
    /// Search radius, metres.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_distance_m: Option<f64>,
    /// Hold this application to the N-1 checks whatever `engine.n1.mode`
    /// says (`shared/spec/planning.md` §2).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub n1: bool,
}

/// The largest demand an application may ask for, kW: 1 GW is a transmission
/// customer, and larger numbers only overflow the power flow.
pub const MAX_DEMAND_KW: f64 = 1_000_000.0;

/// Default power factor where a load application gives none.
pub const DEFAULT_POWER_FACTOR: f64 = 0.9;

/// Default power factor where a generation application gives none: inverters
/// export at unity unless the utility asks otherwise.
pub const DEFAULT_GENERATION_POWER_FACTOR: f64 = 1.0;

fn bad(field: &str, message: impl Into<String>) -> Error {
    Error::BadApplication {
        field: field.to_owned(),
        message: message.into(),
    }
}

fn number(obj: &serde_json::Map<String, Value>, field: &str) -> Result<Option<f64>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if v.is_finite() => Ok(Some(v)),
            _ => Err(bad(field, "must be a finite number")),
        },
        Some(other) => Err(bad(field, format!("must be a number, found {other}"))),
    }
}

fn required_number(obj: &serde_json::Map<String, Value>, field: &str) -> Result<f64> {
    number(obj, field)?.ok_or_else(|| bad(field, "is required"))
}

fn enum_value<T: for<'de> Deserialize<'de>>(
    obj: &serde_json::Map<String, Value>,
    field: &str,
    allowed: &str,
) -> Result<Option<T>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::String(s)) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|_| bad(field, format!("\"{s}\" is not one of {allowed}"))),
        Some(other) => Err(bad(
            field,
            format!("must be one of {allowed}, found {other}"),
        )),
    }
}

impl Application {
    /// Validates one application given as JSON.
    pub fn from_json(value: &Value) -> Result<Self> {
        let Value::Object(obj) = value else {
            return Err(bad("application", "must be a JSON object"));
        };
        let id = match obj.get("id") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => return Err(bad("id", "must be a non-empty string")),
            None => return Err(bad("id", "is required")),
        };
        let with_id = |e: Error| match e {
            Error::BadApplication { field, message } => Error::BadApplication {
                field,
                message: format!("{message} (application {id})"),
            },
            other => other,
        };
        Self::fields(obj, id.clone()).map_err(with_id)
    }

    fn fields(obj: &serde_json::Map<String, Value>, id: String) -> Result<Self> {
        let kind = enum_value(obj, "kind", "load, generation")?.unwrap_or_default();
        let source: Option<GenerationSource> =
            enum_value(obj, "source", "pv, wind, storage, other")?;
        let generation = kind == ApplicationKind::Generation;
        if source.is_some() && !generation {
            return Err(bad(
                "source",
                "applies to generation only; set \"kind\": \"generation\" for a generator",
            ));
        }
        let lon = required_number(obj, "lon")?;
        if !(-180.0..=180.0).contains(&lon) {
            return Err(bad("lon", format!("{lon} is outside [-180, 180]")));
        }
        let lat = required_number(obj, "lat")?;
        if !(-90.0..=90.0).contains(&lat) {
            return Err(bad("lat", format!("{lat} is outside [-90, 90]")));
        }
        let demand_kw = required_number(obj, "demand_kw")?;
        if demand_kw <= 0.0 {
            return Err(bad(
                "demand_kw",
                if generation {
                    format!(
                        "{demand_kw} must be greater than 0: for generation it is the export, kW (a generator's output is never negative)"
                    )
                } else {
                    format!("{demand_kw} must be greater than 0")
                },
            ));
        }
        if demand_kw > MAX_DEMAND_KW {
            return Err(bad(
                "demand_kw",
                format!("{demand_kw} is above {MAX_DEMAND_KW} kW: not a distribution connection"),
            ));
        }
        let power_factor = number(obj, "power_factor")?.unwrap_or(if generation {
            DEFAULT_GENERATION_POWER_FACTOR
        } else {
            DEFAULT_POWER_FACTOR
        });
        if !(power_factor > 0.0 && power_factor <= 1.0) {
            return Err(bad(
                "power_factor",
                format!("{power_factor} is outside (0, 1]"),
            ));
        }
        let voltage_kv = number(obj, "voltage_kv")?;
        if let Some(kv) = voltage_kv
            && kv <= 0.0
        {
            return Err(bad("voltage_kv", format!("{kv} must be greater than 0")));
        }
        let customer_class = enum_value(
            obj,
            "customer_class",
            "industrial, commercial, residential, ev_charging, public, other",
        )?
        .unwrap_or(CustomerClass::Other);
        let importance =
            enum_value(obj, "importance", "normal, important, critical")?.unwrap_or_default();
        if generation && importance != Importance::Normal {
            return Err(bad(
                "importance",
                "applies to loads only: a second supply keeps a customer supplied, and a generator needs none (omit it or give \"normal\")",
            ));
        }
        if generation && customer_class == CustomerClass::EvCharging {
            return Err(bad(
                "customer_class",
                "ev_charging is a load; a charging station that exports is a storage generator (\"source\": \"storage\")",
            ));
        }
        let profile = match obj.get("profile") {
            None | Some(Value::Null) => None,
            Some(Value::Array(values)) => {
                if values.len() != 96 {
                    return Err(bad(
                        "profile",
                        format!(
                            "has {} values; it must have 96 quarter-hour factors",
                            values.len()
                        ),
                    ));
                }
                let mut profile = Vec::with_capacity(96);
                for (i, v) in values.iter().enumerate() {
                    match v.as_f64() {
                        Some(f) if (0.0..=1.0).contains(&f) => profile.push(f),
                        _ => {
                            return Err(bad(
                                "profile",
                                format!("value {i} is {v}; each factor must be a number in [0, 1]"),
                            ));
                        }
                    }
                }
                Some(profile)
            }
            Some(other) => {
                return Err(bad(
                    "profile",
                    format!("must be an array of 96 numbers, found {other}"),
                ));
            }
        };
        let max_distance_m = number(obj, "max_distance_m")?;
        if let Some(d) = max_distance_m
            && d <= 0.0
        {
            return Err(bad("max_distance_m", format!("{d} must be greater than 0")));
        }
        let n1 = match obj.get("n1") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(bad("n1", format!("must be true or false, found {other}")));
            }
        };
        if n1 && generation {
            return Err(bad(
                "n1",
                "applies to loads only: N-1 asks whether a feeder can hand its load to a neighbour, which a generator does not add to",
            ));
        }
        Ok(Self {
            id,
            kind,
            source: source.or(generation.then_some(GenerationSource::Pv)),
            lon,
            lat,
            demand_kw,
            power_factor,
            voltage_kv,
            customer_class,
            importance,
            profile,
            max_distance_m,
            n1,
        })
    }

    /// Validates a JSON array of applications (an applications file).
    pub fn list_from_json(value: &Value) -> Result<Vec<Self>> {
        match value {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    Self::from_json(v).map_err(|e| match e {
                        Error::BadApplication { field, message } => Error::BadApplication {
                            field: format!("[{i}].{field}"),
                            message,
                        },
                        other => other,
                    })
                })
                .collect(),
            Value::Object(_) => Ok(vec![Self::from_json(value)?]),
            _ => Err(bad("applications", "must be a JSON array of applications")),
        }
    }

    /// The load factor at quarter-hour `q` of the day (1 without a profile).
    pub fn profile_factor(&self, quarter_of_day: usize) -> f64 {
        self.profile
            .as_ref()
            .map_or(1.0, |p| p[quarter_of_day % 96])
    }

    /// Whether the application is for a generator.
    pub fn is_generation(&self) -> bool {
        self.kind == ApplicationKind::Generation
    }

    /// The 96 quarter-hour factors the request is judged at, `None` for flat:
    /// its own profile, else for generation its source's default (PV follows
    /// the sun, `shared/spec/planning.md`).
    pub fn judged_profile(&self) -> Option<Cow<'_, [f64]>> {
        match (&self.profile, self.kind, self.source) {
            (Some(p), _, _) => Some(Cow::Borrowed(p)),
            (None, ApplicationKind::Generation, Some(source)) => source
                .default_shape()
                .map(|shape| Cow::Borrowed(shape.as_slice())),
            _ => None,
        }
    }
}
