//! Reading stored telemetry back in `seq` order, in the same form the hub broadcasts: for
//! resuming a stream (`since=`), for snapshots (`snapshot=latest`) and for REST history.

use std::collections::BTreeSet;

use entity::{vehicle, vehicle_log};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::tables::{for_table, MessageTable};
use crate::domain::{MessageType, StoredMessage, MAX_TOPIC_VEHICLE_ID};

/// Which stored messages to read.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// `None`: every vehicle.
    pub vehicles: Option<BTreeSet<i64>>,
    pub types: BTreeSet<MessageType>,
    /// Only messages with a larger seq.
    pub after_seq: i64,
    /// Only messages with this seq or a smaller one.
    pub up_to_seq: Option<i64>,
}

/// Up to `limit` messages matching `sel`, in seq order.
pub async fn messages_after(
    db: &DatabaseConnection,
    sel: &Selection,
    limit: u64,
) -> Result<Vec<StoredMessage>, DbErr> {
    let mut out = Vec::new();
    if sel.vehicles.as_ref().is_some_and(|v| v.is_empty()) {
        return Ok(out);
    }
    // The three tables are read by separate statements, at different moments. Bounding them all
    // by the cursor read first makes the page consistent: every row up to it is committed (the
    // cursor and its rows commit together), so no table can show rows past a gap in another.
    let up_to = match sel.up_to_seq {
        Some(up_to) => up_to,
        None => last_seq(db).await?,
    };
    let sel = &Selection {
        up_to_seq: Some(up_to),
        ..sel.clone()
    };
    // Each table gives its first `limit` in seq order; the first `limit` of the merge are right.
    for kind in &sel.types {
        out.extend(for_table!(*kind, rows_after(db, sel, limit))?);
    }
    out.sort_by_key(|m| m.seq);
    out.truncate(limit as usize);
    with_vehicle_codes(db, &mut out).await?;
    Ok(out)
}

/// Fills in `vehicle_code` (rows store only the vehicle id). Only vehicles registered by a code
/// have ids above [`MAX_TOPIC_VEHICLE_ID`], so most pages need no query at all.
pub async fn with_vehicle_codes(
    db: &impl sea_orm::ConnectionTrait,
    messages: &mut [StoredMessage],
) -> Result<(), DbErr> {
    let ids: BTreeSet<i64> = messages
        .iter()
        .map(|m| m.vehicle_id)
        .filter(|id| *id > MAX_TOPIC_VEHICLE_ID)
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let codes: std::collections::HashMap<i64, String> = vehicle::Entity::find()
        .select_only()
        .columns([vehicle::Column::Id, vehicle::Column::Code])
        .filter(vehicle::Column::Id.is_in(ids))
        .into_tuple::<(i64, Option<String>)>()
        .all(db)
        .await?
        .into_iter()
        .filter_map(|(id, code)| code.map(|c| (id, c)))
        .collect();
    for m in messages {
        m.vehicle_code = codes.get(&m.vehicle_id).cloned();
    }
    Ok(())
}

/// One table's first `limit` messages matching `sel`, in seq order.
async fn rows_after<E: MessageTable>(
    db: &DatabaseConnection,
    sel: &Selection,
    limit: u64,
) -> Result<Vec<StoredMessage>, DbErr> {
    let mut q = E::find().filter(E::SEQ.gt(sel.after_seq));
    if let Some(up_to) = sel.up_to_seq {
        q = q.filter(E::SEQ.lte(up_to));
    }
    if let Some(v) = &sel.vehicles {
        q = q.filter(E::VEHICLE_ID.is_in(v.iter().copied()));
    }
    let rows = q.order_by_asc(E::SEQ).limit(limit).all(db).await?;
    Ok(rows.into_iter().map(E::message).collect())
}

/// The latest vehicle_log of each vehicle (of `vehicles`, or all), in seq order.
pub async fn latest_vehicle_logs(
    db: &DatabaseConnection,
    vehicles: Option<&BTreeSet<i64>>,
) -> Result<Vec<StoredMessage>, DbErr> {
    let mut latest = vehicle_log::Entity::find()
        .select_only()
        .column_as(vehicle_log::Column::Seq.max(), "seq")
        .group_by(vehicle_log::Column::VehicleId);
    if let Some(v) = vehicles {
        latest = latest.filter(vehicle_log::Column::VehicleId.is_in(v.iter().copied()));
    }
    let seqs: Vec<i64> = latest
        .into_tuple::<Option<i64>>()
        .all(db)
        .await?
        .into_iter()
        .flatten()
        .collect();
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    let rows = vehicle_log::Entity::find()
        .filter(vehicle_log::Column::Seq.is_in(seqs))
        .order_by_asc(vehicle_log::Column::Seq)
        .all(db)
        .await?;
    let mut out: Vec<StoredMessage> = rows
        .into_iter()
        .map(<vehicle_log::Entity as MessageTable>::message)
        .collect();
    with_vehicle_codes(db, &mut out).await?;
    Ok(out)
}

/// The last seq handed out (0 before the first message).
pub async fn last_seq(db: &DatabaseConnection) -> Result<i64, DbErr> {
    Ok(entity::seq_cursor::Entity::find_by_id(1)
        .one(db)
        .await?
        .map_or(0, |c| c.value))
}
