//! `vehicle_logs`: vehicle state; known fields typed, anything else in `extra`.
//!
//! The typed columns are `seano_wire::vehicle_state_fields!`, expanded here: the model, the
//! row built from a [`VehicleState`] and the state rebuilt from a row all follow that one list.
//! (The migrations that created the columns are history and stay as they were written; a
//! field added to the list needs a new migration, and `tests/api/ingest.rs` checks that every
//! listed field round-trips through the database.)

use sea_orm::entity::prelude::*;
use sea_orm::ActiveValue::{NotSet, Set};
use seano_wire::VehicleState;
use serde::Serialize;

macro_rules! vehicle_log_entity {
    ( ; $( $(#[$doc:meta])* $name:ident : $ty:ident = $label:literal ),* $(,)? ) => {
        #[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
        #[sea_orm(table_name = "vehicle_logs")]
        pub struct Model {
            #[sea_orm(primary_key)]
            pub id: i64,
            #[sea_orm(unique)]
            pub seq: i64,
            pub vehicle_id: i64,
            $( $(#[$doc])* pub $name: Option<$ty>, )*
            /// Fields the vehicle sent that have no column of their own, as a JSON object.
            #[sea_orm(column_type = "JsonBinary")]
            pub extra: Json,
            pub timestamp: DateTimeUtc,
            pub received_at: DateTimeUtc,
            /// Hash of topic and payload; recognises a broker redelivery of a stored message.
            pub dedup_key: i64,
        }

        impl Model {
            /// The object the vehicle sent, rebuilt from the typed columns and `extra`: the
            /// same `data` the live frame carried.
            pub fn state(&self) -> VehicleState {
                VehicleState {
                    $( $name: self.$name.clone(), )*
                    extra: match &self.extra {
                        serde_json::Value::Object(m) => m.clone(),
                        _ => Default::default(),
                    },
                }
            }
        }

        impl ActiveModel {
            /// A new row (its id given by the database) holding `state`.
            pub fn from_state(
                seq: i64,
                vehicle_id: i64,
                state: &VehicleState,
                timestamp: DateTimeUtc,
                received_at: DateTimeUtc,
                dedup_key: i64,
            ) -> Self {
                ActiveModel {
                    id: NotSet,
                    seq: Set(seq),
                    vehicle_id: Set(vehicle_id),
                    $( $name: Set(state.$name.clone()), )*
                    extra: Set(serde_json::Value::Object(state.extra.clone())),
                    timestamp: Set(timestamp),
                    received_at: Set(received_at),
                    dedup_key: Set(dedup_key),
                }
            }
        }
    };
}

seano_wire::vehicle_state_fields!(vehicle_log_entity);

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
