//! Objects whose keys are checked while JSON is read: [`check_unique_keys`] for a body a
//! derived struct then parses, [`UniqueValue`] and [`UniqueObject`] to read params in the
//! same pass. Both refuse an object that repeats a key (at any depth) and the key
//! serde_json reserves for raw values; [`refused_key`] turns either refusal into the 400
//! the client gets.

use axum::http::StatusCode;

use crate::http::ApiError;
use crate::spec::checks::shown_name;

/// Refuses (400 `invalid_json`) a JSON text with an object that repeats a key, at any
/// depth. Parsers disagree on which of the two wins (the first, the last, an error), and
/// such disagreement between two parts of a system is a known way to slip a value past a
/// check; answering every such body with an error leaves nothing to disagree on. Also
/// refused: an object with the key serde_json reserves for raw values
/// ([`RAW_VALUE_TOKEN`]), which its `Value` would otherwise parse again from a string, past
/// this check. Text that is not valid JSON passes here and is refused by the parser that
/// follows.
pub fn check_unique_keys(bytes: &[u8]) -> Result<(), ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    match serde::Deserialize::deserialize(&mut deserializer).map(|UniqueKeys| ()) {
        Err(error) => refused_key(&error).map_or(Ok(()), Err),
        Ok(()) => Ok(()),
    }
}

/// The 400 `invalid_json` for a parse that stopped at a repeated or reserved key: one
/// [`UniqueKeys`], [`UniqueValue`] or [`UniqueObject`] found, or a repeated field of a
/// derived struct. `None` for every other error.
pub fn refused_key(error: &serde_json::Error) -> Option<ApiError> {
    if !error.is_data() {
        return None;
    }
    let text = error.to_string();
    if let Some(rest) = text.strip_prefix(RESERVED_KEY) {
        let key = rest.split(" at line").next().unwrap_or("");
        return Some(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!(
                "an object uses the key `{}`, which the JSON parser reserves (line {}, column \
                 {}); rename it",
                shown_name(key),
                error.line(),
                error.column()
            ),
        ));
    }
    let key = match text.strip_prefix(DUPLICATE_KEY) {
        Some(rest) => rest.split(" at line").next().unwrap_or(""),
        None => text
            .strip_prefix("duplicate field `")?
            .split('`')
            .next()
            .unwrap_or(""),
    };
    Some(ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_json",
        format!(
            "an object repeats the key `{}` (line {}, column {}); send each key once",
            shown_name(key),
            error.line(),
            error.column()
        ),
    ))
}

const DUPLICATE_KEY: &str = "duplicate key ";
const RESERVED_KEY: &str = "reserved key ";

/// The key serde_json's `Value` (with its `raw_value` feature) takes for "parse this
/// string as JSON": sent by a client, it would smuggle a second, unchecked JSON text in a
/// string. Refused wherever keys are checked.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// The error for `key` when it is [`RAW_VALUE_TOKEN`].
fn reserved<E: serde::de::Error>(key: &str) -> Result<(), E> {
    if key == RAW_VALUE_TOKEN {
        return Err(E::custom(format_args!("{RESERVED_KEY}{key}")));
    }
    Ok(())
}

/// Reads any JSON value, keeping nothing but each object's keys until the object ends.
struct UniqueKeys;

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueKeys, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(UniqueKeys)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
        // Most objects are small: a scan beats hashing.
        let mut seen: Vec<std::borrow::Cow<'de, str>> = Vec::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            reserved(&key)?;
            if seen.contains(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "{DUPLICATE_KEY}{key}"
                )));
            }
            map.next_value::<UniqueKeys>()?;
            seen.push(key);
        }
        Ok(UniqueKeys)
    }
}

/// A JSON value built in the same pass that checks it for repeated keys, at any depth (a
/// repeat fails the parse as [`check_unique_keys`] would, see [`refused_key`]): one pass
/// over the body instead of a check and then a parse.
pub struct UniqueValue(pub serde_json::Value);

/// A JSON object (anything else is the parser's type error), checked and built the same
/// way as a [`UniqueValue`].
pub struct UniqueObject(pub serde_json::Map<String, serde_json::Value>);

/// The key serde_json gives a number's text under its `arbitrary_precision` feature: such a
/// number reaches a visitor as a one-entry map. serde_json's own `Value` reads it back as a
/// number (from any source, a body's object with that one key included), and so does
/// [`UniqueValue`]; `tests::numbers_keep_every_digit` fails if serde_json changes it.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

impl<'de> serde::Deserialize<'de> for UniqueValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(UniqueValueVisitor)
            .map(UniqueValue)
    }
}

impl<'de> serde::Deserialize<'de> for UniqueObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> serde::de::Visitor<'de> for ObjectVisitor {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueObject, A::Error> {
                let mut object = serde_json::Map::new();
                insert_rest(&mut object, &mut map)?;
                Ok(UniqueObject(object))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// Reads the map's remaining entries into `object` with [`insert_unique`].
