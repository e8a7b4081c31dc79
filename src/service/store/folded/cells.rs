//! A row of the statement `fold` wraps, read as the struct its folded row reads as: the same
//! `Column`s (found by alias on the first row), in the same order, each cell as its database gives
//! it — a rusqlite row read on the calling thread, or a PostgreSQL row as sqlx received it (binary
//! cells, no JSON built by the server or parsed here). A JSON column is parsed as the JSON it holds.
//! A PostgreSQL instant goes on as microseconds since the Unix epoch, which `Instant` reads beside
//! the text the folded JSON holds.
use sea_orm::sqlx::{
    self,
    postgres::{PgRow, PgValueFormat, PgValueRef},
    Column as _, Row as _, TypeInfo as _, ValueRef as _,
};
use std::sync::OnceLock;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, SeqAccess, Visitor};

use super::Column;

/// A row whose cells are read one at a time.
pub(super) trait Cells<'r>: Copy {
    type Cell: Deserializer<'r, Error = CellError>;
    /// Where the column named `alias` is.
    fn index_of(self, alias: &str) -> Result<usize, CellError>;
    /// The cell at `index`; `json` when its text is JSON.
    fn cell(self, index: usize, json: bool) -> Result<Self::Cell, CellError>;
}

/// Reads a row of a folded statement's inner query as a `T`, as `parse` reads a folded row: its
/// `columns`' cells in order (`at` remembers where each is, found by its alias in the first row
/// read: a statement's columns keep their places, so a `Folded` keeps them).
pub(super) fn from_row<'r, T: DeserializeOwned>(
    row: impl Cells<'r>,
    at: &OnceLock<Vec<usize>>,
    columns: &[Column],
) -> Result<T, CellError> {
    let at = match at.get() {
        Some(at) => at,
        None => {
            let found = columns.iter().map(|c| row.index_of(&c.alias)).collect::<Result<_, _>>()?;
            at.get_or_init(|| found)
        }
    };
    T::deserialize(RowCells { row, at, columns })
}

/// A row's cells as a sequence (a struct deriving `Deserialize` reads its fields from one).
struct RowCells<'c, R> {
    row: R,
    at: &'c [usize],
    columns: &'c [Column],
}

impl<'de, R: Cells<'de>> Deserializer<'de> for RowCells<'_, R> {
    type Error = CellError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CellError> {
        visitor.visit_seq(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

impl<'de, R: Cells<'de>> SeqAccess<'de> for RowCells<'_, R> {
    type Error = CellError;

    fn next_element_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<Option<S::Value>, CellError> {
        let (Some((&index, rest)), Some((column, columns))) = (self.at.split_first(), self.columns.split_first())
        else {
            return Ok(None);
        };
        (self.at, self.columns) = (rest, columns);
        seed.deserialize(self.row.cell(index, column.json)?).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.at.len())
    }
}

/// JSON text, read as the JSON it holds.
fn json<'de, V: Visitor<'de>>(text: &'de [u8], visitor: V) -> Result<V::Value, CellError> {
    let mut json = serde_json::Deserializer::from_slice(text);
    let value = json.deserialize_any(visitor).map_err(CellError::of)?;
    json.end().map_err(CellError::of)?;
    Ok(value)
}

impl<'r> Cells<'r> for &'r rusqlite::Row<'r> {
    type Cell = SqliteCell<'r>;

    fn index_of(self, alias: &str) -> Result<usize, CellError> {
        self.as_ref().column_index(alias).map_err(CellError::of)
    }

    fn cell(self, index: usize, json: bool) -> Result<SqliteCell<'r>, CellError> {
        Ok(SqliteCell { value: self.get_ref(index).map_err(CellError::of)?, json })
    }
}

/// One SQLite cell, as its type there gives it (text is UTF-8 there).
pub(super) struct SqliteCell<'v> {
    value: rusqlite::types::ValueRef<'v>,
    json: bool,
}

