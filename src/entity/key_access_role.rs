use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "key_access_roles")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub key_access_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub role_id: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(belongs_to = "super::role::Entity", from = "Column::RoleId", to = "super::role::Column::Id")]
    Role,
    #[sea_orm(
        belongs_to = "super::key_access::Entity",
        from = "Column::KeyAccessId",
        to = "super::key_access::Column::Id"
    )]
    Access,
}

impl Related<super::role::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Role.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

impl Related<super::key_access::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Access.def()
    }
}