fn insert_rest<'de, A: serde::de::MapAccess<'de>>(
    object: &mut serde_json::Map<String, serde_json::Value>,
    map: &mut A,
) -> Result<(), A::Error> {
    while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
        insert_unique(object, key, map)?;
    }
    Ok(())
}

/// Reads the value of `key` into `object`, or fails if `object` has the key already.
fn insert_unique<'de, A: serde::de::MapAccess<'de>>(
    object: &mut serde_json::Map<String, serde_json::Value>,
    key: std::borrow::Cow<'de, str>,
    map: &mut A,
) -> Result<(), A::Error> {
    reserved(&key)?;
    match object.entry(key.into_owned()) {
        serde_json::map::Entry::Occupied(entry) => Err(serde::de::Error::custom(format_args!(
            "{DUPLICATE_KEY}{}",
            entry.key()
        ))),
        serde_json::map::Entry::Vacant(entry) => {
            entry.insert(map.next_value::<UniqueValue>()?.0);
            Ok(())
        }
    }
}

struct UniqueValueVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueValueVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<serde_json::Value, E> {
        Ok(serde_json::Value::Bool(value))
    }
    fn visit_i64<E>(self, value: i64) -> Result<serde_json::Value, E> {
        Ok(serde_json::Value::Number(value.into()))
    }
    fn visit_u64<E>(self, value: u64) -> Result<serde_json::Value, E> {
        Ok(serde_json::Value::Number(value.into()))
    }
    fn visit_f64<E>(self, value: f64) -> Result<serde_json::Value, E> {
        Ok(serde_json::Number::from_f64(value).map_or(serde_json::Value::Null, Into::into))
    }
    fn visit_str<E>(self, value: &str) -> Result<serde_json::Value, E> {
        Ok(serde_json::Value::String(value.to_owned()))
    }
    fn visit_string<E>(self, value: String) -> Result<serde_json::Value, E> {
        Ok(serde_json::Value::String(value))
    }
    fn visit_unit<E>(self) -> Result<serde_json::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_none<E>(self) -> Result<serde_json::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<serde_json::Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> Result<serde_json::Value, A::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(UniqueValue(value)) = seq.next_element()? {
            values.push(value);
        }
        Ok(serde_json::Value::Array(values))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> Result<serde_json::Value, A::Error> {
        let mut object = serde_json::Map::new();
        let Some(Key(first)) = map.next_key::<Key<'de>>()? else {
            return Ok(serde_json::Value::Object(object));
        };
        if first == NUMBER_TOKEN {
            let Key(text) = map.next_value::<Key<'de>>()?;
            return text
                .parse::<serde_json::Number>()
                .map(serde_json::Value::Number)
                .map_err(serde::de::Error::custom);
        }
        insert_unique(&mut object, first, &mut map)?;
        insert_rest(&mut object, &mut map)?;
        Ok(serde_json::Value::Object(object))
    }
}