impl<'de> Deserializer<'de> for SqliteCell<'de> {
    type Error = CellError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CellError> {
        use rusqlite::types::ValueRef;
        match self.value {
            ValueRef::Null => visitor.visit_unit(),
            ValueRef::Integer(i) => visitor.visit_i64(i),
            ValueRef::Real(f) => visitor.visit_f64(f),
            ValueRef::Text(text) if self.json => json(text, visitor),
            ValueRef::Text(text) => visitor.visit_borrowed_str(std::str::from_utf8(text).map_err(CellError::of)?),
            ValueRef::Blob(bytes) => visitor.visit_borrowed_bytes(bytes),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CellError> {
        match self.value {
            rusqlite::types::ValueRef::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

impl<'r> Cells<'r> for &'r PgRow {
    type Cell = PgCell<'r>;

    fn index_of(self, alias: &str) -> Result<usize, CellError> {
        Ok(self.try_column(alias).map_err(CellError::of)?.ordinal())
    }

    fn cell(self, index: usize, json: bool) -> Result<PgCell<'r>, CellError> {
        Ok(PgCell { value: self.try_get_raw(index).map_err(CellError::of)?, json })
    }
}

/// One PostgreSQL cell, decoded by its type as sqlx decodes it.
pub(super) struct PgCell<'v> {
    value: PgValueRef<'v>,
    json: bool,
}

/// The PostgreSQL types a folded statement's cells have.
enum PgKind {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Text,
    Json,
    Jsonb,
    Instant,
}

/// Microseconds from 1970 to 2000-01-01, PostgreSQL's epoch.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800 * 1_000_000;

/// A `timestamptz` cell as microseconds since the Unix epoch. In binary (as sqlx reads prepared
/// statements' rows) it is PostgreSQL's count, from its own epoch, taken as it is: decoding it as a
/// date and time only for `Instant` to work the date out again was most of reading a row.
fn unix_micros(value: PgValueRef<'_>) -> Result<i64, CellError> {
    match value.format() {
        PgValueFormat::Binary => {
            let bytes = value.as_bytes().map_err(CellError::of)?;
            let micros = i64::from_be_bytes(bytes.try_into().map_err(CellError::of)?);
            // `infinity` and `-infinity` are the extremes, and out of range here.
            micros.checked_add(POSTGRES_EPOCH_MICROS).ok_or_else(|| CellError::of("an instant out of range"))
        }
        PgValueFormat::Text => Ok(decode::<chrono::DateTime<chrono::Utc>>(value)?.timestamp_micros()),
    }
}

fn decode<'r, T: sqlx::Decode<'r, sqlx::Postgres>>(value: PgValueRef<'r>) -> Result<T, CellError> {
    T::decode(value).map_err(CellError::of)
}

impl<'de> Deserializer<'de> for PgCell<'de> {
    type Error = CellError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CellError> {
        if self.value.is_null() {
            return visitor.visit_unit();
        }
        let kind = match self.value.type_info().name() {
            "BOOL" => PgKind::Bool,
            "INT2" => PgKind::Int2,
            "INT4" => PgKind::Int4,
            "INT8" => PgKind::Int8,
            "FLOAT4" => PgKind::Float4,
            "FLOAT8" => PgKind::Float8,
            "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => PgKind::Text,
            "JSON" => PgKind::Json,
            "JSONB" => PgKind::Jsonb,
            "TIMESTAMPTZ" => PgKind::Instant,
            other => return Err(CellError(format!("a cell of type {other} is not read here"))),
        };
        let value = self.value;
        match kind {
            PgKind::Bool => visitor.visit_bool(decode(value)?),
            PgKind::Int2 => visitor.visit_i64(decode::<i16>(value)?.into()),
            PgKind::Int4 => visitor.visit_i64(decode::<i32>(value)?.into()),
            PgKind::Int8 => visitor.visit_i64(decode(value)?),
            PgKind::Float4 => visitor.visit_f64(decode::<f32>(value)?.into()),
            PgKind::Float8 => visitor.visit_f64(decode(value)?),
            PgKind::Text if self.json => json(value.as_bytes().map_err(CellError::of)?, visitor),
            PgKind::Text => visitor.visit_borrowed_str(value.as_str().map_err(CellError::of)?),
            PgKind::Json => json(value.as_bytes().map_err(CellError::of)?, visitor),
            PgKind::Jsonb => {
                let bytes = value.as_bytes().map_err(CellError::of)?;
                // In binary, a version byte (1) comes first.
                let text = match (value.format(), bytes.split_first()) {
                    (PgValueFormat::Text, _) => bytes,
                    (PgValueFormat::Binary, Some((1, text))) => text,
                    (PgValueFormat::Binary, _) => return Err(CellError::of("an unknown JSONB version")),
                };
                json(text, visitor)
            }
            PgKind::Instant => visitor.visit_i64(unix_micros(value)?),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CellError> {
        if self.value.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// Why a row could not be read as its struct.
#[derive(Debug)]
pub(super) struct CellError(String);

impl CellError {
    fn of(error: impl std::fmt::Display) -> Self {
        Self(error.to_string())
    }
}

impl std::fmt::Display for CellError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CellError {}

impl de::Error for CellError {
    fn custom<M: std::fmt::Display>(message: M) -> Self {
        Self::of(message)
    }
}
