//! `seq_cursor`: a single row holding the last `seq` handed out.
//!
//! Writers reserve a block of seqs with one `UPDATE ... RETURNING` inside their commit
//! transaction, so seqs stay ordered and gap-free even with several writers.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "seq_cursor")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i32,
    pub value: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