/// An object key, borrowed from the body when it has no escapes.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> serde::de::Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(key.into()))
            }
            fn visit_str<E>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(key.to_owned().into()))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_are_refused_at_any_depth_and_named_short() {
        for body in [
            r#"{"email":"a@b.c","email":"x@y.z","password":"p"}"#,
            r#"{"params":{"id":1,"id":2}}"#,
            r#"{"params":{"meta":{"a":[{"k":1,"k":2}]}}}"#,
            r#"{"params":{"i\u0064":1,"id":2}}"#,
        ] {
            let error = check_unique_keys(body.as_bytes()).unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(error.code, "invalid_json", "{body}");
            assert!(
                error.message.contains("repeats the key `"),
                "{body}: {}",
                error.message
            );
        }
        let long = "k".repeat(5000);
        let body = format!(r#"{{"{long}":1,"{long}":2}}"#);
        let error = check_unique_keys(body.as_bytes()).unwrap_err();
        assert!(error.message.len() < 200, "{}", error.message);
        // Distinct keys, arbitrary-precision numbers, arrays, scalars and invalid JSON pass
        // (invalid JSON is the parser's to refuse).
        for body in [
            r#"{"a":1,"b":{"a":2},"c":[{"a":1},{"a":2}],"n":123456789012345678901234567890.5}"#,
            "[1,2,3]",
            "\"text\"",
            "{not json",
            "",
        ] {
            assert!(check_unique_keys(body.as_bytes()).is_ok(), "{body}");
        }
    }

    /// Parses `body` as a [`UniqueValue`]; the error is the query route's answer to a
    /// repeated key, `None` for any other error.
    fn unique_value(body: &str) -> Result<serde_json::Value, Option<ApiError>> {
        serde_json::from_str::<UniqueValue>(body)
            .map(|UniqueValue(value)| value)
            .map_err(|error| refused_key(&error))
    }

    #[test]
    fn one_pass_values_equal_serde_json_values_and_refuse_what_the_check_refuses() {
        // Built alike: scalars, big and precise numbers (every digit kept), escapes,
        // nesting, empty containers, and an object that looks like serde_json's number.
        for body in [
            r#"{"a":1,"b":{"a":2},"c":[{"a":1},{"a":2}],"n":123456789012345678901234567890.5}"#,
            r#"{"i":-9223372036854775808,"u":18446744073709551615,"f":1e-7,"z":-0.0,"e":1E400}"#,
            r#"{"s":"t\u00e9xt \"q\" \\ \n","k\u0065y":true,"nil":null,"x":false}"#,
            r#"{"deep":[[[{"a":[{},[],""]}]]],"u":"\ud83d\ude00"}"#,
            r#"{"$serde_json::private::Number":"12.50"}"#,
            "[1,2,3]",
            "\"text\"",
            "0.1",
            "{}",
        ] {
            let expected: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(unique_value(body).unwrap(), expected, "{body}");
            assert!(check_unique_keys(body.as_bytes()).is_ok(), "{body}");
        }
        // Refused alike, with the check's message (the same key, line and column).
        for body in [
            r#"{"email":"a@b.c","email":"x@y.z","password":"p"}"#,
            r#"{"params":{"id":1,"id":2}}"#,
            r#"{"params":{"meta":{"a":[{"k":1,"k":2}]}}}"#,
            r#"{"params":{"i\u0064":1,"id":2}}"#,
            "{\n  \"a\": 1,\n  \"b\": [1, {\"c\": 2,\n \"c\": 3}]}",
        ] {
            let checked = check_unique_keys(body.as_bytes()).unwrap_err();
            let parsed = unique_value(body).unwrap_err().expect("a repeated key");
            assert_eq!(parsed.code, "invalid_json", "{body}");
            assert_eq!(parsed.message, checked.message, "{body}");
            assert!(parsed.message.contains("repeats the key `"), "{body}");
        }
        // Invalid JSON is the parser's error, not a repeat.
        for body in ["{not json", "", r#"{"a":1,"a"#] {
            assert!(unique_value(body).unwrap_err().is_none(), "{body}");
        }
        // An object is required where one is declared.
        let object = serde_json::from_str::<UniqueObject>(r#"{"a":{"b":1,"c":[2]}}"#).unwrap();
        assert_eq!(
            serde_json::Value::Object(object.0),
            serde_json::json!({"a": {"b": 1, "c": [2]}})
        );
        let error = serde_json::from_str::<UniqueObject>("[1]")
            .map(|o| o.0)
            .unwrap_err();
        assert!(error.is_data() && refused_key(&error).is_none(), "{error}");
        let error = serde_json::from_str::<UniqueObject>(r#"{"a":1,"b":2,"a":3}"#)
            .map(|o| o.0)
            .unwrap_err();
        assert!(refused_key(&error).unwrap().message.contains("key `a`"));
    }

    #[test]
    fn the_raw_value_key_is_refused_wherever_keys_are_checked() {
        // serde_json's own `Value` parses the string under this key as a second JSON text,
        // which no key check saw: a repeated key (or anything else) rides through.
        let smuggled = r#"{"x":{"$serde_json::private::RawValue":"{\"id\":1,\"id\":2}"}}"#;
        let plain: serde_json::Value = serde_json::from_str(smuggled).unwrap();
        assert_eq!(
            plain["x"],
            serde_json::json!({"id": 2}),
            "serde_json changed: {plain}"
        );
        for body in [
            smuggled,
            r#"{"params":{"$serde_json::private::RawValue":"[1,2]"}}"#,
            r#"[{"a":1,"$serde_json::private::RawValue":"1"}]"#,
        ] {
            let checked = check_unique_keys(body.as_bytes()).unwrap_err();
            assert_eq!(checked.code, "invalid_json", "{body}");
            assert!(checked.message.contains("reserves"), "{}", checked.message);
            let parsed = unique_value(body).unwrap_err().expect("a refused key");
            assert_eq!(parsed.message, checked.message, "{body}");
        }
        let object =
            serde_json::from_str::<UniqueObject>(r#"{"$serde_json::private::RawValue":"1"}"#)
                .map(|o| o.0)
                .unwrap_err();
        assert!(refused_key(&object).is_some(), "{object}");
    }

    #[test]
    fn numbers_keep_every_digit() {
        // serde_json hands a number's text over as a map under `NUMBER_TOKEN`: were the
        // token renamed, the number below would come back as an object.
        let value = unique_value("[123456789012345678901234567890.123456789]").unwrap();
        let number = value[0].as_number().expect("a number, not an object");
        assert_eq!(
            number.to_string(),
            "123456789012345678901234567890.123456789"
        );
    }
}
