//! Variables a request declares but does not send. The GraphQL specification (CoerceArgumentValues)
//! treats an argument or input field given such a variable as not provided, so the schema's default
//! applies (`granularity: UsageGranularity! = HOUR`). async-graphql instead reads a nullable
//! variable left out as `null`, and refuses a non-null argument with a default. A JavaScript client
//! leaves a variable out whenever its value is `undefined`, so this module rewrites the parsed
//! document to what the specification means before it is validated and run:
//! - an argument (of a field or a directive) or an input object's field whose value is such a
//!   variable is left out;
//! - such a variable as an item of a list is `null`, its value per the specification;
//! - the variable's definition goes, as nothing uses it any more.
//!
//! Only variables defined nullable and without a default qualify: a non-null one left out is an
//! error, and a default is a value. Only documents with one operation are rewritten (what clients
//! send): in a document of several, a fragment may be spread by operations that define the same
//! name differently, and async-graphql's own reading stands.
use async_graphql::parser::types::{
    Directive, DocumentOperations, ExecutableDocument, OperationDefinition, Selection, SelectionSet, VariableDefinition,
};
use async_graphql::{Name, Positioned, Variables};
use async_graphql_value::Value;

/// The document as the specification reads it for `variables`, when that differs from `document`.
pub fn without_unsent(document: &ExecutableDocument, variables: &Variables) -> Option<ExecutableDocument> {
    let DocumentOperations::Single(operation) = &document.operations else {
        return None;
    };
    let unsent: Vec<Name> = operation
        .node
        .variable_definitions
        .iter()
        .filter(|definition| definition.node.var_type.node.nullable && left_out(&definition.node, variables))
        .map(|definition| definition.node.name.node.clone())
        .collect();
    if unsent.is_empty() {
        return None;
    }
    let mut document = document.clone();
    if let DocumentOperations::Single(operation) = &mut document.operations {
        let operation = &mut operation.node;
        operation.variable_definitions.retain(|definition| !unsent.contains(&definition.node.name.node));
        in_directives(&mut operation.directives, &unsent);
        in_set(&mut operation.selection_set.node, &unsent);
    }
    for fragment in document.fragments.values_mut() {
        in_directives(&mut fragment.node.directives, &unsent);
        in_set(&mut fragment.node.selection_set.node, &unsent);
    }
    Some(document)
}

/// The first variable of `operation` that is non-null, has no default and was not sent: the request
/// cannot run (the specification's CoerceVariableValues raises a request error).
pub fn required_unsent<'o>(
    operation: &'o OperationDefinition,
    variables: &Variables,
) -> Option<&'o VariableDefinition> {
    operation
        .variable_definitions
        .iter()
        .map(|definition| &definition.node)
        .find(|definition| !definition.var_type.node.nullable && left_out(definition, variables))
}

/// Declared without a default, and not sent.
fn left_out(definition: &VariableDefinition, variables: &Variables) -> bool {
    definition.default_value.is_none() && !variables.contains_key(&definition.name.node)
}

fn is_unsent(value: &Value, unsent: &[Name]) -> bool {
    matches!(value, Value::Variable(name) if unsent.contains(name))
}

fn in_set(set: &mut SelectionSet, unsent: &[Name]) {
    for item in &mut set.items {
        match &mut item.node {
            Selection::Field(field) => {
                let field = &mut field.node;
                in_arguments(&mut field.arguments, unsent);
                in_directives(&mut field.directives, unsent);
                in_set(&mut field.selection_set.node, unsent);
            }
            Selection::InlineFragment(fragment) => {
                in_directives(&mut fragment.node.directives, unsent);
                in_set(&mut fragment.node.selection_set.node, unsent);
            }
            Selection::FragmentSpread(spread) => in_directives(&mut spread.node.directives, unsent),
        }
    }
}

fn in_directives(directives: &mut [Positioned<Directive>], unsent: &[Name]) {
    for directive in directives {
        in_arguments(&mut directive.node.arguments, unsent);
    }
}

