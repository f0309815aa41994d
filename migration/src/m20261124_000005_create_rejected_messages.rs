use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RejectedMessages {
    Table,
    Id,
    Topic,
    Payload,
    Reason,
    Detail,
    ReceivedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RejectedMessages::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(RejectedMessages::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(RejectedMessages::Topic).text().not_null())
                    .col(ColumnDef::new(RejectedMessages::Payload).blob().not_null())
                    .col(ColumnDef::new(RejectedMessages::Reason).string().not_null())
                    .col(ColumnDef::new(RejectedMessages::Detail).text().not_null())
                    .col(
                        ColumnDef::new(RejectedMessages::ReceivedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_rejected_messages_received_at")
                    .table(RejectedMessages::Table)
                    .col(RejectedMessages::ReceivedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RejectedMessages::Table).to_owned())
            .await
    }
}
