//! JSON text written in one pass and handed to the response as it is (`raw`): a usage series
//! (`types::UsageSeries`), and a page's `edges` or `nodes` when everything they select is a plain
//! value (for keys: their scalars, enums and roles' scalars, `listed`). The Application Keys page
//! asks exactly that; resolved field by field, as async-graphql resolves any object (a boxed future,
//! a map entry and a value per field), 20 keys and their roles were a fifth of the request
//! (profiled). A selection with anything else (a policy, usage, a role's resources, a response key
//! asked twice) is resolved field by field, as before. `@skip` and `@include` are applied to the
//! document before it runs. A test holds the text equal to field-by-field resolution, byte for
//! byte (`contract::a_written_out_page_reads_as_one_resolved_field_by_field`).
use async_graphql::connection::{Edge, EmptyFields};
use async_graphql::parser::types::{Selection, SelectionSet};
use async_graphql::{ContextSelectionSet, OutputType, Positioned, ServerResult, Value};
use chrono::{DateTime, Utc};

use crate::service::store::page::Cursor;

/// A node type of a `Page`: whether a selection of it can be written out, and how.
pub trait Listed: OutputType + Sized {
    /// What a selection of the node asks for, in order.
    type Plan: Send + Sync;

    /// The plan of `set`, or `None`: resolve it field by field.
    fn plan(ctx: &ContextSelectionSet<'_>, set: &SelectionSet) -> Option<Self::Plan>;

    /// Writes the node as `plan` asks, as JSON.
    fn write(&self, plan: &Self::Plan, json: &mut String);
}

/// The fields of a selection, flattened through its fragments (every fragment valid on a concrete
/// object type applies to it), each with its response key written as JSON (`"key":`); `None` when
/// a response key is asked twice (async-graphql merges those) or `known` does not know a field.
pub fn fields<F>(
    ctx: &ContextSelectionSet<'_>,
    set: &SelectionSet,
    known: &mut impl FnMut(&str, &SelectionSet) -> Option<F>,
    into: &mut Vec<(String, F)>,
) -> Option<()> {
    for selection in &set.items {
        match &selection.node {
            Selection::Field(field) => {
                let field = &field.node;
                let shown = known(field.name.node.as_str(), &field.selection_set.node)?;
                let key = field.alias.as_ref().unwrap_or(&field.name).node.as_str();
                let key = format!("{}:", serde_json::Value::from(key));
                if into.iter().any(|(known, _)| *known == key) {
                    return None;
                }
                into.push((key, shown));
            }
            Selection::FragmentSpread(spread) => {
                let fragment = ctx.query_env.fragments.get(&spread.node.fragment_name.node)?;
                fields(ctx, &fragment.node.selection_set.node, known, into)?;
            }
            Selection::InlineFragment(fragment) => fields(ctx, &fragment.node.selection_set.node, known, into)?,
        }
    }
    Some(())
}

/// Writes one object of `fields` (each its response key written as `"key":`, see `fields`), each
/// value as `value` writes it.
pub fn push_object<F>(json: &mut String, fields: &[(String, F)], mut value: impl FnMut(&mut String, &F)) {
    json.push('{');
    for (n, (key, field)) in fields.iter().enumerate() {
        if n > 0 {
            json.push(',');
        }
        json.push_str(key);
        value(json, field);
    }
    json.push('}');
}

/// Writes `items` as a JSON array, each as `item` writes it.
pub fn push_list<T>(json: &mut String, items: impl IntoIterator<Item = T>, mut item: impl FnMut(&mut String, T)) {
    json.push('[');
    for (n, one) in items.into_iter().enumerate() {
        if n > 0 {
            json.push(',');
        }
        item(json, one);
    }
    json.push(']');
}

/// A string as serde_json writes it (which writes the response): `"` and `\` escaped, and the
/// control characters below U+0020; text without any of them is written as it is.
pub fn push_str(json: &mut String, text: &str) {
    if text.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        json.push_str(&serde_json::Value::from(text).to_string());
    } else {
        json.push('"');
        json.push_str(text);
        json.push('"');
    }
}

pub fn push_optional_str(json: &mut String, text: Option<&str>) {
    match text {
        Some(text) => push_str(json, text),
        None => json.push_str("null"),
    }
}

pub fn push_bool(json: &mut String, value: bool) {
    json.push_str(if value { "true" } else { "false" });
}

/// As the `DateTime` scalar writes it.
pub fn push_time(json: &mut String, at: Option<&DateTime<Utc>>) {
    match at {
        Some(at) => {
            json.push('"');
            push_rfc3339(json, at);
            json.push('"');
        }
        None => json.push_str("null"),
    }
}

/// Writes `at` as `DateTime::to_rfc3339` does (the `DateTime` scalar's text), without its
/// allocation: a bucket's start has whole seconds in a four-digit year, anything else goes the long way.
fn push_rfc3339(into: &mut String, at: &DateTime<Utc>) {
    use chrono::{Datelike, Timelike};
    fn push_digits(into: &mut String, value: u32, width: usize) {
        let mut buffer = [b'0'; 4];
        let mut value = value;
        for slot in buffer[..width].iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
        into.extend(buffer[..width].iter().map(|&digit| char::from(digit)));
    }
    let year = at.year();
    if at.nanosecond() != 0 || !(0..=9999).contains(&year) {
        into.push_str(&at.to_rfc3339());
        return;
    }
    push_digits(into, year.unsigned_abs(), 4);
    for (separator, value) in
        [('-', at.month()), ('-', at.day()), ('T', at.hour()), (':', at.minute()), (':', at.second())]
    {
        into.push(separator);
        push_digits(into, value, 2);
    }
    into.push_str("+00:00");
}