fn in_arguments(arguments: &mut Vec<(Positioned<Name>, Positioned<Value>)>, unsent: &[Name]) {
    arguments.retain(|(_, value)| !is_unsent(&value.node, unsent));
    for (_, value) in arguments {
        in_value(&mut value.node, unsent);
    }
}

fn in_value(value: &mut Value, unsent: &[Name]) {
    match value {
        Value::Object(fields) => {
            fields.retain(|_, value| !is_unsent(value, unsent));
            for value in fields.values_mut() {
                in_value(value, unsent);
            }
        }
        Value::List(items) => {
            for item in items {
                if is_unsent(item, unsent) {
                    *item = Value::Null;
                } else {
                    in_value(item, unsent);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::parser::parse_query;

    fn rewritten(query: &str, variables: serde_json::Value) -> Option<String> {
        let document = parse_query(query).expect("a document");
        let variables = Variables::from_json(variables);
        without_unsent(&document, &variables).map(|document| format!("{document:?}"))
    }

    #[test]
    fn a_document_whose_variables_are_all_sent_or_defaulted_is_left_as_it_is() {
        let query = "query($g: UsageGranularity, $d: Int = 7, $k: String!) { a(g: $g, d: $d, k: $k) }";
        assert!(rewritten(query, serde_json::json!({ "g": "DAY", "k": "x" })).is_none());
        assert!(rewritten(query, serde_json::json!({ "g": null, "k": "x" })).is_none(), "null sent is a value");
        assert!(
            rewritten(query, serde_json::json!({ "g": "DAY" })).is_none(),
            "a non-null one left out stays an error"
        );
    }

    /// The arguments of the first field named `name` in `set` (depth first), by name.
    fn arguments<'a>(set: &'a SelectionSet, name: &str) -> Option<Vec<(&'a str, &'a Value)>> {
        set.items.iter().find_map(|item| match &item.node {
            Selection::Field(field) if field.node.name.node == name => {
                Some(field.node.arguments.iter().map(|(n, v)| (n.node.as_str(), &v.node)).collect())
            }
            Selection::Field(field) => arguments(&field.node.selection_set.node, name),
            _ => None,
        })
    }

    #[test]
    fn an_unsent_variable_leaves_its_arguments_and_input_fields_out_and_is_null_in_a_list() {
        let query = "query($g: UsageGranularity, $s: String, $t: String) {
                       a(g: $g, h: 1) @include(if: true) { b(o: { f: $s, d: ASC }, l: [$s, \"x\"], t: $t) }
                       ...F
                     }
                     fragment F on Q { c(g: $g) @skip(if: false) }";
        let document = parse_query(query).expect("a document");
        let document =
            without_unsent(&document, &Variables::from_json(serde_json::json!({ "t": "sent" }))).expect("rewritten");
        let DocumentOperations::Single(operation) = &document.operations else { panic!("one operation") };
        let defined: Vec<&str> =
            operation.node.variable_definitions.iter().map(|d| d.node.name.node.as_str()).collect();
        assert_eq!(defined, ["t"], "the unsent definitions go, the sent one stays");
        let set = &operation.node.selection_set.node;
        let a = arguments(set, "a").expect("a");
        assert_eq!(a.iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["h"]);
        let b = arguments(set, "b").expect("b");
        assert_eq!(b.iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["o", "l", "t"]);
        let Value::Object(o) = b[0].1 else { panic!("an object") };
        assert_eq!(o.keys().map(Name::as_str).collect::<Vec<_>>(), ["d"], "the input field left out");
        assert_eq!(b[1].1, &Value::List(vec![Value::Null, Value::String("x".into())]), "null in a list");
        assert_eq!(b[2].1, &Value::Variable(Name::new("t")));
        let fragment = document.fragments.values().next().expect("the fragment");
        assert_eq!(arguments(&fragment.node.selection_set.node, "c").expect("c"), []);
    }

    #[test]
    fn a_document_of_several_operations_is_left_to_async_graphql() {
        let query = "query A($g: UsageGranularity) { a(g: $g) } query B { b }";
        assert!(rewritten(query, serde_json::json!({})).is_none());
    }
}
