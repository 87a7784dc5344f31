//! Times the state keeps as nanoseconds since the epoch, written as RFC
//! 3339 (as events write them) wherever the state is shown or
//! snapshotted; read back from either form.

pub mod rfc3339 {
    use ledger::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Nanos(u64),
        Text(String),
    }

    fn read<'de, D: Deserializer<'de>>(v: Either) -> Result<u64, D::Error> {
        match v {
            Either::Nanos(n) => Ok(n),
            Either::Text(t) => Timestamp::parse_rfc3339(&t)
                .map(Timestamp::as_nanos)
                .map_err(serde::de::Error::custom),
        }
    }

    pub fn serialize<S: Serializer>(nanos: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&Timestamp::from_nanos(*nanos))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        read::<D>(Either::deserialize(d)?)
    }

    /// The same for an optional time.
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(nanos: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
            match nanos {
                Some(n) => s.collect_str(&Timestamp::from_nanos(*n)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
            Option::<Either>::deserialize(d)?.map(read::<D>).transpose()
        }
    }
}