/// An enum value by its GraphQL name.
pub fn push_enum<E: async_graphql::resolver_utils::EnumType>(json: &mut String, value: E) {
    match async_graphql::resolver_utils::enum_value(value) {
        Value::Enum(name) => push_str(json, name.as_str()),
        other => json.push_str(&other.to_string()),
    }
}

/// Text handed to the response as it is (async-graphql's raw value: an object holding only
/// `RAW_VALUE_TOKEN`; `http::graphql` writes it without parsing it again).
pub fn raw(json: String) -> Value {
    Value::Object(async_graphql::indexmap::IndexMap::from([(
        async_graphql::Name::new(async_graphql_value::RAW_VALUE_TOKEN),
        Value::String(json),
    )]))
}

/// What one selected field of an edge shows.
enum EdgeField<P> {
    Typename,
    Cursor,
    Node(P),
}

/// A page's `edges`: written out when its selection can be, else resolved as a list of edges.
pub struct Edges<'a, N: Listed>(pub &'a [Edge<Cursor, N, EmptyFields>]);

impl<N: Listed> OutputType for Edges<'_, N> {
    fn type_name() -> std::borrow::Cow<'static, str> {
        <&[Edge<Cursor, N, EmptyFields>] as OutputType>::type_name()
    }

    fn qualified_type_name() -> String {
        <&[Edge<Cursor, N, EmptyFields>] as OutputType>::qualified_type_name()
    }

    fn create_type_info(registry: &mut async_graphql::registry::Registry) -> String {
        <&[Edge<Cursor, N, EmptyFields>] as OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<async_graphql::parser::types::Field>,
    ) -> ServerResult<Value> {
        let mut plan = Vec::new();
        let mut known = |name: &str, set: &SelectionSet| {
            Some(match name {
                "__typename" => EdgeField::Typename,
                "cursor" => EdgeField::Cursor,
                "node" => EdgeField::Node(N::plan(ctx, set)?),
                _ => return None,
            })
        };
        if fields(ctx, &ctx.item.node, &mut known, &mut plan).is_none() {
            return async_graphql::resolver_utils::resolve_list(ctx, field, self.0.iter(), Some(self.0.len())).await;
        }
        let typename = format!("\"{}\"", <Edge<Cursor, N, EmptyFields> as OutputType>::type_name());
        let mut json = String::with_capacity(64 + self.0.len() * 256);
        push_list(&mut json, self.0, |json, edge| {
            push_object(json, &plan, |json, field| match field {
                EdgeField::Typename => json.push_str(&typename),
                EdgeField::Cursor => push_str(json, &edge.cursor.encode()),
                EdgeField::Node(plan) => edge.node.write(plan, json),
            })
        });
        Ok(raw(json))
    }
}

/// A page's `nodes`: written out when its selection can be, else resolved as a list of nodes.
pub struct Nodes<'a, N: Listed>(pub &'a [Edge<Cursor, N, EmptyFields>]);

impl<N: Listed> OutputType for Nodes<'_, N> {
    fn type_name() -> std::borrow::Cow<'static, str> {
        <&[N] as OutputType>::type_name()
    }

    fn qualified_type_name() -> String {
        <&[N] as OutputType>::qualified_type_name()
    }

    fn create_type_info(registry: &mut async_graphql::registry::Registry) -> String {
        <&[N] as OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<async_graphql::parser::types::Field>,
    ) -> ServerResult<Value> {
        let Some(plan) = N::plan(ctx, &ctx.item.node) else {
            let nodes = self.0.iter().map(|edge| &edge.node);
            return async_graphql::resolver_utils::resolve_list(ctx, field, nodes, Some(self.0.len())).await;
        };
        let mut json = String::with_capacity(64 + self.0.len() * 256);
        push_list(&mut json, self.0, |json, edge| edge.node.write(&plan, json));
        Ok(raw(json))
    }
}

#[cfg(test)]
mod tests {
    use super::push_rfc3339;
    use chrono::{DateTime, TimeZone, Utc};

    fn written(at: DateTime<Utc>) -> String {
        let mut text = String::new();
        push_rfc3339(&mut text, &at);
        text
    }

    #[test]
    fn a_point_time_is_written_as_the_date_time_scalar_writes_it() {
        let times = [
            Utc.with_ymd_and_hms(2026, 12, 5, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2024, 2, 29, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(5, 3, 7, 9, 8, 1).unwrap(),
            Utc.with_ymd_and_hms(2026, 6, 1, 12, 30, 0).unwrap() + chrono::Duration::milliseconds(250),
        ];
        for at in times {
            assert_eq!(written(at), at.to_rfc3339(), "{at:?}");
        }
    }
}
