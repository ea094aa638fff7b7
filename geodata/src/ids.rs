//! Typed identifiers.
//!
//! Two families: the *ids* that the GIS and the gridpack use (plain strings, unique
//! across one network file), and dense *indices* into the [`Network`](crate::Network)'s
//! asset vectors, which the topology, the spatial index and the power flow use so
//! that hot loops never hash a string. A newtype per asset kind keeps a node index
//! from being used where a segment index is meant.

use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(Box<str>);

        impl $name {
            /// Wraps a GIS id.
            pub fn new(id: impl Into<Box<str>>) -> Self {
                Self(id.into())
            }

            /// The id as the gridpack spells it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self::new(id)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// Id of a substation.
    SubstationId
);
string_id!(
    /// Id of a substation (main) transformer.
    SubstationTransformerId
);
string_id!(
    /// Id of a network node: a busbar section, pole, ring-main unit and so on.
    NodeId
);
string_id!(
    /// Id of a line or cable segment.
    SegmentId
);
string_id!(
    /// Id of a switch (breaker, disconnector, tie or bus coupler).
    SwitchId
);
string_id!(
    /// Id of a medium-voltage feeder.
    FeederId
);
string_id!(
    /// Id of a distribution transformer.
    TransformerId
);
string_id!(
    /// Id of a generator (PV, wind, storage), connected or queued.
    GeneratorId
);

macro_rules! dense_index {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
        pub struct $name(pub u32);

        impl $name {
            /// The position in the network's vector of this kind.
            #[inline]
            pub const fn get(self) -> usize {
                self.0 as usize
            }

            /// The index of position `i`.
            ///
            /// # Panics
            /// When `i` does not fit in `u32`; a network that large would not fit in memory.
            #[inline]
            pub fn from_usize(i: usize) -> Self {
                Self(u32::try_from(i).expect("asset index exceeds u32"))
            }
        }
    };
}

dense_index!(
    /// Position of a substation in [`Network::substations`](crate::NetworkParts::substations).
    SubstationIx
);
dense_index!(
    /// Position in [`Network::substation_transformers`](crate::NetworkParts::substation_transformers).
    SubstationTransformerIx
);
dense_index!(
    /// Position of a node in [`Network::nodes`](crate::NetworkParts::nodes).
    NodeIx
);
dense_index!(
    /// Position of a segment in [`Network::segments`](crate::NetworkParts::segments).
    SegmentIx
);
dense_index!(
    /// Position of a switch in [`Network::switches`](crate::NetworkParts::switches).
    SwitchIx
);
dense_index!(
    /// Position of a feeder in [`Network::feeders`](crate::NetworkParts::feeders).
    FeederIx
);
dense_index!(
    /// Position in [`Network::transformers`](crate::NetworkParts::transformers).
    TransformerIx
);
dense_index!(
    /// Position in [`Network::generators`](crate::NetworkParts::generators).
    GeneratorIx
);
