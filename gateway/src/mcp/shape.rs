//! `Shape<T>`: a JSON member read as `T` when it is an object, or noted as
//! `null` or something else, in the same pass as the message around it — so
//! `params` and `result` are parsed once, not kept raw and parsed again.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

#[derive(Debug)]
pub enum Shape<T> {
    Object(T),
    Null,
    /// An array, string, number or boolean (its contents skipped).
    Other,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Shape<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ShapeVisitor(PhantomData))
    }
}

struct ShapeVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ShapeVisitor<T> {
    type Value = Shape<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Shape::Object)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Shape::Other)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Shape::Null)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Shape::Null)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Shape::Other)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Shape::Other)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Shape::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Shape::Other)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Shape::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::Shape;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Probe {
        #[serde(default)]
        a: u32,
    }

    fn shape(text: &str) -> Shape<Probe> {
        serde_json::from_str(text).expect("valid JSON")
    }

    #[test]
    fn objects_are_read_and_everything_else_is_named() {
        assert!(matches!(
            shape(r#"{"a":7,"b":[1,{"c":2}]}"#),
            Shape::Object(Probe { a: 7 })
        ));
        assert!(matches!(shape("null"), Shape::Null));
        for other in [r#"[1,[2],{"a":3}]"#, r#""s""#, "12", "-1", "1.5", "true"] {
            assert!(matches!(shape(other), Shape::Other), "{other}");
        }
        // An object that does not fit `T` is an error, as it would be for `T`.
        assert!(serde_json::from_str::<Shape<Probe>>(r#"{"a":"x"}"#).is_err());
        assert!(serde_json::from_str::<Shape<Probe>>(r#"{"a":1,"a":2}"#).is_err());
    }
}
