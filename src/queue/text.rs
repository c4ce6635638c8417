//! Reading TEXT columns that other programs wrote: SQLite stores whatever bytes a producer
//! binds, `json_valid` accepts invalid UTF-8, and one such row must not make a listing or a
//! claim fail. Invalid bytes are shown escaped (`\xNN`) instead. PostgreSQL refuses such
//! bytes on the way in, so there the same rows decode as plain text.

use sqlx::postgres::{PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Postgres, Sqlite, Type, ValueRef};

/// `bytes` as text: valid UTF-8 as it is, every invalid byte as `\xNN`.
pub(crate) fn escaped(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02X}"));
        }
    }
    out
}

/// A TEXT column read as bytes: `Ok` when it is UTF-8, else the escaped text.
pub(crate) fn decode(bytes: &[u8]) -> Result<String, String> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text.to_owned()),
        Err(_) => Err(escaped(bytes)),
    }
}

/// A nullable TEXT column decoded without failing on invalid UTF-8 (see [`escaped`]). Rows
/// use it through `#[sqlx(try_from = "Lossy")]` on `String` and `Option<String>` fields.
#[derive(Debug)]
pub(crate) struct Lossy(Option<String>);

impl Type<Sqlite> for Lossy {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <&[u8] as Type<Sqlite>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Sqlite> for Lossy {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        if value.is_null() {
            return Ok(Lossy(None));
        }
        let bytes = <&[u8] as Decode<Sqlite>>::decode(value)?;
        Ok(Lossy(Some(decode(bytes).unwrap_or_else(|escaped| escaped))))
    }
}

impl Type<Postgres> for Lossy {
    fn type_info() -> PgTypeInfo {
        <String as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <String as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for Lossy {
    fn decode(value: PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        if value.is_null() {
            return Ok(Lossy(None));
        }
        Ok(Lossy(Some(<String as Decode<Postgres>>::decode(value)?)))
    }
}

impl From<Lossy> for Option<String> {
    fn from(text: Lossy) -> Self {
        text.0
    }
}

impl TryFrom<Lossy> for String {
    type Error = &'static str;

    fn try_from(text: Lossy) -> Result<Self, Self::Error> {
        text.0.ok_or("NULL in a NOT NULL text column")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_bytes_are_escaped_and_valid_text_is_kept() {
        assert_eq!(escaped(b"{\"a\":\"\xff\xfe\"}"), "{\"a\":\"\\xFF\\xFE\"}");
        assert_eq!(escaped("审批 ok".as_bytes()), "审批 ok");
        assert_eq!(decode(b"fine"), Ok("fine".to_owned()));
        assert_eq!(decode(b"a\x80b"), Err("a\\x80b".to_owned()));
    }
}
