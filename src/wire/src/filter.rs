//! What one client wants to receive: the `filter` of `connection` and `subscription_ack`
//! frames, and how `types=`, `subscribe` and `unsubscribe` change it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::MessageType;

/// A client's subscription: every vehicle (`all`) or a set of vehicles, and a set of types.
///
/// `/api/ws` starts with `all`; `/api/ws/vehicle/{id}` with `{id}`. `subscribe` with a vehicle
/// adds it, without one sets `all`; `unsubscribe` removes a vehicle, or clears `all`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Filter {
    /// Every vehicle.
    pub all: bool,
    /// Vehicles named by id (in addition to `all`).
    pub vehicles: BTreeSet<i64>,
    /// The message types received.
    pub types: BTreeSet<MessageType>,
}

impl Filter {
    pub fn all_vehicles(types: BTreeSet<MessageType>) -> Self {
        Filter {
            all: true,
            vehicles: BTreeSet::new(),
            types,
        }
    }

    pub fn vehicle(id: i64, types: BTreeSet<MessageType>) -> Self {
        Filter {
            all: false,
            vehicles: BTreeSet::from([id]),
            types,
        }
    }

    pub fn matches(&self, vehicle_id: i64, kind: MessageType) -> bool {
        self.types.contains(&kind) && (self.all || self.vehicles.contains(&vehicle_id))
    }

    pub fn apply(&mut self, change: FilterChange) {
        match change {
            FilterChange::Subscribe(Some(id)) => {
                self.vehicles.insert(id);
            }
            FilterChange::Subscribe(None) => self.all = true,
            FilterChange::Unsubscribe(Some(id)) => {
                self.vehicles.remove(&id);
            }
            FilterChange::Unsubscribe(None) => self.all = false,
        }
    }
}

/// A client's `subscribe` / `unsubscribe` request; `None` means "all vehicles".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterChange {
    Subscribe(Option<i64>),
    Unsubscribe(Option<i64>),
}

/// Parses `types=vehicle_log,sensor_log`; empty or absent means every type.
pub fn parse_types(param: Option<&str>) -> Result<BTreeSet<MessageType>, String> {
    let Some(param) = param.filter(|p| !p.trim().is_empty()) else {
        return Ok(MessageType::ALL.into_iter().collect());
    };
    param.split(',').map(|t| t.trim().parse()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use MessageType::*;

    #[test]
    fn subscribe_and_unsubscribe_change_the_vehicle_set() {
        let mut f = Filter::all_vehicles(parse_types(None).unwrap());
        assert!(f.matches(9, RawLog));
        f.apply(FilterChange::Subscribe(Some(7)));
        f.apply(FilterChange::Unsubscribe(None));
        assert!(f.matches(7, RawLog) && !f.matches(9, RawLog));
        f.apply(FilterChange::Unsubscribe(Some(7)));
        assert!(!f.matches(7, RawLog));
    }

    #[test]
    fn types_filter_parses_and_rejects_unknown_types() {
        let t = parse_types(Some("vehicle_log, sensor_log")).unwrap();
        assert_eq!(t, BTreeSet::from([VehicleLog, SensorLog]));
        assert!(!Filter::vehicle(1, t).matches(1, RawLog));
        assert!(parse_types(Some("vehicle_log,bogus")).is_err());
    }
}
